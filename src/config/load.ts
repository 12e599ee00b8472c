/** supervisor.toml → schema → cross-checks → a frozen, resolved Config (or every problem found). */
import { readFile } from "node:fs/promises";
import { hostname as osHostname } from "node:os";
import path from "node:path";
import { parse as parseToml, TomlError } from "smol-toml";
import type { z } from "zod";
import { LlmsupError } from "../errors/error.ts";
import { crossCheck, type Indexed } from "./checks.ts";
import { closest, formatPath, problemsFromIssues } from "./problems.ts";
import { HEALTH_DEFAULTS, LIST_SCHEMAS, MANAGED_KINDS, SECTION_SCHEMAS, type backendSchema, type routeSchema } from "./schema.ts";
import type { BackendConfig, Config, ConfigProblem, HealthConfig, RouteConfig, TierConfig } from "./types.ts";

export const DEFAULT_CONFIG_PATH = "/etc/llmsup/supervisor.toml";

export type ValidationResult = { readonly ok: true; readonly config: Config } | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

export interface ValidateOptions {
  /** Where the text came from, for messages and Config.source. */
  readonly source?: string;
  /** Host name used when daemon.hostname is empty. */
  readonly hostname?: string;
}

type Sections = { -readonly [K in keyof typeof SECTION_SCHEMAS]: z.output<(typeof SECTION_SCHEMAS)[K]> };

function syntaxProblem(e: TomlError): ConfigProblem {
  const first = e.message.split("\n")[0]?.replace(/^Invalid TOML document:\s*/, "") ?? "invalid TOML";
  return {
    path: "",
    rule: "syntax",
    message: `TOML syntax error at line ${e.line}, column ${e.column}: ${first}`,
    line: e.line,
    column: e.column,
  };
}

/** Validates configuration text. Pure: no I/O, every problem collected. */
export function validateConfigText(text: string, options: ValidateOptions = {}): ValidationResult {
  const source = options.source ?? "supervisor.toml";
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof TomlError) return { ok: false, problems: [syntaxProblem(e)] };
    throw e;
  }

  const problems: ConfigProblem[] = [];
  const knownTop = [...Object.keys(SECTION_SCHEMAS), ...Object.keys(LIST_SCHEMAS)];
  for (const key of Object.keys(doc)) {
    if (!knownTop.includes(key)) {
      const hint = closest(key, knownTop);
      problems.push({
        path: formatPath([key]),
        rule: "unknown_key",
        message: `unknown section or key${hint ? `; did you mean "${hint}"?` : `; accepted at the top level: ${knownTop.join(", ")}`}`,
        expected: `one of ${knownTop.join(", ")}`,
        found: JSON.stringify(key),
      });
    }
  }

  const sections: Partial<Sections> = {};
  for (const [key, schema] of Object.entries(SECTION_SCHEMAS) as [keyof Sections, z.ZodType][]) {
    const r = schema.safeParse(doc[key], { reportInput: true });
    if (r.success) (sections as Record<string, unknown>)[key] = r.data;
    else problems.push(...problemsFromIssues(r.error.issues, [key], schema));
  }

  const parseList = <S extends z.ZodType>(key: "backend" | "route", schema: S): Indexed<z.output<S>>[] => {
    const raw = doc[key];
    if (raw === undefined) return [];
    if (!Array.isArray(raw)) {
      problems.push({ path: key, rule: "type", message: `expected an array of tables written [[${key}]], found a single [${key}] table`, expected: `[[${key}]] tables`, found: `[${key}]` });
      return [];
    }
    const out: Indexed<z.output<S>>[] = [];
    raw.forEach((item, index) => {
      const r = schema.safeParse(item, { reportInput: true });
      if (r.success) out.push({ index, value: r.data });
      else problems.push(...problemsFromIssues(r.error.issues, [key, index], schema));
    });
    return out;
  };
  const backends = parseList("backend", LIST_SCHEMAS.backend);
  const routes = parseList("route", LIST_SCHEMAS.route);

  const rawBackends = Array.isArray(doc.backend) ? (doc.backend as unknown[]) : [];
  const backendNames = new Set(
    rawBackends.map((b) => (b && typeof b === "object" ? (b as Record<string, unknown>).name : undefined)).filter((n): n is string => typeof n === "string"),
  );
  problems.push(...crossCheck({ backends, backendNames, routes, router: sections.router, alerts: sections.alerts }));
  if (routes.length === 0 && !Array.isArray(doc.route) && problems.length === 0) {
    problems.push({ path: "route", rule: "missing", message: "no [[route]] is defined; clients would have nothing to ask for", expected: "at least one [[route]]", found: "nothing" });
  }

  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, config: deepFreeze(resolve(sections as Sections, backends, routes, source, options.hostname ?? "localhost")) };
}

