/**
 * Talking to backends: keep-alive connection pools per origin, one attempt
 * with the tier's connect / first-byte / idle / total timeouts, and transport
 * failures named precisely. Thin I/O shell over undici.
 */
import type { Abortable } from "../platform/cancel.ts";
import { Readable } from "node:stream";
import { Pool, errors as undiciErrors } from "undici";
import type { BackendConfig, TierConfig } from "../config/types.ts";
import { isRefusedError, isResetError, socketErrorText } from "./classify.ts";
import { probeUrl } from "../health/remote.ts";
import { authHeaders, readApiKey } from "../health/api-key.ts";
import { MESSAGES_PATH, messagesExchange } from "./anthropic/wire.ts";
import { readText } from "./http.ts";
import { scrub } from "./scrub.ts";
import { DispatchedAnswer, streamBody, type UpstreamBody } from "./body.ts";

/** `evacuated`: the router moved the request off its backend (router.ts `evacuate`); `aborted`: the client went away or the caller gave up. */
export type TransportFailure = "connect" | "connect_reset" | "connect_timeout" | "ttft_timeout" | "idle_timeout" | "total_timeout" | "aborted" | "evacuated";

export type AttemptOutcome =
  | {
      readonly kind: "response";
      readonly status: number;
      readonly headers: Record<string, string | string[] | undefined>;
      /** Read as a stream for a streamed request, whole otherwise (body.ts). */
      readonly body: UpstreamBody;
      /** Aborts the upstream request (client gone, deadline, stream given up). */
      readonly abort: (why?: TransportFailure) => void;
      /** Why the attempt was aborted, if it was. */
      readonly abortedBy: () => TransportFailure | undefined;
      /** When it was evacuated: why, in words (the evacuation signal's reason). */
      readonly evacuatedBecause: () => string | undefined;
      /** Ends the total-timeout timer once the body has been consumed. */
      readonly done: () => void;
      /**
       * The body of a non-success answer as text, bounded and scrubbed of credentials (scrub.ts):
       * the one way an upstream's error text enters llmsup; "" when it cannot be read.
       */
      readonly errorText: () => Promise<string>;
      /** Scrubs other upstream text (an SSE error chunk, a parse error quoting the body) the same way. */
      readonly scrub: (text: string) => string;
    }
  | { readonly kind: "failure"; readonly failure: TransportFailure; readonly detail: string };

export interface AttemptRequest {
  readonly backend: BackendConfig;
  readonly tier: TierConfig;
  readonly path: string;
  readonly body: string;
  /** Streaming: headers are awaited for ttft_timeout; the first content token is watched by the caller. */
  readonly stream: boolean;
  readonly requestId: string;
  /** The caller went away. */
  readonly clientSignal: Abortable;
  /** Aborted, with a reason in words, when the request is moved off this backend: the attempt ends as `evacuated`. */
  readonly evacuation?: Abortable;
  /** Milliseconds left of the whole request's deadline. */
  readonly remainingMs: number;
}

/** A drill's router faults (drills/inject.ts), as Upstreams consults them: `send` is the real attempt; a check answered here is not made. */
export interface UpstreamFaults {
  attempt(r: AttemptRequest, send: (r: AttemptRequest) => Promise<AttemptOutcome>): Promise<AttemptOutcome>;
  check(backend: BackendConfig): { readonly ok: false; readonly detail: string } | undefined;
}


export class Upstreams {
  /** Pools by server (origin and connection bound, see server()), then by connect timeout. */
  private readonly pools = new Map<string, Map<number, Pool>>();
  private readonly keys = new Map<string, string | undefined>();
  /** Backends whose API key could not be read, and why: they are unusable until a reload. */
  readonly keyProblems = new Map<string, string>();

  /**
   * `text` without any API key this instance holds (or a well-known key shape): see scrub.ts.
   * Every text that comes from an upstream passes here before it is logged, counted or answered.
   */
  scrub(text: string): string {
    return scrub(text, this.secrets());
  }

  private secrets(): string[] {
    const out: string[] = [];
    for (const k of this.keys.values()) if (k) out.push(k);
    return out;
  }

  /** Reads every backend's API key once. */
  constructor(backends: readonly BackendConfig[]) {
    for (const b of backends) {
      try {
        this.keys.set(b.name, readApiKey(b));
      } catch (e) {
        this.keyProblems.set(b.name, (e as Error).message);
      }
    }
  }

  private readonly bases = new Map<string, { origin: string; path: string }>();

