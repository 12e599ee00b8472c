/**
 * The routing core: for each request, try the route's tiers in order,
 * skipping those that are down, open or cooling off; classify every failure
 * before acting; one retry loop with an attempt budget and a deadline.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";

/** Request ids: a random prefix per process and a counter (no entropy drawn per request). */
const ID_PREFIX = randomBytes(4).toString("hex");
let idCounter = 0;
function nextRequestId(): string {
  idCounter = (idCounter + 1) % 0x100000000;
  return `${ID_PREFIX}${idCounter.toString(16).padStart(8, "0")}`;
}
import type { BackendConfig, Config, RouteConfig, TierConfig } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import { answerFromStream } from "../cache/marks.ts";
import { adjustForTier, type Body } from "./adjust.ts";
import { admit, onFailure, onSuccess, release, trip, type BreakerState } from "./breaker.ts";
import { TierBook } from "./tier-book.ts";
import { classifyHttp, classifyTransport, type Classified, type FailureClass, type TransportClass } from "./classify.ts";
import { header, headerSafe, readText, sendError } from "./http.ts";
import { answerFromCache, holdForRecovery, sendAllDown, sendContextTooLong } from "./last-resort.ts";
import type { RouterMetrics } from "./metrics.ts";
import { relayStream } from "./relay.ts";
import { Upstreams, type AttemptOutcome } from "./upstream.ts";
import { ServedWindow } from "./window.ts";
import { RouteWatch } from "./route-watch.ts";

export { ENDPOINT_PATHS, type CacheHook, type Endpoint, type RouterDeps, type RouterEvent, type TierRef, type TriedTier } from "./types.ts";
import { ENDPOINT_PATHS, type CacheHook, type Endpoint, type RequestCtx, type RouterDeps, type RouterEvent, type TierRef, type TriedTier } from "./types.ts";

/** Kinds that continue an assistant message (prefill): a broken stream can be finished there. */
const PREFILL_KINDS = new Set(["vllm", "llamacpp", "ollama"]);


export class Router {
  private readonly config: Config;
  private readonly deps: RouterDeps;
  private readonly backends: Map<string, BackendConfig>;
  private readonly tiers: TierBook;
  private readonly routes: RouteWatch;
  readonly upstreams: Upstreams;
  private readonly random: () => number;
  private readonly log: Logger;
  /** Answers served, and how many by a fallback tier, over the last five minutes. */
  readonly served = new ServedWindow(300);

  constructor(config: Config, deps: RouterDeps) {
    this.config = config;
    this.deps = deps;
    this.backends = new Map(config.backends.map((b) => [b.name, b]));
    this.upstreams = new Upstreams(config.backends);
    for (const [name, why] of this.upstreams.keyProblems) deps.health.set(name, "probe", "down", why);
    this.tiers = new TierBook({
      backends: this.backends,
      health: deps.health,
      clock: deps.clock,
      policy: { threshold: config.router.breaker.failure_threshold, openMs: config.router.breaker.open_interval, maxOpenMs: config.router.breaker.max_open_interval },
      onBreaker: (t, prev, next, reason) => {
        const e: RouterEvent = { event: "router.breaker", backend: t.backend, model: t.model, from: prev.state, to: next.state, reason, at: deps.clock.now() };
        this.log.warn(e, `breaker ${t.backend}/${t.model}: ${prev.state} → ${next.state} (${reason})`);
        deps.metrics?.breaker(t.backend, t.model, next.state);
        this.emit(e);
        this.reassess();
      },
    });
    this.random = deps.random ?? Math.random;
    this.log = deps.logger.child({ component: "router" });
    this.routes = new RouteWatch({
      backends: this.backends,
      clock: deps.clock,
      emit: (e) => this.emit(e),
      whyOut: (t) => this.unavailable(t),
    });
  }

  /** The route for a model name: exact, else the default route "*". */
  routeFor(model: string | undefined): RouteConfig | undefined {
    return this.config.routes.find((r) => r.model === model) ?? this.config.routes.find((r) => r.model === "*");
  }

  /** The default route, for /health/ready: "*" if there is one, else the first. */
  defaultRoute(): RouteConfig | undefined {
    return this.config.routes.find((r) => r.model === "*") ?? this.config.routes[0];
  }

  private emit(e: RouterEvent): void {
    this.deps.onEvent?.(e);
  }

