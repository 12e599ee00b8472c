/**
 * The schema of supervisor.toml. Every key, its type and its default lives
 * here; the annotated supervisor.toml at the repository root documents the
 * same keys for operators, and a test keeps the two in step.
 */
import { z } from "zod";
import cronLib from "node-cron";
import { parseDuration } from "./units.ts";
import { absPath, duration, envName, fileMode, httpUrl, listenAddress, mailbox, name, positiveDuration, size } from "./fields.ts";

export const BACKEND_KINDS = ["vllm", "ollama", "llamacpp", "openai", "anthropic"] as const;
export type BackendKind = (typeof BACKEND_KINDS)[number];
/** Kinds llmsup can run itself; the others are remote APIs only. */
export const MANAGED_KINDS: readonly BackendKind[] = ["vllm", "ollama", "llamacpp"];
/** Kinds that serve OpenAI's /v1/embeddings (Ollama through its OpenAI-compatible API, llama-server with --embeddings): a route's cache_embeddings. */
export const EMBEDDINGS_KINDS: readonly BackendKind[] = ["vllm", "ollama", "llamacpp", "openai"];

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A cron expression (node-cron syntax, optional seconds field); "" switches the job off. */
const cron = () =>
  z.string().refine((s) => s === "" || cronLib.validate(s), {
    message: 'expected a cron expression such as "0 8 * * *" (minute hour day month weekday), or "" to switch the job off',
  });

export const daemonSchema = z.strictObject({
  log_level: z.enum(LOG_LEVELS).default("info"),
  state_dir: absPath().default("/var/lib/llmsup"),
  log_dir: absPath().default("/var/log/llmsup"),
  run_dir: absPath().default("/run/llmsup"),
  shutdown_timeout: duration().prefault("60s"),
  hostname: z.string().default(""),
  backend_log_max: size().prefault("20MiB"),
  backend_log_keep: z.int().min(0).max(100).default(3),
  /** Backends outlive a restart of llmsup (the restart signal, a crash): the next daemon adopts them instead of loading the models again. */
  live_restore: z.boolean().default(true),
});

export const controlSchema = z.strictObject({
  socket: absPath().optional(),
  mode: fileMode().prefault("0660"),
  /** The group that may connect (the socket file's group): its members may read (status, logs, events). */
  group: z.string().default(""),
  /** The group whose members may also act (start, stop, reload, drain, drills…); "" = only root and the daemon's own user. */
  admin_group: z.string().default(""),
});

/** `hedge_after`: "auto" (from the tier's recent time to first token), "off", or a duration; milliseconds out. */
const hedgeAfter = () =>
  z.string({ error: () => 'expected "auto", "off" or a duration such as "2s"' }).transform((s, ctx): "auto" | "off" | number => {
    if (s === "auto" || s === "off") return s;
    const ms = parseDuration(s);
    if (ms === undefined || ms <= 0) {
      ctx.issues.push({ code: "custom", message: 'expected "auto", "off" or a duration above zero such as "500ms" or "2s"', input: s, params: { rule: "hedge_after" } });
      return z.NEVER;
    }
    return ms;
  });

export const tierTimeoutFields = {
  connect_timeout: positiveDuration(),
  ttft_timeout: positiveDuration(),
  idle_timeout: positiveDuration(),
  total_timeout: positiveDuration(),
};

