/** Checks that span several keys: references, uniqueness, budgets that can never trip. */
import type { z } from "zod";
import { formatDuration } from "./units.ts";
import { parseHostPort } from "./fields.ts";
import { EMBEDDINGS_KINDS, MANAGED_KINDS, type backendSchema, type routeSchema, type routerSchema, type alertsSchema } from "./schema.ts";
import { shortestSpanOfFailures } from "../time/backoff.ts";
import type { ConfigProblem } from "./types.ts";

export interface Indexed<T> {
  readonly index: number;
  readonly value: T;
}

export interface CheckInput {
  readonly backends: readonly Indexed<z.output<typeof backendSchema>>[];
  /** All backend names written in the file, including those of backends with other problems. */
  readonly backendNames: ReadonlySet<string>;
  readonly routes: readonly Indexed<z.output<typeof routeSchema>>[];
  readonly router?: z.output<typeof routerSchema>;
  readonly alerts?: z.output<typeof alertsSchema>;
}

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "::1", "0.0.0.0", "::", "ip6-localhost"]);

export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Host part for port-conflict comparison: all local names bind the same ports. */
function bindKey(host: string, port: number): string {
  const h = LOOPBACK_HOSTS.has(host) || /^127\./.test(host) ? "local" : host.toLowerCase();
  return `${h}:${port}`;
}

function urlBindKey(url: string): string | undefined {
  try {
    const u = new URL(url);
    const port = u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80;
    return bindKey(u.hostname.replace(/^\[|\]$/g, ""), port);
  } catch {
    return undefined;
  }
}

const SECRET_ENV_NAME = /(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|CREDENTIAL)/i;

/** A route's cache_embeddings: an existing backend of a kind that serves /v1/embeddings, on a route with the cache on. */
function embeddingsProblems(at: string, backend: string, cache: boolean, input: CheckInput, names: readonly string[]): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  if (!cache) {
    out.push({ path: at, rule: "requires_cache", message: "cache_embeddings is for the emergency cache's semantic matching; set cache = true on this route, or remove cache_embeddings", expected: "cache = true", found: "cache = false" });
  }
  if (!input.backendNames.has(backend)) {
    out.push({
      path: `${at}.backend`,
      rule: "reference",
      message: `names backend "${backend}", which is not defined${names.length ? ` (defined: ${names.join(", ")})` : " (no [[backend]] is defined)"}`,
      expected: names.length ? `one of ${names.join(", ")}` : "the name of a [[backend]]",
      found: JSON.stringify(backend),
    });
    return out;
  }
  const kind = input.backends.find((b) => b.value.name === backend)?.value.kind;
  if (kind && !EMBEDDINGS_KINDS.includes(kind)) {
    out.push({
      path: `${at}.backend`,
      rule: "embeddings_kind",
      message: `backend "${backend}" is of kind "${kind}", which serves no OpenAI-compatible /v1/embeddings; name a backend of kind ${EMBEDDINGS_KINDS.map((k) => `"${k}"`).join(", ")} (llama-server started with --embeddings, Ollama with an embedding model)`,
      expected: `a backend of kind ${EMBEDDINGS_KINDS.join(", ")}`,
      found: `kind "${kind}"`,
    });
  }
  return out;
}