  // ------------------------------------------------------------------ tier availability

  breaker(t: TierConfig): BreakerState {
    return this.tiers.breaker(t);
  }

  private setBreaker(t: TierConfig, next: BreakerState, reason: string): void {
    this.tiers.setBreaker(t, next, reason);
  }

  /** Why a tier cannot take a request now (no request is sent), or undefined when it can. */
  unavailable(t: TierConfig, ctx?: Pick<RequestCtx, "contextFloor">): string | undefined {
    return this.tiers.unavailable(t, ctx?.contextFloor);
  }

  /** Index of the first tier of a route that could take a request now; -1 if none. */
  servingTier(route: RouteConfig): number {
    return route.tiers.findIndex((t) => this.unavailable(t) === undefined);
  }

  snapshot(): { routes: { model: string; serving: number; lastServed: number; degradedSince?: number; tiers: { backend: string; model: string; available: boolean; why?: string; breaker: string }[] }[] } {
    return {
      routes: this.config.routes.map((r) => ({
        model: r.model,
        serving: this.servingTier(r),
        lastServed: this.routes.state(r.model)?.serving ?? -1,
        degradedSince: this.routes.state(r.model)?.degradedSince,
        tiers: r.tiers.map((t) => {
          const why = this.unavailable(t);
          return { backend: t.backend, model: t.model, available: why === undefined, why, breaker: this.breaker(t).state };
        }),
      })),
    };
  }

  // ------------------------------------------------------------------ the request