export const routerSchema = z.strictObject({
  socket: absPath().optional(),
  socket_mode: fileMode().prefault("0660"),
  socket_group: z.string().default(""),
  listen: listenAddress().default("127.0.0.1:8181"),
  api_keys_file: absPath().optional(),
  api_keys_env: envName().optional(),
  max_body: size().prefault("4MiB"),
  client_body_timeout: positiveDuration().prefault("60s"),
  header_timeout: positiveDuration().prefault("10s"),
  keepalive_timeout: positiveDuration().prefault("75s"),
  max_connections: z.int().min(1).max(1_000_000).default(4096),
  metrics_public: z.boolean().default(false),
  request_timeout: positiveDuration().prefault("10m"),
  max_attempts: z.int().min(1).max(20).default(4),
  retry_base_delay: duration().prefault("200ms"),
  retry_after_max: positiveDuration().prefault("60s"),
  retry_after_wait_max: duration().prefault("3s"),
  all_down_retry_after: positiveDuration().prefault("10s"),
  queue_timeout: duration().prefault("0s"),
  degraded_fields: z.boolean().default(true),
  recovery_hold: duration().prefault("1s"),
  hedge_after: hedgeAfter().prefault("auto"),
  breaker: z
    .strictObject({
      failure_threshold: z.int().min(1).default(5),
      open_interval: positiveDuration().prefault("30s"),
      max_open_interval: positiveDuration().prefault("5m"),
    })
    .prefault({}),
  tier_defaults: z
    .strictObject({
      connect_timeout: positiveDuration().prefault("2s"),
      ttft_timeout: positiveDuration().prefault("30s"),
      idle_timeout: positiveDuration().prefault("30s"),
      total_timeout: positiveDuration().prefault("10m"),
    })
    .prefault({}),
});

/** Health keys; the same keys may be overridden per backend in [backend.health]. */
export const healthFields = {
  interval: positiveDuration(),
  timeout: positiveDuration(),
  failures_to_down: z.int().min(1),
  degraded_latency: positiveDuration(),
  deep_interval: duration(),
  deep_timeout: positiveDuration(),
  wedge_failures: z.int().min(1),
  restart_on_wedge: z.boolean(),
  probe_interval: duration(),
};
export const healthSchema = z.strictObject(healthFields).partial();

export const gpuSchema = z.strictObject({
  enabled: z.boolean().default(true),
  nvidia_smi: z.string().min(1).default("nvidia-smi"),
  interval: positiveDuration().prefault("5s"),
  deadline: positiveDuration().prefault("15s"),
  kernel_log: z.enum(["auto", "kmsg", "journal", "off"]).default("auto"),
  temperature_limit: z.number().min(30).max(120).default(87),
  memory_full: z.number().gt(0).max(1).default(0.98),
  sustain_samples: z.int().min(1).default(3),
  clear_samples: z.int().min(1).default(3),
  event_hold: duration().prefault("30m"),
  stale_samples: z.int().min(1).default(3),
  auto_reset: z.boolean().default(false),
  remediation_delay: duration().prefault("2m"),
  reset_window: positiveDuration().prefault("1h"),
});

export const hostSchema = z.strictObject({
  interval: positiveDuration().prefault("30s"),
  min_free_memory: size().prefault("2GiB"),
  min_free_disk: size().prefault("5GiB"),
});

export const smtpSchema = z.strictObject({
  host: z.string().min(1).default("localhost"),
  port: z.int().min(1).max(65535).default(587),
  security: z.enum(["starttls", "tls", "none"]).default("starttls"),
  user: z.string().optional(),
  password_file: absPath().optional(),
  password_env: envName().optional(),
  timeout: positiveDuration().prefault("30s"),
  tls_reject_unauthorized: z.boolean().default(true),
});

const email = () => z.string().regex(/^[^\s@<>]+@[^\s@<>]+$/, { message: 'expected an e-mail address such as "ops@example.com"' });

/** [alerts.alertmanager]: alerts posted to Alertmanager's v2 API, as Prometheus posts them. */
export const alertmanagerSchema = z.strictObject({
  /** One Alertmanager, or every member of a cluster (each gets every alert; one accepting is enough). */
  url: z.union([httpUrl(), z.array(httpUrl()).min(1, { message: "expected at least one Alertmanager URL" })]).transform((u) => (typeof u === "string" ? [u] : u)),
  timeout: positiveDuration().prefault("10s"),
  /** Active alerts are posted again this often; each says it ends 4 resend intervals later unless posted again. */
  resend_interval: positiveDuration().prefault("1m"),
  bearer_token_file: absPath().optional(),
  username: z.string().min(1).optional(),
  password_file: absPath().optional(),
});

