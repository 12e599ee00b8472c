/**
 * What a reload changes, what it applies while running and what waits for a
 * restart of llmsup, and how the result reads. Pure: a differ over the two
 * frozen configurations.
 */
import type { Config } from "../config/types.ts";
import { formatDuration, formatSize } from "../config/units.ts";
import type { ReloadChanges } from "../supervisor/supervisor.ts";

export interface SettingChange {
  /** `backend-name: health.interval`, `route llama: tiers[0].ttft_timeout`, `router.breaker.open_interval`. */
  readonly key: string;
  readonly from: string;
  readonly to: string;
  /** False when the setting is read once at start: it takes effect after a restart of llmsup. */
  readonly applied: boolean;
}

/** Settings read once at start (listeners, directories, the nvidia-smi process): exact keys or whole sections. */
const AT_START: readonly RegExp[] = [
  /^control\./,
  /^router\.(socket|listen|socket_mode|socket_group)$/,
  /^daemon\.(state_dir|run_dir|log_dir)$/,
  /^gpu\.(enabled|nvidia_smi|interval|deadline|kernel_log)$/,
];

/** Keys whose value is a secret or leads to one: shown as "(changed)", never their value. */
const SECRET = /password|api_key|token|secret/i;
/** Keys holding milliseconds (the config's durations). */
const DURATION = /(timeout|interval|_sec|delay|deadline|hold|window|ttl|_after|retry_after_max|wait_max|duration|latency)$/;
/** Keys holding bytes. */
const SIZE = /^(max_body|max_bytes|min_free_memory|min_free_disk|backend_log_max)$/;