  async handle(req: IncomingMessage, res: ServerResponse, endpoint: Endpoint, body: Body): Promise<void> {
    const startedAt = performance.now();
    const requestId = (header(req.headers as Record<string, string>, "x-request-id") ?? nextRequestId()).slice(0, 128);
    const model = typeof body.model === "string" ? body.model : undefined;
    const route = this.routeFor(model);
    if (!route) {
      sendError(res, 404, `The model \`${model ?? ""}\` does not exist: llmsup routes ${this.config.routes.map((r) => r.model).join(", ")}`, "invalid_request_error", "model_not_found", { "x-request-id": requestId });
      return;
    }
    const clientGone = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) clientGone.abort();
    });
    const ctx: RequestCtx = {
      route,
      endpoint,
      body,
      stream: endpoint !== "embedding" && body.stream === true,
      requestId,
      res,
      clientHeaders: req.headers,
      clientGone: clientGone.signal,
      deadline: this.deps.clock.now() + this.config.router.request_timeout,
      startedAt,
      attempts: 0,
      tried: [],
    };
    if (await this.tryTiers(ctx)) return;
    if (ctx.clientGone.aborted) return;
    if (this.config.router.queue_timeout > 0 && (await this.holdForRecovery(ctx)) && (await this.tryTiers(ctx))) return;
    if (ctx.clientGone.aborted) return;
    await this.allDown(ctx);
  }

  /** Tries the route's tiers in order; true once a response was sent. */
  private async tryTiers(ctx: RequestCtx): Promise<boolean> {
    const tiers = ctx.route.tiers;
    let lastFailed: { ref: TierRef; reason: FailureClass; detail: string } | undefined;
    for (let i = 0; i < tiers.length; i++) {
      const tier = tiers[i]!;
      const ref: TierRef = { index: i, backend: tier.backend, model: tier.model };
      const why = this.unavailable(tier, ctx);
      if (why !== undefined) {
        ctx.tried.push({ tier: i, backend: tier.backend, model: tier.model, outcome: "skipped", detail: why });
        continue;
      }
      // An open breaker past its interval admits one probe request (half-open).
      const a = admit(this.breaker(tier), this.deps.clock.now());
      if (!a.allowed) {
        ctx.tried.push({ tier: i, backend: tier.backend, model: tier.model, outcome: "skipped", detail: "breaker open" });
        continue;
      }
      if (a.next !== this.breaker(tier)) this.setBreaker(tier, a.next, "open interval over: one probe request admitted");
      if (lastFailed) this.failover(ctx, lastFailed.ref, ref, lastFailed.reason, lastFailed.detail);
      const outcome = await this.tryTier(ctx, i);
      if (outcome === "sent") return true;
      if (outcome === "gone") {
        this.setBreaker(tier, release(this.breaker(tier), this.deps.clock.now()), "client went away during the probe");
        return true;
      }
      lastFailed = { ref, reason: outcome.class, detail: outcome.detail };
      if (ctx.attempts >= this.config.router.max_attempts || this.deps.clock.now() >= ctx.deadline) break;
    }
    if (lastFailed) this.failover(ctx, lastFailed.ref, undefined, lastFailed.reason, lastFailed.detail);
    return false;
  }

  private failover(ctx: RequestCtx, from: TierRef, to: TierRef | undefined, reason: FailureClass, detail: string): void {
    const e: RouterEvent = { event: "router.failover", route: ctx.route.model, requestId: ctx.requestId, from, to, reason, detail, at: this.deps.clock.now() };
    this.log.info(e, `failover on ${ctx.route.model}: tier ${from.index} (${from.backend}) → ${to ? `tier ${to.index} (${to.backend})` : "nothing left"}: ${reason}: ${detail}`);
    this.deps.metrics?.failover(ctx.route.model, from.backend, to?.backend ?? "none", reason);
    this.emit(e);
  }

  /** One tier, with at most one retry for a 5xx. "sent": a response went out; else why the tier failed. */
  private async tryTier(ctx: RequestCtx, index: number): Promise<"sent" | "gone" | { class: FailureClass; detail: string }> {
    const tier = ctx.route.tiers[index]!;
    const backend = this.backends.get(tier.backend)!;
    let retried = false;
    for (;;) {
      if (ctx.clientGone.aborted) return "gone";
      const remainingMs = ctx.deadline - this.deps.clock.now();
      if (remainingMs <= 0) return { class: "total_timeout", detail: "the request's deadline passed" };
      ctx.attempts++;
      const attemptStart = performance.now();
      const up = await this.upstreams.attempt({
        backend,
        tier,
        path: ENDPOINT_PATHS[ctx.endpoint],
        body: JSON.stringify(adjustForTier(ctx.body, tier)),
        stream: ctx.stream,
        requestId: ctx.requestId,
        clientSignal: ctx.clientGone,
        remainingMs,
      });
      if (up.kind === "failure") {
        if (up.failure === "aborted") return "gone";
        const c = classifyTransport(up.failure);
        this.recordFailure(ctx, index, c, up.detail);
        return { class: c.class, detail: up.detail };
      }
      if (up.status < 200 || up.status >= 300) {
        const text = await readText(up.body).catch(() => "");
        up.done();
        const c = classifyHttp(
          { status: up.status, body: text, retryAfter: header(up.headers, "retry-after") },
          { now: this.deps.clock.now(), retryAfterMax: this.config.router.retry_after_max, defaultCooldown: this.config.router.breaker.open_interval, retried },
        );
        const detail = `HTTP ${up.status}: ${text.slice(0, 300)}`;
        if (c.action.kind === "return_to_caller") {
          // The caller's own mistake: unchanged, no failover, no breaker count.
          this.settleBreaker(tier, true);
          this.respondRaw(ctx, index, up.status, up.headers, text);
          return "sent";
        }
        this.recordFailure(ctx, index, c, detail);
        if (c.action.kind === "retry_same_tier" && ctx.attempts < this.config.router.max_attempts && !this.breakerOpen(tier)) {
          retried = true;
          const delay = this.config.router.retry_base_delay * (1 + this.random());
          if (ctx.deadline - this.deps.clock.now() > delay) {
            await new Promise((r) => setTimeout(r, delay));
            continue;
          }
        }
        if (c.action.kind === "skip_smaller_context") {
          ctx.contextFloor = Math.max(ctx.contextFloor ?? 0, tier.context ?? 0);
          ctx.contextError = { status: up.status, body: text };
        }
        return { class: c.class, detail };
      }
      // A success status: the answer itself can still be broken.
      const result = ctx.stream ? await this.streamAnswer(ctx, index, up, attemptStart) : await this.wholeAnswer(ctx, index, up, attemptStart);
      if (result === "sent" || result === "gone") return result;
      this.recordFailure(ctx, index, classifyTransport(result.class as TransportClass), result.detail);
      return result;
    }
  }

  private breakerOpen(t: TierConfig): boolean {
    return this.breaker(t).state === "open";
  }

  private recordFailure(ctx: RequestCtx, index: number, c: Classified, detail: string): void {
    const tier = ctx.route.tiers[index]!;
    ctx.tried.push({ tier: index, backend: tier.backend, model: tier.model, outcome: c.class, detail });
    this.deps.metrics?.request(ctx.route.model, index, tier.backend, c.class);
    const now = this.deps.clock.now();
    if (c.action.kind === "cooldown") {
      this.tiers.coolDown(tier, c.action.ms, `429 from the backend, Retry-After ${Math.round(c.action.ms / 1000)}s`);
    }
    if (c.class === "misconfigured") {
      this.setBreaker(tier, trip(this.breaker(tier), this.tiers.policy, now, detail), `misconfiguration: ${detail.slice(0, 120)}`);
      const e: RouterEvent = { event: "router.misconfigured", backend: tier.backend, model: tier.model, status: Number(/HTTP (\d+)/.exec(detail)?.[1] ?? 0), detail, at: now };
      this.log.error(e, `backend ${tier.backend} refuses model ${tier.model}: ${detail}`);
      this.emit(e);
    } else if (c.breaker) {
      this.setBreaker(tier, onFailure(this.breaker(tier), this.tiers.policy, now, `${c.class}: ${detail.slice(0, 120)}`), `${c.class}`);
    } else if (this.breaker(tier).state === "half_open") {
      this.setBreaker(tier, release(this.breaker(tier), now), "probe ended without a verdict");
    }
    if (c.backendDown) this.deps.health.set(tier.backend, "passive", "down", `${c.class}: ${detail}`);
  }

  private settleBreaker(t: TierConfig, ok: boolean): void {
    if (ok && this.breaker(t).state !== "closed") this.setBreaker(t, onSuccess(this.breaker(t)), "a request succeeded");
  }

  // ------------------------------------------------------------------ answers

  private llmsupHeaders(ctx: RequestCtx, index: number): Record<string, string> {
    const tier = ctx.route.tiers[index]!;
    const degraded = index > 0;
    const h: Record<string, string> = {
      "x-llmsup-tier": String(index),
      "x-llmsup-backend": tier.backend,
      "x-llmsup-degraded": String(degraded),
      "x-llmsup-attempts": String(ctx.attempts),
      "x-request-id": ctx.requestId,
    };
    const notice = this.notice(ctx, index);
    if (notice) h["x-llmsup-notice"] = headerSafe(notice);
    return h;
  }

  private notice(ctx: RequestCtx, index: number): string | undefined {
    const tier = ctx.route.tiers[index]!;
    if (tier.notice) return tier.notice;
    return index > 0 ? `Answered by fallback tier ${index} (${tier.backend}, ${tier.model})` : undefined;
  }

  private succeeded(ctx: RequestCtx, index: number, ttftMs?: number): void {
    const tier = ctx.route.tiers[index]!;
    this.settleBreaker(tier, true);
    if (this.deps.health.has(tier.backend, "passive")) this.deps.health.set(tier.backend, "passive", "healthy", "");
    this.deps.metrics?.request(ctx.route.model, index, tier.backend, "ok");
    if (ttftMs !== undefined) this.deps.metrics?.ttft(ctx.route.model, tier.backend, ttftMs / 1000);
    this.deps.onSuccess?.(tier.backend);
    this.served.record(this.deps.clock.now(), index > 0);
    this.routeServed(ctx.route, index);
  }

  /** Route-level transitions for alerts (see RouteWatch). */
  private routeServed(route: RouteConfig, index: number, tried: readonly TriedTier[] = []): void {
    this.routes.served(route, index, tried);
  }

  /** Re-reads every route's serving tier from health and breakers (called when they change), without waiting for traffic. */
  reassess(): void {
    for (const route of this.config.routes) this.routeServed(route, this.servingTier(route));
  }

  private respondRaw(ctx: RequestCtx, index: number, status: number, headers: Record<string, string | string[] | undefined>, text: string): void {
    if (ctx.res.headersSent || ctx.res.destroyed) return;
    const ct = header(headers, "content-type") ?? "application/json";
    ctx.res.writeHead(status, { "content-type": ct, "content-length": Buffer.byteLength(text), ...this.llmsupHeaders(ctx, index) });
    ctx.res.end(text);
  }

  private async wholeAnswer(ctx: RequestCtx, index: number, up: Extract<AttemptOutcome, { kind: "response" }>, attemptStart: number): Promise<"sent" | "gone" | { class: FailureClass; detail: string }> {
    let text: string;
    let raw: Buffer;
    try {
      // undici's own consumer: cheaper than async iteration on this hot path. The bytes are kept to be sent on unchanged.
      raw = Buffer.from(await (up.body as unknown as { arrayBuffer(): Promise<ArrayBuffer> }).arrayBuffer());
      text = raw.toString("utf8");
    } catch (e) {
      const why = up.abortedBy();
      up.done();
      if (why === "aborted") return "gone";
      return { class: why ?? "stream_broken", detail: why ? `${why.replace("_", " ")} while reading the answer` : `the answer broke off: ${(e as Error).message}` };
    }
    up.done();
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(text) as Record<string, unknown>;
      if (!json || typeof json !== "object") throw new Error("not a JSON object");
    } catch (e) {
      return { class: "stream_broken", detail: `the backend's answer is not valid JSON (${(e as Error).message})` };
    }
    if (ctx.endpoint === "embedding" ? !Array.isArray(json.data) : !Array.isArray(json.choices)) return { class: "stream_broken", detail: `the backend's answer has no ${ctx.endpoint === "embedding" ? "data" : "choices"}` };
    const ttftMs = performance.now() - attemptStart;
    this.succeeded(ctx, index, ttftMs);
    if (ctx.route.cache) this.deps.cache?.store(ctx.route, ctx.endpoint, ctx.body, json, ctx.clientHeaders);
    const degraded = index > 0;
    let out: Buffer | string = raw;
    if (degraded && this.config.router.degraded_fields) {
      const tier = ctx.route.tiers[index]!;
      out = JSON.stringify({ ...json, _backend: tier.backend, _degraded: true, _notice: this.notice(ctx, index) });
    }
    if (ctx.res.headersSent || ctx.res.destroyed) return "gone";
    ctx.res.writeHead(200, { "content-type": "application/json", "content-length": typeof out === "string" ? Buffer.byteLength(out) : out.length, ...this.llmsupHeaders(ctx, index) });
    ctx.res.end(out);
    // What the router itself added: everything but the one upstream attempt (failovers excluded).
    if (ctx.attempts === 1) this.deps.metrics?.overhead(Math.max(0, performance.now() - ctx.startedAt - ttftMs) / 1000);
    return "sent";
  }

  private async streamAnswer(ctx: RequestCtx, index: number, up: Extract<AttemptOutcome, { kind: "response" }>, attemptStart: number): Promise<"sent" | "gone" | { class: FailureClass; detail: string }> {
    const tier = ctx.route.tiers[index]!;
    const ct = header(up.headers, "content-type") ?? "";
    if (!ct.includes("text/event-stream")) {
      // Some servers answer a stream request with one JSON body: relay it as a whole answer.
      return this.wholeAnswer(ctx, index, up, attemptStart);
    }
    const result = await relayStream(ctx.res, up, {
      commit: () => ctx.res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", ...this.llmsupHeaders(ctx, index) }),
      continuing: false,
      ttftLeftMs: tier.ttft_timeout - (performance.now() - attemptStart),
      finishGraceMs: Math.min(1_000, tier.idle_timeout),
      startedAt: attemptStart,
    });
    if (result.kind === "client_gone") return "gone";
    if (result.kind === "failed_before_commit") return { class: result.failure, detail: result.detail };
    if (result.kind === "complete") {
      this.succeeded(ctx, index, result.ttftMs);
      ctx.res.end();
      this.storeStreamed(ctx, index, result.content);
      return "sent";
    }
    // Broken after the commit: count it, then finish the answer elsewhere or say so.
    this.recordFailure(ctx, index, classifyTransport(result.failure as TransportClass), result.detail);
    await this.continueOrFail(ctx, index, result.content, result.chunks, result.detail);
    return "sent";
  }

  /** A finished stream, for the emergency cache: its text as the whole answer it was. */
  private storeStreamed(ctx: RequestCtx, index: number, content: string): void {
    if (!ctx.route.cache || !this.deps.cache || content === "") return;
    this.deps.cache.store(ctx.route, ctx.endpoint, ctx.body, answerFromStream(ctx.endpoint, content, ctx.route.tiers[index]!.model, this.deps.clock.now()), ctx.clientHeaders);
  }

  /** Continues a broken stream on the next tier that supports assistant prefill, or ends it with an error event. */
  private async continueOrFail(ctx: RequestCtx, failedIndex: number, soFar: string, generated: number, detail: string): Promise<void> {
    const res = ctx.res;
    const messages = Array.isArray(ctx.body.messages) ? (ctx.body.messages as unknown[]) : undefined;
    if (ctx.endpoint === "chat" && messages && soFar !== "") {
      for (let j = failedIndex + 1; j < ctx.route.tiers.length; j++) {
        const tier = ctx.route.tiers[j]!;
        const backend = this.backends.get(tier.backend)!;
        if (!PREFILL_KINDS.has(backend.kind) || this.unavailable(tier) !== undefined) continue;
        if (ctx.attempts >= this.config.router.max_attempts || this.deps.clock.now() >= ctx.deadline) break;
        ctx.attempts++;
        const asked = typeof ctx.body.max_tokens === "number" ? ctx.body.max_tokens : undefined;
        const body = adjustForTier(ctx.body, tier, {
          messages: [...messages, { role: "assistant", content: soFar }],
          stream: true,
          ...(asked !== undefined ? { max_tokens: Math.max(1, Math.min(asked - generated, tier.max_tokens ?? Infinity)) } : {}),
          ...(backend.kind === "vllm" ? { continue_final_message: true, add_generation_prompt: false } : {}),
        });
        const start = performance.now();
        const up = await this.upstreams.attempt({ backend, tier, path: ENDPOINT_PATHS.chat, body: JSON.stringify(body), stream: true, requestId: ctx.requestId, clientSignal: ctx.clientGone, remainingMs: ctx.deadline - this.deps.clock.now() });
        if (up.kind === "failure" || up.status !== 200) {
          if (up.kind === "response") {
            await readText(up.body).catch(() => "");
            up.done();
          }
          continue;
        }
        this.failover(ctx, { index: failedIndex, backend: ctx.route.tiers[failedIndex]!.backend, model: ctx.route.tiers[failedIndex]!.model }, { index: j, backend: tier.backend, model: tier.model }, "stream_broken", `continued after: ${detail}`);
        res.write(`: llmsup: the answer continues on tier ${j} (${tier.backend}) after tier ${failedIndex} broke off: ${detail}\n\n`);
        const r = await relayStream(res, up, { commit: () => undefined, continuing: true, ttftLeftMs: tier.ttft_timeout, finishGraceMs: Math.min(1_000, tier.idle_timeout), startedAt: start });
        if (r.kind === "complete") {
          this.succeeded(ctx, j);
          res.end();
          this.storeStreamed(ctx, j, soFar + r.content);
          return;
        }
        if (r.kind === "client_gone") return;
        soFar += r.kind === "broken_after_commit" ? r.content : "";
      }
    }
    if (!res.destroyed) {
      res.write(`data: ${JSON.stringify({ error: { message: `The answer was cut off and could not be completed: ${detail}`, type: "upstream_error", param: null, code: "stream_interrupted" } })}\n\n`);
      res.end();
    }
  }

  // ------------------------------------------------------------------ nothing left

  private holdForRecovery(ctx: RequestCtx): Promise<boolean> {
    return holdForRecovery(ctx, this.deps.health, this.deps.clock, this.config.router.queue_timeout);
  }

  private async allDown(ctx: RequestCtx): Promise<void> {
    const route = ctx.route;
    const onlyContext = ctx.contextError !== undefined && ctx.tried.every((t) => t.outcome === "skipped" || t.outcome === "context_length");
    if (onlyContext) return sendContextTooLong(ctx);
    const cache = route.cache ? this.deps.cache : undefined;
    if (cache) {
      const hit = await answerFromCache(ctx, cache, this.config.router.degraded_fields);
      if (hit) {
        this.emit({ event: "router.cache.served", route: route.model, similarity: hit.similarity, at: this.deps.clock.now() });
        this.deps.metrics?.request(route.model, -1, "cache", "cache_hit");
        return;
      }
    }
    this.routeServed(route, -1, ctx.tried);
    this.deps.metrics?.request(route.model, -1, "none", "all_tiers_down");
    sendAllDown(ctx, this.config.router.all_down_retry_after, cache !== undefined);
  }

  async close(): Promise<void> {
    await this.upstreams.close();
  }
}
