/**
 * Router faults for drills: failures injected inside the router, on the
 * upstream attempts of one tier, for a bounded time — no process touched, no
 * restart budget spent. This module decides which attempt gets which fault;
 * it is pure (time and the attempt's sequence number are parameters, the
 * fraction is drawn from a seeded hash, so a drill replays the same way).
 *
 * | fault      | what the router sees                                                                |
 * |------------|-------------------------------------------------------------------------------------|
 * | latency    | the tier's answer (first token) comes `delayMs` later; past ttft_timeout: a timeout  |
 * | errors     | a `fraction` of attempts answer HTTP `status` (5xx) with an OpenAI-shaped error body |
 * | rate-limit | a `fraction` of attempts answer 429 with `Retry-After: retryAfterS`                  |
 * | stream-cut | a stream's connection resets after `chunks` SSE events (a whole answer: mid-body)   |
 * | quality    | the answer degenerates into a repetition loop (the loop detector's business)         |
 * | block      | the backend is unreachable, as behind a firewall: connection refused, checks too    |
 *
 * Every text a fault puts in front of the router carries the drill's mark
 * (`[drill <id>: <fault>]`), so logs, events and mails say it was a drill.
 */
import { LlmsupError } from "../errors/error.ts";
import { parseDuration } from "../config/units.ts";

