/**
 * The fault gate: which fault a simulated server shows, to which request, and
 * when. Pure: the current fault, the point a request (or the server) has
 * reached, the counters so far and a seeded random source in; the decision and
 * the next counters out. The server carries the decision out in its kind's
 * words (error bodies, stderr lines, how it dies).
 *
 * The points, in the order a request meets them:
 * - `arm`: a fault is set, at start or through POST /_sim/fault. Counters start
 *   afresh; a crash is scheduled.
 * - `load`: a model load begins (at start; Ollama also on first use). How long
 *   it takes, and whether it runs out of memory (never onto the CPU: on_cpu).
 * - `arrive`: any request but the simulator's own /_sim/ endpoints, before it is
 *   read. A hung server never answers.
 * - `admit`: an inference request (generation or embeddings: both alike here),
 *   read and accepted. Wedge, 429, status codes (by count, by fraction, or all), and
 *   out of memory at run time, in that order.
 * - `generate`: a generation starts (embeddings never get here). A refused
 *   assistant prefill (when the chat ends with the assistant's message), the
 *   context error, else the answer with the stream faults it carries out on the wire.
 */
import type { Fault } from "./faults.ts";

/** Requests still to be hit by a counted fault; undefined: not counted (every request, or a fraction). */
export interface GateCounters {
  readonly statusLeft?: number;
  readonly rateLeft?: number;
}

export type GatePoint =
  | { readonly at: "arm" }
  /** `loadMs`: the server's configured load time, which a fault's load_ms replaces. */
  | { readonly at: "load"; readonly loadMs: number }
  | { readonly at: "arrive" }
  /** `stream`: whether the request asked to stream, as the server's kind reads it. */
  | { readonly at: "admit"; readonly stream: boolean }
  /** `finalAssistant`: the chat ends with the assistant's message (a prefill to continue). */
  | { readonly at: "generate"; readonly finalAssistant?: boolean };

/** How a normal answer is shaped on the wire: the stream faults. */
export interface AnswerShape {
  /** Time to first token replacing the server's own. */
  readonly ttftMs?: number;
  /** Stop sending after this many content tokens: for stallMs, or forever. */
  readonly stallAfter?: number;
  readonly stallMs?: number;
  /** Drop the connection after this many content tokens. */
  readonly cutAfter?: number;
  /** Send a malformed chunk after this many content tokens (a non-streamed answer is cut in half). */
  readonly malformedAfter?: number;
  /** Send the API's in-stream error event after this many content tokens, then end the stream. */
  readonly errorAfter?: number;
  /** Whether a stream ends with its `[DONE]`. */
  readonly done: boolean;
  /** The text is a model failure (generate.ts `degradeAnswer`). */
  readonly degrade?: Degrade;
}

/** Model failures an answer shows: one, in this order of precedence. */
export type Degrade = { readonly kind: "loop"; readonly after: number } | { readonly kind: "empty" } | { readonly kind: "refuse" } | { readonly kind: "garbage" };

function degradeOf(fault: Fault): Degrade | undefined {
  if (fault.empty) return { kind: "empty" };
  if (fault.garbage) return { kind: "garbage" };
  if (fault.refuse) return { kind: "refuse" };
  if (fault.loop_after !== undefined) return { kind: "loop", after: fault.loop_after };
  return undefined;
}

export type GateDecision =
  /** Nothing applies here: go on. */
  | { readonly act: "pass" }
  /** Accept the connection, never answer. */
  | { readonly act: "hang" }
  /** Health stays fine; the request never progresses. A stream gets its headers first. */
  | { readonly act: "wedge"; readonly streamHeaders: boolean }
  /** 429; Retry-After in seconds, or no header. */
  | { readonly act: "rate_limit"; readonly retryAfter: number | null }
  /** An error status with the server's error body around `message`; `echoAuth`: the message quotes the request's credentials (echoAuthMessage). */
  | { readonly act: "status"; readonly code: number; readonly message: string; readonly echoAuth?: true }
  /** Out of memory while serving: the kind decides how it dies. */
  | { readonly act: "oom" }
  /** 400: this model does not continue a final assistant message. */
  | { readonly act: "reject_prefill" }
  /** The server's own context-length error. */
  | { readonly act: "context_error" }
  /** Answer, shaped by the stream faults. */
  | { readonly act: "answer"; readonly shape: AnswerShape }
  /** Die `afterMs` after the fault was set: with an exit status, or by a signal. */
  | { readonly act: "crash"; readonly afterMs: number; readonly exit: { readonly code: number } | { readonly signal: NodeJS.Signals } }
  /** Load the model for `ms`; `oom`: then fail out of memory. */
  | { readonly act: "load"; readonly ms: number; readonly oom: boolean };