/** One [[alerts.webhook]]: each alert message POSTed as JSON, signed with HMAC-SHA256. */
export const webhookSchema = z.strictObject({
  /** The channel's name in status and its outbox directory; webhook-<index> when unset. */
  name: name().optional(),
  url: httpUrl(),
  secret_file: absPath(),
  timeout: positiveDuration().prefault("10s"),
});

export const alertsSchema = z.strictObject({
  enabled: z.boolean().default(false),
  from: mailbox().default("llmsup@localhost"),
  to: z.array(email()).default([]),
  critical_to: z.array(email()).default([]),
  coalesce_window: duration().prefault("10m"),
  max_per_hour: z.int().min(1).default(30),
  outbox_max: z.int().min(10).default(1000),
  smtp: smtpSchema.prefault({}),
  alertmanager: alertmanagerSchema.optional(),
  webhook: z.array(webhookSchema).default([]),
});

export const scheduleSchema = z.strictObject({
  digest: cron().default("0 8 * * *"),
  drill: cron().default(""),
  drill_scenario: z.enum(["primary-outage", "backend-crash", "backend-hang", "latency", "errors", "rate-limit", "stream-cut", "quality", "block"]).default("primary-outage"),
  drill_duration: positiveDuration().prefault("60s"),
  /** A game day (drills/gameday.ts): every drill in turn on one route, one scorecard mailed; "" = off. */
  gameday: cron().default(""),
  /** The route of the scheduled game day; "" = the first. */
  gameday_route: z.string().default(""),
  /** Its drills; [] = every router fault, and the process drills when tier 0 is managed. */
  gameday_scenarios: z.array(z.enum(["primary-outage", "backend-crash", "backend-hang", "latency", "errors", "rate-limit", "stream-cut", "quality", "block"])).default([]),
  gameday_duration: positiveDuration().prefault("30s"),
  housekeeping: cron().default("*/10 * * * *"),
});

export const cacheSchema = z.strictObject({
  max_entries: z.int().min(1).default(10_000),
  max_bytes: size().prefault("256MiB"),
  ttl: positiveDuration().prefault("7d"),
  similarity: z.number().gt(0).max(1).default(0.85),
  multi_turn: z.boolean().default(false),
});

export const processSchema = z.strictObject({
  command: z.array(z.string().min(1)).min(1, { message: "expected the program and its arguments, such as [\"/usr/bin/llama-server\", \"--port\", \"8080\"]" }),
  env: z.record(envName(), z.string()).default({}),
  /** Environment variables whose values are read from files at spawn time (tokens such as HF_TOKEN). */
  secret_env: z.record(envName(), absPath()).default({}),
  cwd: absPath().optional(),
  user: z.string().optional(),
  group: z.string().optional(),
  restart: z.enum(["always", "on-failure", "never"]).default("always"),
  restart_sec: positiveDuration().prefault("10s"),
  restart_max_delay: duration().prefault("2m"),
  restart_steps: z.int().min(0).max(100).default(5),
  start_limit_interval: positiveDuration().prefault("15m"),
  start_limit_burst: z.int().min(1).default(5),
  stable_after: positiveDuration().prefault("10m"),
  startup_timeout: positiveDuration().prefault("15m"),
  stop_timeout: duration().prefault("30s"),
});

export const backendSchema = z.strictObject({
  name: name(),
  kind: z.enum(BACKEND_KINDS),
  url: httpUrl(),
  gpus: z.array(z.int().min(0)).default([]),
  context: z.int().min(1).optional(),
  api_key_file: absPath().optional(),
  api_key_env: envName().optional(),
  /**
   * Connections the router opens to this backend at once; a request beyond them waits in the router for
   * one to come free, and the wait counts toward its tier's ttft_timeout. Unset: no bound of its own (the
   * engine queues what it cannot run yet, and router.max_connections bounds the whole).
   */
  max_connections: z.int().min(1).max(1_000_000).optional(),
  /** Whether a broken stream is continued here by assistant prefill: "auto" (known for vllm/llamacpp/ollama, learnt for the rest), true, false (prefill-free form). */
  prefill: z.union([z.literal("auto"), z.boolean()]).default("auto"),
  process: processSchema.optional(),
  health: healthSchema.optional(),
});