function show(key: string, v: unknown): string {
  if (v === undefined) return "(unset)";
  if (typeof v === "number" && DURATION.test(key)) return formatDuration(v);
  if (typeof v === "number" && SIZE.test(key)) return formatSize(v);
  if (typeof v === "string") return JSON.stringify(v);
  return typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Every leaf that differs, as [path, key (last segment), from, to]; nested objects are walked, arrays of objects by index. */
function walk(prev: unknown, next: unknown, path: string, out: [string, string, unknown, unknown, boolean][], secret = false, last = ""): void {
  const hidden = secret || SECRET.test(last);
  if (isObject(prev) && isObject(next)) {
    for (const k of new Set([...Object.keys(prev), ...Object.keys(next)])) walk(prev[k], next[k], path ? `${path}.${k}` : k, out, hidden, k);
    return;
  }
  if (Array.isArray(prev) && Array.isArray(next) && [...prev, ...next].some(isObject)) {
    for (let i = 0; i < Math.max(prev.length, next.length); i++) {
      if (i >= prev.length) out.push([`${path}[${i}]`, last, undefined, "(added)", false]);
      else if (i >= next.length) out.push([`${path}[${i}]`, last, "(removed)", undefined, false]);
      else walk(prev[i], next[i], `${path}[${i}]`, out, hidden, last);
    }
    return;
  }
  if (JSON.stringify(prev) !== JSON.stringify(next)) out.push([path, last, prev, next, hidden]);
}

function leaves(prev: unknown, next: unknown, scope: string, base: string): { key: string; from: string; to: string; path: string }[] {
  const out: [string, string, unknown, unknown, boolean][] = [];
  walk(prev, next, base, out);
  return out.map(([path, last, from, to, secret]) => ({
    path,
    key: `${scope}${path}`,
    from: secret ? "" : from === "(removed)" || from === "(added)" ? String(from) : show(last, from),
    to: secret ? "(changed)" : to === "(added)" ? "(added)" : show(last, to),
  }));
}

/** Every setting that differs between the running configuration and the new one, in config order. */
export function settingChanges(prev: Config, next: Config): SettingChange[] {
  const changes: SettingChange[] = [];
  const push = (c: { key: string; from: string; to: string; path: string }, applied: boolean) => changes.push({ key: c.key, from: c.from, to: c.to, applied });
  for (const section of ["daemon", "control", "router", "health", "gpu", "host", "alerts", "schedule", "cache"] as const) {
    for (const c of leaves(prev[section], next[section], "", section)) push(c, !AT_START.some((r) => r.test(c.path)));
  }
  const keyed = <T,>(list: readonly T[], name: (x: T) => string) => new Map(list.map((x) => [name(x), x]));
  for (const [kind, prevList, nextList, scope] of [
    ["backend", keyed(prev.backends, (b) => b.name), keyed(next.backends, (b) => b.name), (n: string) => `${n}: `],
    ["route", keyed(prev.routes, (r) => r.model), keyed(next.routes, (r) => r.model), (n: string) => `route ${n}: `],
  ] as const) {
    for (const [name, p] of prevList) {
      const n = nextList.get(name);
      if (!n) changes.push({ key: `${kind} ${name}`, from: "configured", to: "(removed)", applied: true });
      else for (const c of leaves(p, n, scope(name), "")) push(c, true);
    }
    for (const name of nextList.keys()) if (!prevList.has(name)) changes.push({ key: `${kind} ${name}`, from: "(none)", to: "(added)", applied: true });
  }
  return changes;
}

/** One line per change: `vllm-gpu0: health.interval 5s → 2s (applied)`. */
export function changeLine(c: SettingChange): string {
  const values = c.from === "" ? c.to : `${c.from} → ${c.to}`;
  return `${c.key} ${values} (${c.applied ? "applied" : "needs a restart of llmsup"})`;
}

/** Notes on what changed but needs a restart of llmsup to take effect. */
export function restartNotes(prev: Config, next: Config): string[] {
  return settingChanges(prev, next)
    .filter((c) => !c.applied)
    .map(changeLine);
}

/** The one-line account of a reload, for the history and the log. */
export function reloadSummary(changes: ReloadChanges, settings: readonly SettingChange[]): string {
  const restarted = changes.restarted.length ? ` (${changes.restarted.join(", ")})` : "";
  const counts = `${changes.unchanged.length} unchanged, ${changes.restarted.length} restarted${restarted}, ${changes.started.length} added, ${changes.stopped.length} removed`;
  const later = settings.filter((c) => !c.applied);
  const applied = settings.filter((c) => c.applied);
  const parts = [`configuration reloaded: ${counts}`];
  if (applied.length) parts.push(`applied: ${applied.map((c) => c.key).join(", ")}`);
  if (later.length) parts.push(`needs a restart of llmsup: ${later.map((c) => c.key).join(", ")}`);
  if (!settings.length) parts.push("no setting changed");
  return parts.join("; ");
}

/** A reload that was refused: kept (for status and a mail) until a good reload or a restart. */
export interface ReloadRefusal {
  readonly at: number;
  /** `CODE: message`. */
  readonly error: string;
  /** One line per problem: `path: message`. */
  readonly problems: readonly string[];
}

/** The refusal a configuration that failed to load makes. Pure. */
export function refusalOf(e: unknown, at: number): ReloadRefusal {
  const err = e as { code?: string; message?: string; details?: { problems?: unknown } };
  const problems = err.details?.problems;
  const lines = Array.isArray(problems) ? problems.map((p: { path?: string; message?: string }) => (p.path ? `${p.path}: ${p.message ?? ""}` : String(p.message ?? ""))) : [];
  return { at, error: `${err.code ?? "error"}: ${err.message ?? String(e)}`, problems: lines };
}

/** What status says about reloads: settings waiting for a restart of llmsup, the refused one. Pure. */
export function reloadStatus(startConfig: Config, config: Config, refused: ReloadRefusal | null): { readonly needs_restart: readonly string[]; readonly refused: { readonly time: string; readonly error: string; readonly problems: readonly string[] } | null } {
  const needs = startConfig !== config ? settingChanges(startConfig, config).filter((c) => !c.applied).map((c) => c.key) : [];
  return { needs_restart: needs, refused: refused ? { time: new Date(refused.at).toISOString(), error: refused.error, problems: refused.problems } : null };
}