export interface GateResult {
  readonly decision: GateDecision;
  readonly counters: GateCounters;
}

const PASS: GateDecision = { act: "pass" };

export function defaultStatusMessage(code: number): string {
  if (code === 503) return "Service temporarily unavailable";
  if (code === 502) return "Bad gateway";
  if (code >= 500) return "Internal server error";
  return `HTTP ${code}`;
}

/** `message` quoting the request's Authorization header whole, and the key's first and last 10 characters as a masked hint. */
export function echoAuthMessage(message: string, authorization: string | undefined): string {
  const auth = authorization ?? "";
  const key = auth.replace(/^Bearer\s+/i, "");
  const hint = key.length > 20 ? `${key.slice(0, 10)}…${key.slice(-10)}` : key;
  return `${message}: the Authorization header was '${auth}' (key ${hint})`;
}

/** Decides what `fault` does at `point`. `random` is drawn from only for a status fault by fraction. */
export function faultGate(fault: Fault, point: GatePoint, counters: GateCounters, random: () => number): GateResult {
  switch (point.at) {
    case "arm": {
      const next: GateCounters = { statusLeft: fault.status?.count, rateLeft: fault.rate_limit?.count };
      const crash = fault.crash;
      if (!crash) return { decision: PASS, counters: next };
      const exit = crash.signal ? { signal: crash.signal } : { code: crash.exit_code ?? 1 };
      return { decision: { act: "crash", afterMs: crash.after_ms, exit }, counters: next };
    }
    case "load":
      // A model loading onto the CPU never runs out of GPU memory.
      return { decision: { act: "load", ms: fault.load_ms ?? point.loadMs, oom: fault.oom === "load" && !fault.on_cpu }, counters };
    case "arrive":
      return { decision: fault.hang ? { act: "hang" } : PASS, counters };
    case "admit":
      return admit(fault, point.stream, counters, random);
    case "generate":
      if (fault.reject_prefill && point.finalAssistant) return { decision: { act: "reject_prefill" }, counters };
      if (fault.context_error) return { decision: { act: "context_error" }, counters };
      return { decision: { act: "answer", shape: shapeOf(fault) }, counters };
  }
}

function admit(fault: Fault, stream: boolean, counters: GateCounters, random: () => number): GateResult {
  if (fault.wedge) return { decision: { act: "wedge", streamHeaders: stream }, counters };
  const rate = fault.rate_limit;
  if (rate && (counters.rateLeft === undefined || counters.rateLeft > 0)) {
    const next = counters.rateLeft === undefined ? counters : { ...counters, rateLeft: counters.rateLeft - 1 };
    return { decision: { act: "rate_limit", retryAfter: rate.retry_after }, counters: next };
  }
  const status = fault.status;
  if (status) {
    const left = counters.statusLeft;
    const hit = left !== undefined ? left > 0 : status.fraction !== undefined ? random() < status.fraction : true;
    if (hit) {
      const next = left === undefined ? counters : { ...counters, statusLeft: left - 1 };
      const decision: GateDecision = { act: "status", code: status.code, message: status.message ?? defaultStatusMessage(status.code), ...(status.echo_auth ? { echoAuth: true as const } : {}) };
      return { decision, counters: next };
    }
  }
  if (fault.oom === "runtime") return { decision: { act: "oom" }, counters };
  return { decision: PASS, counters };
}

function shapeOf(fault: Fault): AnswerShape {
  return {
    ...(fault.ttft_ms !== undefined ? { ttftMs: fault.ttft_ms } : {}),
    ...(fault.stall_after !== undefined ? { stallAfter: fault.stall_after } : {}),
    ...(fault.stall_ms !== undefined ? { stallMs: fault.stall_ms } : {}),
    ...(fault.cut_after !== undefined ? { cutAfter: fault.cut_after } : {}),
    ...(fault.malformed_after !== undefined ? { malformedAfter: fault.malformed_after } : {}),
    ...(fault.error_after !== undefined ? { errorAfter: fault.error_after } : {}),
    done: !fault.no_done,
    ...(degradeOf(fault) ? { degrade: degradeOf(fault)! } : {}),
  };
}

const NO_RANDOM = () => 0;

/** The `load` point's decision, for a model load: how long it takes, whether it then fails out of memory. */
export function gateLoad(fault: Fault, loadMs: number): { readonly ms: number; readonly oom: boolean } {
  const { decision } = faultGate(fault, { at: "load", loadMs }, {}, NO_RANDOM);
  return decision.act === "load" ? { ms: decision.ms, oom: decision.oom } : { ms: loadMs, oom: false };
}
