/**
 * Every failed attempt is classified before anything is done about it
 * (DESIGN.md, "Request path semantics"). Pure.
 */

export type FailureClass =
  /** Connection refused/reset, DNS, TLS: the tier is down now; next tier at once. */
  | "connect"
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
  | "stream_broken";

export type Action =
  | { readonly kind: "next_tier" }
  | { readonly kind: "retry_same_tier" }
  | { readonly kind: "cooldown"; readonly ms: number }
  | { readonly kind: "skip_smaller_context" }
  | { readonly kind: "return_to_caller" };

export interface Classified {
  readonly class: FailureClass;
  readonly action: Action;
  /** Counts against the (backend, model) breaker. */
  readonly breaker: boolean;
  /** Takes the whole backend down until its next good probe (connection-level). */
  readonly backendDown: boolean;
}

const CONTEXT_MARKERS = [
  /maximum context length/i,
  /context length is only/i,
  /exceeds the available context size/i,
  /context_length_exceeded/i,
  /exceed_context_size_error/i,
  /prompt too long/i,
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
    return { class: "rate_limited", action: { kind: "cooldown", ms }, breaker: false, backendDown: false };
  }
  if (isContextLengthError(status, f.body)) return { class: "context_length", action: { kind: "skip_smaller_context" }, breaker: false, backendDown: false };
  if (status === 401 || status === 403 || (status === 404 && /model/i.test(f.body))) {
    return { class: "misconfigured", action: { kind: "next_tier" }, breaker: true, backendDown: false };
  }
  if (status >= 500) {
    return { class: "server_error", action: opts.retried ? { kind: "next_tier" } : { kind: "retry_same_tier" }, breaker: true, backendDown: false };
  }
  return { class: "client_error", action: { kind: "return_to_caller" }, breaker: false, backendDown: false };
}

export type TransportClass = "connect" | "connect_timeout" | "ttft_timeout" | "idle_timeout" | "total_timeout" | "stream_broken";

/** Classifies a transport-level failure (no usable HTTP answer, or a broken one). */
export function classifyTransport(kind: TransportClass): Classified {
  return { class: kind, action: { kind: "next_tier" }, breaker: true, backendDown: kind === "connect" || kind === "connect_timeout" };
}

/** Error codes of connection-level failures (undici and Node). */
export function isConnectError(code: string | undefined): boolean {
  return code !== undefined && /^(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|EPIPE|ENOENT|UND_ERR_SOCKET|ERR_TLS_CERT_ALTNAME_INVALID|CERT_|UNABLE_TO_VERIFY_LEAF_SIGNATURE|DEPTH_ZERO_SELF_SIGNED_CERT|ERR_SSL_)/.test(code);
}