export function crossCheck(input: CheckInput): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const names = [...input.backendNames];

  // Unique backend names.
  const firstByName = new Map<string, number>();
  for (const { index, value } of input.backends) {
    const seen = firstByName.get(value.name);
    if (seen !== undefined) {
      problems.push({
        path: `backend[${index}].name`,
        rule: "duplicate",
        message: `backend name "${value.name}" is already used by backend[${seen}]; names must be unique`,
        expected: "a unique name",
        found: JSON.stringify(value.name),
      });
    } else firstByName.set(value.name, index);
  }

  // No two managed backends (nor the router's TCP listener) on the same host:port.
  const bound = new Map<string, string>();
  if (input.router && input.router.listen !== "") {
    const hp = parseHostPort(input.router.listen);
    if (hp) bound.set(bindKey(hp.host, hp.port), "router.listen");
  }
  for (const { index, value } of input.backends) {
    if (!value.process) continue;
    const key = urlBindKey(value.url);
    if (!key) continue;
    const other = bound.get(key);
    if (other) {
      problems.push({
        path: `backend[${index}].url`,
        rule: "port_conflict",
        message: `${value.url} uses the same host and port as ${other}; two servers cannot listen on one port`,
        expected: "a port no other managed backend or listener uses",
        found: JSON.stringify(value.url),
      });
    } else bound.set(key, `backend[${index}] ("${value.name}")`);
  }

  for (const { index, value } of input.backends) {
    const at = `backend[${index}]`;
    const proc = value.process;
    if (proc && !MANAGED_KINDS.includes(value.kind)) {
      problems.push({
        path: `${at}.process`,
        rule: "remote_kind",
        message: `kind "${value.kind}" is a remote API that llmsup cannot run; remove [backend.process] or use kind ${MANAGED_KINDS.map((k) => `"${k}"`).join(", ")}`,
        expected: `no [backend.process] for kind "${value.kind}"`,
        found: "a [backend.process] table",
      });
    }
    if (value.api_key_file && value.api_key_env) {
      problems.push({ path: `${at}.api_key_env`, rule: "conflict", message: "set api_key_file or api_key_env, not both", expected: "one of api_key_file, api_key_env", found: "both" });
    }
    if (!proc) continue;
    if (proc.restart_max_delay < proc.restart_sec) {
      problems.push({
        path: `${at}.process.restart_max_delay`,
        rule: "range",
        message: `restart_max_delay (${formatDuration(proc.restart_max_delay)}) is shorter than restart_sec (${formatDuration(proc.restart_sec)}); the delay only grows`,
        expected: `at least ${formatDuration(proc.restart_sec)}`,
        found: formatDuration(proc.restart_max_delay),
      });
    } else if (proc.restart !== "never") {
      const policy = { restartSec: proc.restart_sec, maxDelay: proc.restart_max_delay, steps: proc.restart_steps };
      // The budget trips on the (burst + 1)-th failed start inside the interval.
      const span = shortestSpanOfFailures(policy, proc.start_limit_burst + 1);
      if (proc.start_limit_interval < span) {
        problems.push({
          path: `${at}.process.start_limit_interval`,
          rule: "start_limit",
          message:
            `start_limit_interval ${formatDuration(proc.start_limit_interval)} can never trip: ${proc.start_limit_burst + 1} failed starts ` +
            `(start_limit_burst ${proc.start_limit_burst}, plus one) are at least ${formatDuration(span)} apart with restart_sec ` +
            `${formatDuration(proc.restart_sec)} growing to ${formatDuration(proc.restart_max_delay)}, so a crash loop would restart forever; ` +
            `raise start_limit_interval to at least ${formatDuration(span)}, or lower start_limit_burst or restart_sec`,
          expected: `at least ${formatDuration(span)}`,
          found: formatDuration(proc.start_limit_interval),
        });
      }
    }
    for (const envKey of Object.keys(proc.env)) {
      if (SECRET_ENV_NAME.test(envKey)) {
        problems.push({
          path: `${at}.process.env.${envKey}`,
          rule: "inline_secret",
          message: `${envKey} looks like a secret and is not accepted inline; put the value in a file readable only by llmsup and set ${at}.process.secret_env = { ${envKey} = "/etc/llmsup/${envKey.toLowerCase()}" }`,
          expected: "process.secret_env",
          found: "an inline secret (value not shown)",
        });
      }
    }
  }

  // Routes: unique models, at most one default, tiers reference existing backends once each.
  const routeByModel = new Map<string, number>();
  for (const { index, value } of input.routes) {
    const seen = routeByModel.get(value.model);
    if (seen !== undefined) {
      problems.push({
        path: `route[${index}].model`,
        rule: "duplicate",
        message: `model "${value.model}" is already routed by route[${seen}]; each model name has one route${value.model === "*" ? ' (only one default route "*")' : ""}`,
        expected: "a model name no other route uses",
        found: JSON.stringify(value.model),
      });
    } else routeByModel.set(value.model, index);
    const tierKeys = new Map<string, number>();
    value.tiers.forEach((tier, t) => {
      const path = `route[${index}].tiers[${t}]`;
      if (!input.backendNames.has(tier.backend)) {
        problems.push({
          path: `${path}.backend`,
          rule: "reference",
          message: `names backend "${tier.backend}", which is not defined${names.length ? ` (defined: ${names.join(", ")})` : " (no [[backend]] is defined)"}`,
          expected: names.length ? `one of ${names.join(", ")}` : "the name of a [[backend]]",
          found: JSON.stringify(tier.backend),
        });
      }
      const key = `${tier.backend}\u0000${tier.model}`;
      const dup = tierKeys.get(key);
      if (dup !== undefined) {
        problems.push({
          path,
          rule: "duplicate",
          message: `repeats tier ${dup} (backend "${tier.backend}", model "${tier.model}"); a tier that failed is not tried again in the same request`,
          expected: "each (backend, model) once per route",
          found: `a repeat of tiers[${dup}]`,
        });
      } else tierKeys.set(key, t);
    });
    const emb = value.cache_embeddings;
    if (emb) problems.push(...embeddingsProblems(`route[${index}].cache_embeddings`, emb.backend, value.cache, input, names));
  }

  // A TCP listener off loopback needs API keys.
  const router = input.router;
  if (router && router.listen !== "") {
    const hp = parseHostPort(router.listen);
    if (hp && !isLoopbackHost(hp.host) && !router.api_keys_file && !router.api_keys_env) {
      problems.push({
        path: "router.listen",
        rule: "exposed_without_keys",
        message: `listening on ${router.listen}, which other machines can reach, requires API keys: set router.api_keys_file or router.api_keys_env, or listen on 127.0.0.1`,
        expected: "a loopback address, or API keys configured",
        found: JSON.stringify(router.listen),
      });
    }
  }

  const alerts = input.alerts;
  if (alerts) {
    if (alerts.enabled && alerts.to.length === 0 && !alerts.alertmanager && alerts.webhook.length === 0) {
      problems.push({ path: "alerts.to", rule: "missing", message: "alerts are enabled but no recipient is set", expected: "at least one e-mail address, an [alerts.alertmanager] url or an [[alerts.webhook]]", found: "an empty list" });
    }
    problems.push(...alertChannelChecks(alerts));
    const smtp = alerts.smtp;
    if (smtp.password_file && smtp.password_env) {
      problems.push({ path: "alerts.smtp.password_env", rule: "conflict", message: "set password_file or password_env, not both", expected: "one of password_file, password_env", found: "both" });
    }
    if ((smtp.password_file || smtp.password_env) && !smtp.user) {
      problems.push({ path: "alerts.smtp.user", rule: "missing", message: "a password is configured but no user to log in with", expected: "the SMTP user name", found: "nothing" });
    }
  }
  return problems;
}