  /**
   * Origin and base path of a backend URL, parsed once. Endpoint paths carry
   * their /v1, and OpenAI-compatible base URLs are usually written with it
   * (https://api.openai.com/v1): a base path ending in /v1 is the API root.
   */
  private base(backend: BackendConfig): { origin: string; path: string } {
    let b = this.bases.get(backend.url);
    if (!b) {
      const u = new URL(backend.url);
      b = { origin: u.origin, path: u.pathname.replace(/\/+$/, "").replace(/\/v1$/, "") };
      this.bases.set(backend.url, b);
    }
    return b;
  }

  /** Per backend (config object): its last pool and request path prefix, so the hot path skips the string keys. */
  private hot = new WeakMap<BackendConfig, { connectTimeout: number; pool: Pool; path: string }>();

  /** A backend's server as its pools are grouped: origin and connection bound (backend.max_connections; unset: unbounded, as nginx's upstreams). */
  private server(backend: BackendConfig): string {
    return `${this.base(backend).origin}|${backend.max_connections ?? ""}`;
  }

  /** One pool per server (origin and bound) and connect timeout. */
  private pool(backend: BackendConfig, connectTimeout: number): Pool {
    const key = this.server(backend);
    let byTimeout = this.pools.get(key);
    if (!byTimeout) this.pools.set(key, (byTimeout = new Map()));
    let p = byTimeout.get(connectTimeout);
    if (!p) {
      p = new Pool(this.base(backend).origin, {
        connections: backend.max_connections ?? null,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        keepAliveMaxTimeout: 120_000,
        connect: { timeout: connectTimeout },
      });
      byTimeout.set(connectTimeout, p);
    }
    return p;
  }

  /**
   * Connections open to the backend's server (idle keep-alive ones included) and requests waiting in llmsup for
   * one (only when backend.max_connections is reached), over its pools (one per connect timeout its tiers use).
   */
  connectionStats(backend: BackendConfig): { readonly connected: number; readonly queued: number } {
    let connected = 0;
    let queued = 0;
    for (const p of this.pools.get(this.server(backend))?.values() ?? []) {
      const s = p.stats;
      connected += s.connected;
      queued += s.queued;
    }
    return { connected, queued };
  }

  /** pool() and the base path for one attempt, from the per-backend cache when its connect timeout is the same. */
  private hotPath(backend: BackendConfig, connectTimeout: number): { pool: Pool; path: string } {
    let h = this.hot.get(backend);
    if (!h || h.connectTimeout !== connectTimeout) {
      h = { connectTimeout, pool: this.pool(backend, connectTimeout), path: this.base(backend).path };
      this.hot.set(backend, h);
    }
    return h;
  }

  /** Drill faults (drills/inject.ts): while set, each attempt and shallow check passes through them first. */
  faults?: UpstreamFaults;

  attempt(r: AttemptRequest): Promise<AttemptOutcome> {
    return this.faults ? this.faults.attempt(r, (x) => this.reach(x)) : this.reach(r);
  }