export const tierSchema = z.strictObject({
  backend: z.string().min(1),
  model: z.string().min(1),
  max_tokens: z.int().min(1).optional(),
  temperature: z.number().min(0).max(2).optional(),
  drop_params: z.array(z.string().min(1)).default([]),
  notice: z.string().optional(),
  context: z.int().min(1).optional(),
  /** Overrides the backend's `prefill` for this tier's model. */
  prefill: z.union([z.literal("auto"), z.boolean()]).optional(),
  hedge_after: hedgeAfter().optional(),
  ...Object.fromEntries(Object.entries(tierTimeoutFields).map(([k, v]) => [k, v.optional()])) as {
    [K in keyof typeof tierTimeoutFields]: z.ZodOptional<(typeof tierTimeoutFields)[K]>;
  },
});

/** A regular expression, checked to compile (case-insensitive, Unicode) at load. */
const pattern = () =>
  z.string().min(1).refine(
    (s) => {
      try {
        new RegExp(s, "iu");
        return true;
      } catch {
        return false;
      }
    },
    { message: 'expected a regular expression such as "^I can\'t help"' },
  );

/** Which model-failure detectors judge a route's answers (router/quality.ts); a detection fails the tier. */
export const routeQualitySchema = z.strictObject({
  loop: z.boolean().default(true),
  empty: z.boolean().default(true),
  garbage: z.boolean().default(true),
  refusal_patterns: z.array(pattern()).default([]),
});

export const routeSchema = z.strictObject({
  model: z.string().min(1),
  tiers: z.array(tierSchema).min(1, { message: "expected at least one tier" }),
  cache: z.boolean().default(false),
  /** The tier that embeds prompts for the emergency cache's semantic matching (an OpenAI-compatible /v1/embeddings): a CPU model that outlives the GPU tiers. */
  cache_embeddings: z.strictObject({ backend: z.string().min(1), model: z.string().min(1) }).optional(),
  /** The cosine of embeddings at or above which a stored question is served for another (with cache_embeddings). */
  cache_semantic_similarity: z.number().gt(0).max(1).default(0.9),
  quality: routeQualitySchema.prefault({}),
});

/** Singleton sections: [name] tables whose keys all have defaults. */
export const SECTION_SCHEMAS = {
  daemon: daemonSchema.prefault({}),
  control: controlSchema.prefault({}),
  router: routerSchema.prefault({}),
  health: healthSchema.prefault({}),
  gpu: gpuSchema.prefault({}),
  host: hostSchema.prefault({}),
  alerts: alertsSchema.prefault({}),
  schedule: scheduleSchema.prefault({}),
  cache: cacheSchema.prefault({}),
} as const;

/** Array-of-tables sections. */
export const LIST_SCHEMAS = {
  backend: backendSchema,
  route: routeSchema,
} as const;

export const HEALTH_DEFAULTS = {
  interval: 5_000,
  timeout: 2_000,
  failures_to_down: 3,
  degraded_latency: 1_000,
  deep_interval: 60_000,
  deep_timeout: 30_000,
  wedge_failures: 2,
  restart_on_wedge: true,
  probe_interval: 5_000,
} as const satisfies { [K in keyof typeof healthFields]: z.output<(typeof healthFields)[K]> };

/** Keys that would hold a secret inline; they are refused in favour of *_file / *_env references. */
export const INLINE_SECRET_KEYS = new Set(["password", "pass", "api_key", "apikey", "api_keys", "token", "secret", "bearer", "auth_token"]);