/** A URL that carries a user name or password would put a secret in logs and status. */
function urlCredentials(u: string): boolean {
  try {
    const url = new URL(u);
    return url.username !== "" || url.password !== "";
  } catch {
    return false;
  }
}

/** [alerts.alertmanager] and [[alerts.webhook]]: credentials only by file, one way of authenticating, distinct channel names. */
function alertChannelChecks(alerts: z.output<typeof alertsSchema>): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const inline = (p: string) => ({ path: p, rule: "inline_secret", message: "a URL must not carry a user name or password: they would show in logs and status", expected: "a URL without user:password@ (use bearer_token_file, or username and password_file)", found: "credentials in the URL" });
  const am = alerts.alertmanager;
  if (am) {
    am.url.forEach((u, i) => {
      if (urlCredentials(u)) problems.push(inline(`alerts.alertmanager.url${am.url.length > 1 ? `[${i}]` : ""}`));
    });
    if (am.bearer_token_file && (am.password_file || am.username)) {
      problems.push({ path: "alerts.alertmanager.bearer_token_file", rule: "conflict", message: "set bearer_token_file, or username and password_file, not both", expected: "one way of authenticating", found: "both" });
    }
    if (am.password_file && !am.username) problems.push({ path: "alerts.alertmanager.username", rule: "missing", message: "a password_file is set but no username to go with it", expected: "the basic-auth user name", found: "nothing" });
    if (am.username && !am.password_file) problems.push({ path: "alerts.alertmanager.password_file", rule: "missing", message: "a username is set but no password_file", expected: "the file holding the basic-auth password", found: "nothing" });
  }
  const seen = new Set(["smtp", "alertmanager"]);
  alerts.webhook.forEach((w, i) => {
    if (urlCredentials(w.url)) problems.push(inline(`alerts.webhook[${i}].url`));
    const n = webhookChannelName(w, i);
    if (seen.has(n)) problems.push({ path: `alerts.webhook[${i}].name`, rule: "duplicate", message: `the alert channel name ${n} is taken (smtp, alertmanager and each webhook name must differ)`, expected: "a name of its own", found: JSON.stringify(n) });
    seen.add(n);
  });
  return problems;
}

/** A webhook's channel name: its `name`, else webhook-<index>. */
export function webhookChannelName(w: { readonly name?: string }, index: number): string {
  return w.name ?? `webhook-${index}`;
}