function resolve(
  s: Sections,
  backends: readonly Indexed<z.output<typeof backendSchema>>[],
  routes: readonly Indexed<z.output<typeof routeSchema>>[],
  source: string,
  hostname: string,
): Config {
  const health: HealthConfig = { ...HEALTH_DEFAULTS, ...stripUndefined(s.health) };
  const resolvedBackends: BackendConfig[] = backends.map(({ value }) => ({
    ...value,
    health: { ...health, ...stripUndefined(value.health ?? {}) },
    managed: value.process !== undefined && MANAGED_KINDS.includes(value.kind),
  }));
  const byName = new Map(resolvedBackends.map((b) => [b.name, b]));
  const td = s.router.tier_defaults;
  const resolvedRoutes: RouteConfig[] = routes.map(({ value }) => ({
    model: value.model,
    cache: value.cache,
    ...(value.cache_embeddings ? { cache_embeddings: value.cache_embeddings } : {}),
    cache_semantic_similarity: value.cache_semantic_similarity,
    quality: value.quality,
    tiers: value.tiers.map(
      (t): TierConfig => ({
        ...t,
        connect_timeout: t.connect_timeout ?? td.connect_timeout,
        ttft_timeout: t.ttft_timeout ?? td.ttft_timeout,
        idle_timeout: t.idle_timeout ?? td.idle_timeout,
        total_timeout: t.total_timeout ?? td.total_timeout,
        context: t.context ?? byName.get(t.backend)?.context,
      }),
    ),
  }));
  return {
    source,
    daemon: { ...s.daemon, hostname: s.daemon.hostname || hostname },
    control: { ...s.control, socket: s.control.socket ?? path.join(s.daemon.run_dir, "control.sock") },
    router: { ...s.router, socket: s.router.socket ?? path.join(s.daemon.run_dir, "api.sock") },
    health,
    gpu: s.gpu,
    host: s.host,
    alerts: s.alerts,
    schedule: s.schedule,
    cache: s.cache,
    backends: resolvedBackends,
    routes: resolvedRoutes,
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object" && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Reads and validates a configuration file; throws LlmsupError with every problem in details.problems. */
export async function loadConfigFile(file: string, options: { hostname?: string } = {}): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === "ENOENT" ? "no such file" : err.code === "EACCES" ? "permission denied" : err.code === "EISDIR" ? "is a directory" : err.message;
    throw new LlmsupError("LLMSUP_E_CONFIG_UNREADABLE", `cannot read configuration ${file}: ${why}`, { path: file, errno: err.code }, { cause: e });
  }
  const result = validateConfigText(text, { source: path.resolve(file), hostname: options.hostname ?? osHostname() });
  if (result.ok) return result.config;
  const syntax = result.problems.length === 1 && result.problems[0]?.rule === "syntax";
  throw new LlmsupError(
    syntax ? "LLMSUP_E_CONFIG_SYNTAX" : "LLMSUP_E_CONFIG_INVALID",
    `${file}: ${result.problems.length} problem${result.problems.length === 1 ? "" : "s"}`,
    { path: file, problems: result.problems },
  );
}
