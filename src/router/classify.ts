/**
 * Every failed attempt is classified before anything is done about it
 * (DESIGN.md, "Request path semantics"). Pure.
 */
import type { Detector } from "./quality.ts";

export type FailureClass =
  /** Connection refused, DNS, TLS: the backend's port or host is gone; next tier at once. */
  | "connect"
  /** The connection was reset or closed under one request: evidence about that request only. */
  | "connect_reset"
  /** Timeouts: fail over, never retry the silent tier. */
  | "connect_timeout"
  | "ttft_timeout"
  | "idle_timeout"
  | "total_timeout"
  /** 5xx: at most one jittered retry on the same tier, then fall over. */
  | "server_error"
  /** 429: Retry-After becomes the tier's cooldown; fall over meanwhile. */
  | "rate_limited"
  /** 400 context length: only a tier with a larger context can help. */
  | "context_length"
  /** 401/403/404-model: misconfiguration; open the breaker and alert. */
  | "misconfigured"
  /** Other 4xx: the caller's problem; returned unchanged. */
  | "client_error"
  /** A stream that broke: cut, malformed chunk, ended without finish_reason. */
  | "stream_broken"
  /**
   * The request was moved off its backend when the backend went down under it (a GPU fault): no
   * verdict on the tier, whose backend's health already says it is out; on to the next tier.
   */
  | "evacuated"
  /** The model answered, but the answer is a model failure (quality.ts: a loop, empty, garbage, a refusal): the tier's fault; on to the next tier. */
  | "quality";

export type Action =
  | { readonly kind: "next_tier" }
  | { readonly kind: "retry_same_tier" }
  | { readonly kind: "cooldown"; readonly ms: number }
  | { readonly kind: "skip_smaller_context" }
  | { readonly kind: "return_to_caller" };

/**
 * What a failure is evidence about (DESIGN.md, "blame the right thing"):
 * - tier: this (backend, model) only — counts against its breaker;
 * - backend: the process or host (refused, unreachable) — the backend is DOWN until a shallow probe passes;
 * - none: the caller's request, or nothing to hold against anyone.
 */
export type Blame = "tier" | "backend" | "none";

export interface Classified {
  readonly class: FailureClass;
  readonly action: Action;
  readonly blame: Blame;
  /** Worth an immediate shallow probe of the backend (a reset may mean the process died). */
  readonly suspect: boolean;
  /** A model failure: which detector caught it. */
  readonly detector?: Detector;
}

const CONTEXT_MARKERS = [
  /maximum context length/i,
  /context length is only/i,
  /exceeds the available context size/i,
  /context_length_exceeded/i,
  /exceed_context_size_error/i,
  /prompt too long/i,
  /prompt is too long/i,
  /exceed context limit/i,
  /too many tokens/i,
  /reduce the length of the/i,
];

export function isContextLengthError(status: number, body: string): boolean {
  return (status === 400 || status === 413) && CONTEXT_MARKERS.some((m) => m.test(body));
}

/** Parses Retry-After (seconds or an HTTP date) into milliseconds from `now`. */
export function retryAfterMs(header: string | undefined, now: number): number | undefined {
  if (!header) return undefined;
  const s = header.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

export interface HttpFailure {
  readonly status: number;
  readonly body: string;
  readonly retryAfter?: string;
}

/** Classifies an HTTP answer that was not a success. */
export function classifyHttp(f: HttpFailure, opts: { now: number; retryAfterMax: number; defaultCooldown: number; retried: boolean }): Classified {
  const { status } = f;
  if (status === 429) {
    const ms = Math.min(retryAfterMs(f.retryAfter, opts.now) ?? opts.defaultCooldown, opts.retryAfterMax);
    return { class: "rate_limited", action: { kind: "cooldown", ms }, blame: "none", suspect: false };
  }
  if (isContextLengthError(status, f.body)) return { class: "context_length", action: { kind: "skip_smaller_context" }, blame: "none", suspect: false };
  if (status === 401 || status === 403 || (status === 404 && /model/i.test(f.body))) {
    return { class: "misconfigured", action: { kind: "next_tier" }, blame: "tier", suspect: false };
  }
  if (status >= 500) {
    return { class: "server_error", action: opts.retried ? { kind: "next_tier" } : { kind: "retry_same_tier" }, blame: "tier", suspect: false };
  }
  return { class: "client_error", action: { kind: "return_to_caller" }, blame: "none", suspect: false };
}

export type TransportClass = "connect" | "connect_reset" | "connect_timeout" | "ttft_timeout" | "idle_timeout" | "total_timeout" | "stream_broken" | "evacuated";

/**
 * Classifies a transport-level failure (no usable HTTP answer, or a broken
 * one). Refused and unreachable say the backend is gone; a connect timeout
 * says the host does not answer; an evacuation blames nothing (the backend's
 * health already took it out); everything else is about this request.
 */
export function classifyTransport(kind: TransportClass): Classified {
  if (kind === "evacuated") return { class: kind, action: { kind: "next_tier" }, blame: "none", suspect: false };
  const backend = kind === "connect" || kind === "connect_timeout";
  return { class: kind, action: { kind: "next_tier" }, blame: backend ? "backend" : "tier", suspect: kind === "connect_reset" };
}

/** A model failure caught by a quality detector: held against the tier, not the backend; next tier. */
export function classifyQuality(detector: Detector): Classified {
  return { class: "quality", action: { kind: "next_tier" }, blame: "tier", suspect: false, detector };
}

/** Error codes that say the backend cannot be reached at all (nothing listens, no route, no name, bad TLS). */
export function isRefusedError(code: string | undefined): boolean {
  return code !== undefined && /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ENOENT|ERR_TLS_CERT_ALTNAME_INVALID|CERT_|UNABLE_TO_VERIFY_LEAF_SIGNATURE|DEPTH_ZERO_SELF_SIGNED_CERT|ERR_SSL_)/.test(code);
}

/** Error codes of a connection that was there and broke under a request. */
export function isResetError(code: string | undefined): boolean {
  return code !== undefined && /^(ECONNRESET|EPIPE|UND_ERR_SOCKET|UND_ERR_CLOSED)$/.test(code);
}

/** What socket and HTTP-client error codes mean, in the words an operator reads in status, events and mails. */
const SOCKET_WORDS: readonly (readonly [RegExp, string])[] = [
  [/^ECONNREFUSED$/, "connection refused (nothing listens there)"],
  [/^ECONNRESET$/, "connection reset by the server"],
  [/^EPIPE$/, "connection closed by the server while sending"],
  [/^UND_ERR_(SOCKET|CLOSED)$/, "the server closed the connection"],
  [/^(ENOTFOUND|EAI_AGAIN)$/, "host name not found"],
  [/^(EHOSTUNREACH|ENETUNREACH)$/, "host unreachable"],
  [/^ENOENT$/, "no such socket"],
  [/^ETIMEDOUT$/, "connection timed out"],
  [/^(ERR_TLS_|CERT_|UNABLE_TO_VERIFY_LEAF_SIGNATURE|DEPTH_ZERO_SELF_SIGNED_CERT|ERR_SSL_)/, "TLS rejected"],
];

/** A transport error as words (the TLS code kept: it says which check failed); an unknown code or a message as it is. Pure. */
export function socketErrorText(code: string | undefined, message: string | undefined): string {
  const hit = code ? SOCKET_WORDS.find(([re]) => re.test(code)) : undefined;
  if (hit) return hit[1] === "TLS rejected" ? `TLS rejected (${code})` : hit[1];
  return code ?? message ?? "connection failed";
}