export const FAULT_KINDS = ["latency", "errors", "rate-limit", "stream-cut", "quality", "block"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export function isFaultKind(s: string): s is FaultKind {
  return (FAULT_KINDS as readonly string[]).includes(s);
}

/** The knobs of a router fault; each has a default (FAULT_DEFAULTS). */
export interface FaultOptions {
  /** latency: milliseconds added before the tier's answer; absent: the tier's ttft_timeout and a second more, the slowness the route does not tolerate. */
  readonly delayMs?: number;
  /** errors, rate-limit: the share of attempts that fail, 0 < fraction ≤ 1. */
  readonly fraction: number;
  /** errors: the HTTP status, 500–599. */
  readonly status: number;
  /** rate-limit: the Retry-After the 429 carries, in seconds. */
  readonly retryAfterS: number;
  /** stream-cut: SSE events that get through before the connection resets. */
  readonly chunks: number;
  /** The fraction's seed: the same seed draws the same attempts. */
  readonly seed: number;
}

export const FAULT_DEFAULTS: FaultOptions = { fraction: 1, status: 503, retryAfterS: 10, chunks: 3, seed: 1 };

/** A latency drill's delay when none is given: past the tier's ttft_timeout, so the route has to act on it. */
export function defaultDelayMs(ttftTimeoutMs: number): number {
  return ttftTimeoutMs + 1_000;
}

/** One fault in force: on which tier, until when, marked with which drill. */
export interface ActiveFault extends FaultOptions {
  readonly delayMs: number;
  readonly id: string;
  readonly kind: FaultKind;
  readonly backend: string;
  /** The tier's upstream model (block hits every model of the backend). */
  readonly model: string;
  readonly until: number;
}

export type FaultAction =
  | { readonly kind: "pass" }
  | { readonly kind: "delay"; readonly ms: number; readonly mark: string }
  | { readonly kind: "http"; readonly status: number; readonly retryAfterS?: number; readonly body: string; readonly mark: string }
  | { readonly kind: "cut"; readonly chunks: number; readonly mark: string }
  | { readonly kind: "loop"; readonly text: string; readonly mark: string }
  | { readonly kind: "refuse"; readonly detail: string; readonly mark: string };

const PASS: FaultAction = { kind: "pass" };

/** The mark every injected failure carries. */
export function markOf(f: Pick<ActiveFault, "id" | "kind">): string {
  return `[drill ${f.id}: ${f.kind}]`;
}

/** A number in [0, 1) from (seed, n): a 32-bit integer hash (splitmix-style), the same on every run. */
export function drawn(seed: number, n: number): number {
  let x = (Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(n | 0, 0x85ebca6b)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x / 0x100000000;
}

/** Whether the fault is in force for an attempt on (backend, model) at `now`. */
export function hits(f: ActiveFault | undefined, backend: string, model: string, now: number): f is ActiveFault {
  return f !== undefined && now < f.until && f.backend === backend && (f.kind === "block" || f.model === model);
}

/** The text of a degenerate answer: one marked sentence, over and over (long enough for the loop detector). */
export function loopText(mark: string): string {
  return `${mark} the same words again and again, `.repeat(12);
}

/**
 * What attempt number `seq` (counted per fault, from 0) on (backend, model) gets at `now`.
 * A fraction applies to errors and rate-limit; the others hit every attempt on the tier.
 */
export function faultFor(f: ActiveFault | undefined, backend: string, model: string, seq: number, now: number): FaultAction {
  if (!hits(f, backend, model, now)) return PASS;
  const mark = markOf(f);
  switch (f.kind) {
    case "latency":
      return { kind: "delay", ms: f.delayMs, mark };
    case "errors":
    case "rate-limit": {
      if (drawn(f.seed, seq) >= f.fraction) return PASS;
      const status = f.kind === "errors" ? f.status : 429;
      const message = f.kind === "errors" ? `${mark} the upstream failed (HTTP ${status})` : `${mark} rate limit reached; retry after ${f.retryAfterS}s`;
      const body = JSON.stringify({ error: { message, type: f.kind === "errors" ? "server_error" : "rate_limit_error", param: null, code: null } });
      return f.kind === "errors" ? { kind: "http", status, body, mark } : { kind: "http", status, retryAfterS: f.retryAfterS, body, mark };
    }
    case "stream-cut":
      return { kind: "cut", chunks: f.chunks, mark };
    case "quality":
      return { kind: "loop", text: loopText(mark), mark };
    case "block":
      return { kind: "refuse", detail: `connection refused (nothing listens there) ${mark}`, mark };
  }
}

/** What a shallow health check of `backend` gets: under block, the refusal; else nothing (the real check runs). */
export function checkFault(f: ActiveFault | undefined, backend: string, now: number): string | undefined {
  return f !== undefined && f.kind === "block" && f.backend === backend && now < f.until ? `connection refused (nothing listens there) ${markOf(f)}` : undefined;
}

/** A finished chat or completion answer whose text is `text`, as an OpenAI-compatible server sends it (whole, or as SSE). */
export function degenerateAnswer(endpoint: "chat" | "completion", model: string, text: string, stream: boolean, created: number): string {
  const id = `drill-${created.toString(36)}`;
  const object = endpoint === "chat" ? "chat.completion" : "text_completion";
  if (!stream) {
    const choice = endpoint === "chat" ? { index: 0, message: { role: "assistant", content: text }, finish_reason: "length" } : { index: 0, text, finish_reason: "length" };
    return JSON.stringify({ id, object, created, model, choices: [choice] });
  }
  const pieces = text.match(/.{1,24}/gs) ?? [];
  const chunk = (choice: Record<string, unknown>) => `data: ${JSON.stringify({ id, object: `${object}.chunk`, created, model, choices: [{ index: 0, ...choice }] })}\n\n`;
  const delta = (content: string | undefined, finish: string | null) => (endpoint === "chat" ? { delta: content === undefined ? { role: "assistant" } : { content }, finish_reason: finish } : { text: content ?? "", finish_reason: finish });
  return [chunk(delta(undefined, null)), ...pieces.map((p) => chunk(delta(p, null))), chunk(endpoint === "chat" ? { delta: {}, finish_reason: "length" } : { text: "", finish_reason: "length" }), "data: [DONE]\n\n"].join("");
}

/**
 * A fault's options from the control socket's query (delay_ms, fraction, status, retry_after_s, chunks, seed):
 * absent ones take FAULT_DEFAULTS; a bad one is LLMSUP_E_CONTROL_BAD_REQUEST naming it.
 */
export function faultOptionsFrom(q: URLSearchParams): FaultOptions {
  const num = <F extends number | undefined>(key: string, ok: (n: number) => boolean, rule: string, fallback: F): number | F => {
    const raw = q.get(key);
    if (raw === null) return fallback;
    const n = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(n) || !ok(n)) throw new LlmsupError("LLMSUP_E_CONTROL_BAD_REQUEST", `${key} must be ${rule}, found ${JSON.stringify(raw)}`);
    return n;
  };
  const int = (lo: number, hi: number) => (n: number) => Number.isInteger(n) && n >= lo && n <= hi;
  const delayMs = num("delay_ms", int(1, 600_000), "a whole number of milliseconds from 1 to 600000", undefined);
  return {
    ...(delayMs !== undefined ? { delayMs } : {}),
    fraction: num("fraction", (n) => n > 0 && n <= 1, "a number above 0 and at most 1", FAULT_DEFAULTS.fraction),
    status: num("status", int(500, 599), "an HTTP status from 500 to 599", FAULT_DEFAULTS.status),
    retryAfterS: num("retry_after_s", int(0, 86_400), "a whole number of seconds from 0 to 86400", FAULT_DEFAULTS.retryAfterS),
    chunks: num("chunks", int(0, 10_000), "a whole number of SSE events from 0 to 10000", FAULT_DEFAULTS.chunks),
    seed: num("seed", int(0, 0xffffffff), "a whole number from 0 to 4294967295", FAULT_DEFAULTS.seed),
  };
}

/** The same options as the CLI takes them (--delay 2s, --fraction 0.5, …), as the control socket's query; a bad one: a usage message. */
export function faultQueryFrom(o: { delay?: string; fraction?: string; status?: string; retryAfter?: string; chunks?: string; seed?: string }): URLSearchParams | string {
  const q = new URLSearchParams();
  if (o.delay !== undefined) {
    const ms = parseDuration(o.delay);
    if (ms === undefined) return `--delay expects a duration such as "2s", found ${JSON.stringify(o.delay)}`;
    q.set("delay_ms", String(ms));
  }
  if (o.retryAfter !== undefined) {
    const ms = parseDuration(o.retryAfter);
    if (ms === undefined || ms % 1000 !== 0) return `--retry-after expects whole seconds such as "10s", found ${JSON.stringify(o.retryAfter)}`;
    q.set("retry_after_s", String(ms / 1000));
  }
  if (o.fraction !== undefined) q.set("fraction", o.fraction);
  if (o.status !== undefined) q.set("status", o.status);
  if (o.chunks !== undefined) q.set("chunks", o.chunks);
  if (o.seed !== undefined) q.set("seed", o.seed);
  try {
    faultOptionsFrom(q);
  } catch (e) {
    return (e as Error).message.replace("delay_ms", "--delay").replace("retry_after_s", "--retry-after").replace(/^(fraction|status|chunks|seed)\b/, "--$1");
  }
  return q;
}