  private async reach(r: AttemptRequest): Promise<AttemptOutcome> {
    const { tier, backend } = r;
    if (r.evacuation?.aborted) return { kind: "failure", failure: "evacuated", detail: String(r.evacuation.reason) };
    // The handler and the body of this request in one object (body.ts), fed by undici's dispatcher.
    let started!: (a: DispatchedAnswer) => void;
    let failed!: (e: Error) => void;
    const answered = new Promise<DispatchedAnswer>((resolve, reject) => {
      started = resolve;
      failed = reject;
    });
    const answer = new DispatchedAnswer(started, failed);
    let abortedBy: TransportFailure | undefined;
    const abort = (why: TransportFailure = "aborted") => {
      if (abortedBy) return;
      abortedBy = why;
      answer.destroy();
    };
    const onClient = () => abort("aborted");
    const onEvacuation = () => abort("evacuated");
    const evacuatedBecause = () => (abortedBy === "evacuated" ? String(r.evacuation?.reason) : undefined);
    // No { once } options object to validate per attempt: done() removes both listeners, and an aborted signal never fires again.
    r.clientSignal.addEventListener("abort", onClient);
    r.evacuation?.addEventListener("abort", onEvacuation);
    const totalMs = Math.max(1, Math.min(tier.total_timeout, r.remainingMs));
    const total = setTimeout(() => abort("total_timeout"), totalMs);
    const done = () => {
      clearTimeout(total);
      r.clientSignal.removeEventListener("abort", onClient);
      r.evacuation?.removeEventListener("abort", onEvacuation);
    };
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: r.stream ? "text/event-stream" : "application/json",
      "x-request-id": r.requestId,
    };
    const key = this.keys.get(backend.name);
    if (backend.kind === "anthropic") Object.assign(headers, authHeaders(backend.kind, key));
    else if (key) headers.authorization = `Bearer ${key}`;
    // An Anthropic tier: the OpenAI request goes as a Messages request, its answer comes back as the OpenAI one (anthropic/wire.ts).
    const messages = backend.kind === "anthropic" ? messagesExchange(r.path, r.body) : undefined;
    if (messages && "problem" in messages) {
      done();
      const text = JSON.stringify({ error: { message: `This request cannot be sent to ${backend.name} (Anthropic): ${messages.problem}`, type: "invalid_request_error", param: null, code: null } });
      return { kind: "response", status: 400, headers: { "content-type": "application/json" }, body: streamBody(Readable.from([Buffer.from(text)])), abort, abortedBy: () => abortedBy, evacuatedBecause, done, errorText: async () => text, scrub: (t) => this.scrub(t) };
    }
    try {
      const hot = this.hotPath(backend, tier.connect_timeout);
      hot.pool.dispatch(
        {
          path: `${hot.path}${messages ? MESSAGES_PATH : r.path}`,
          method: "POST",
          headers,
          body: messages ? messages.body : r.body,
          headersTimeout: Math.min(tier.ttft_timeout, totalMs),
          bodyTimeout: tier.idle_timeout,
        },
        answer,
      );
      await answered;
      const translated = messages?.answer(answer.status, answer.headers, answer);
      const body = translated?.body ?? answer;
      return {
        kind: "response",
        status: answer.status,
        headers: translated?.headers ?? answer.headers,
        body,
        abort,
        abortedBy: () => abortedBy,
        evacuatedBecause,
        done,
        errorText: () => readText(body).then((t) => this.scrub(t), () => ""),
        scrub: (t) => this.scrub(t),
      };
    } catch (e) {
      done();
      return { kind: "failure", failure: abortedBy ?? transportFailure(e), detail: this.scrub(describe(e, abortedBy, r)) };
    }
  }

  /** A shallow GET of the backend's health endpoint (health/remote.ts probeUrl), bounded by `timeoutMs`: ok, or what went wrong. */
  async check(backend: BackendConfig, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
    const drilled = this.faults?.check(backend);
    if (drilled) return drilled;
    const url = new URL(probeUrl(backend));
    const key = this.keys.get(backend.name);
    try {
      const res = await this.pool(backend, timeoutMs).request({
        path: `${url.pathname}${url.search}`,
        method: "GET",
        headers: authHeaders(backend.kind, key),
        signal: AbortSignal.timeout(timeoutMs),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      await res.body.dump();
      return res.statusCode < 400 ? { ok: true, detail: `HTTP ${res.statusCode}` } : { ok: false, detail: `${url.pathname} answered ${res.statusCode}` };
    } catch (e) {
      const err = e as { name?: string; code?: string; message?: string; cause?: { code?: string } };
      return { ok: false, detail: err.name === "TimeoutError" ? `no answer within ${timeoutMs}ms` : socketErrorText(err.cause?.code ?? err.code, err.message) };
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].flatMap((byTimeout) => [...byTimeout.values()].map((p) => p.close().catch(() => undefined))));
    this.pools.clear();
    this.hot = new WeakMap();
  }
}

/** Names a transport error from undici or the socket layer. */
export function transportFailure(e: unknown): TransportFailure {
  const err = e as { code?: string; cause?: { code?: string } };
  if (e instanceof undiciErrors.ConnectTimeoutError || err.code === "UND_ERR_CONNECT_TIMEOUT") return "connect_timeout";
  if (e instanceof undiciErrors.HeadersTimeoutError || err.code === "UND_ERR_HEADERS_TIMEOUT") return "ttft_timeout";
  if (e instanceof undiciErrors.BodyTimeoutError || err.code === "UND_ERR_BODY_TIMEOUT") return "idle_timeout";
  if (isRefusedError(err.code) || isRefusedError(err.cause?.code)) return "connect";
  if (isResetError(err.code) || isResetError(err.cause?.code)) return "connect_reset";
  // Anything else undici reports mid-request (a closed socket without a code) is about this request.
  return "connect_reset";
}

function describe(e: unknown, abortedBy: TransportFailure | undefined, r: AttemptRequest): string {
  if (abortedBy === "total_timeout") return `no complete answer within total_timeout ${r.tier.total_timeout}ms`;
  if (abortedBy === "aborted") return "the client went away";
  if (abortedBy === "evacuated") return String(r.evacuation?.reason);
  const err = e as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const f = transportFailure(e);
  if (f === "connect_timeout") return `no connection within ${r.tier.connect_timeout}ms`;
  if (f === "ttft_timeout") return `no answer within ttft_timeout ${r.tier.ttft_timeout}ms`;
  if (f === "idle_timeout") return `silent for idle_timeout ${r.tier.idle_timeout}ms`;
  return socketErrorText(err.cause?.code ?? err.code, err.cause?.message ?? err.message);
}
