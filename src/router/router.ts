/**
 * The routing loop: for each request, go down the route's tiers as the plan
 * allows, one attempt each (attempt.ts), until one answers; then the end of
 * the chain (hold, cache, clean 400 or 503). Every outcome is reported to
 * the tier-state model (model.ts) once.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import type { BackendConfig, Config, RouteConfig, TierConfig } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import type { Body } from "./adjust.ts";
import type { BreakerState } from "./breaker.ts";
import type { Classified, FailureClass } from "./classify.ts";
import { attemptTier, type Core, type HedgeHooks, type TierResult } from "./attempt.ts";
import { continueStream } from "./continuation.ts";
import { HedgeBook, raceTiers, type HedgeCore } from "./hedge.ts";
import { InFlight } from "./inflight.ts";
import { header, sendError } from "./http.ts";
import { answerFromCache, holdForRecovery } from "./last-resort.ts";
import { TierModel, type RouteSnapshot } from "./model.ts";
import { CONTEXT_SKIPS, endpointGate, movedOffGate, type Gate } from "./plan.ts";
import { sendAllDown, sendContextTooLong } from "./respond.ts";
import { Upstreams } from "./upstream.ts";
import { ServedWindow } from "./window.ts";
import { plural } from "../alerts/text.ts";
import type { RequestCtx, RouterDeps, RouterEvent, TierRef } from "./types.ts";
import { ENDPOINT_PATHS } from "./types.ts";
import { Cancel } from "../platform/cancel.ts";

export { ENDPOINT_PATHS, type CacheHook, type Endpoint, type RouterDeps, type RouterEvent, type TierRef, type TriedTier } from "./types.ts";
export type { RouteSnapshot, TierSnapshot } from "./model.ts";
import type { Endpoint } from "./types.ts";

/** Request ids: a random prefix per process and a counter (no entropy drawn per request). */
const ID_PREFIX = randomBytes(4).toString("hex");
let idCounter = 0;
function nextRequestId(): string {
  idCounter = (idCounter + 1) % 0x100000000;
  return `${ID_PREFIX}${idCounter.toString(16).padStart(8, "0")}`;
}

export class Router implements Core, HedgeCore {
  readonly config: Config;
  readonly backends: Map<string, BackendConfig>;
  readonly upstreams: Upstreams;
  readonly clock: RouterDeps["clock"];
  readonly random: () => number;
  readonly metrics?: RouterDeps["metrics"];
  readonly cache?: RouterDeps["cache"];
  private readonly deps: RouterDeps;
  private readonly log: Logger;
  /** routeFor's index of the configured routes by model name. */
  private routeIndex: { routes: readonly RouteConfig[]; size: number; byModel: Map<string, RouteConfig> } | undefined;

  /** The tier-state model this router routes by. */
  readonly model: TierModel;
  /** Answers served, and how many by a fallback tier, over the last five minutes. */
  readonly served = new ServedWindow(300);
  /** Recent first-token times per (backend, model), for `hedge_after = "auto"`. */
  readonly hedges: HedgeBook;
  /** Requests in flight per backend; shared with the router a reload replaces, whose requests are still running. */
  readonly inflight: InFlight;

  /** `previous`: the router of the configuration a reload replaces; what it knew of tiers and routes that remain carries over. */
  constructor(config: Config, deps: RouterDeps, previous?: Router) {
    this.config = config;
    this.deps = deps;
    this.clock = deps.clock;
    this.metrics = deps.metrics;
    this.cache = deps.cache;
    this.random = deps.random ?? Math.random;
    this.log = deps.logger.child({ component: "router" });
    this.backends = new Map(config.backends.map((b) => [b.name, b]));
    this.upstreams = new Upstreams(config.backends);
    this.upstreams.faults = deps.faults;
    for (const [name, why] of this.upstreams.keyProblems) deps.health.set(name, "probe", "down", why);
    this.model = new TierModel(config, deps, this.backends, this.upstreams, this.log, previous?.model);
    this.hedges = previous?.hedges ?? new HedgeBook();
    this.inflight = previous?.inflight ?? new InFlight();
    this.metrics?.followInflight(() => [...this.backends.keys()].map((backend) => ({ backend, requests: this.inflight.get(backend) })));
    this.metrics?.followConnectionsUpstream(() => [...this.backends.values()].map((b) => ({ backend: b.name, ...this.upstreams.connectionStats(b) })));
  }

  /** The route for a model name: exact, else the default route "*". */
  routeFor(model: string | undefined): RouteConfig | undefined {
    const routes = this.config.routes;
    let index = this.routeIndex;
    if (!index || index.routes !== routes || index.size !== routes.length) {
      // The first route of each name, as find() would give it; rebuilt when the route list changes.
      const byModel = new Map<string, RouteConfig>();
      for (const r of routes) if (!byModel.has(r.model)) byModel.set(r.model, r);
      index = this.routeIndex = { routes, size: routes.length, byModel };
    }
    return (model !== undefined ? index.byModel.get(model) : undefined) ?? index.byModel.get("*");
  }

  /** The default route, for /health/ready: "*" if there is one, else the first. */
  defaultRoute(): RouteConfig | undefined {
    return this.config.routes.find((r) => r.model === "*") ?? this.config.routes[0];
  }

  private emit(e: RouterEvent): void {
    this.deps.onEvent?.(e);
  }

  // ------------------------------------------------------------------ the model, as the rest of the daemon reads it

  breaker(t: TierConfig): BreakerState {
    return this.model.breaker(t);
  }

  /** Why a tier cannot take a request now, or undefined when it can. */
  unavailable(t: TierConfig): string | undefined {
    const a = this.model.admission(t);
    return a.admissible ? undefined : a.why;
  }

  servingTier(route: RouteConfig): number {
    return this.model.servingTier(route);
  }

  reassess(): void {
    this.model.reassess();
  }

  resetBackend(backend: string): void {
    this.model.resetBackend(backend);
  }

  /** Requests on `backend` now (attempts running on it, streams included): what a drain waits for. */
  inFlight(backend: string): number {
    return this.inflight.get(backend);
  }

  /**
   * `backend` went down under the requests in flight on it (a GPU fault: `reason`): moves every one of
   * them off it now rather than letting them break or stall there. A stream past its commit point
   * continues on the next tier that can take it, with the seam marked and saying why (or ends with an
   * explicit error event where its answer cannot be carried over); a request not answered yet goes to
   * the next tier unseen. None goes back to this backend. Each route with requests moved gets one
   * `router.evacuated` event; returns how many requests were moved.
   */
  evacuate(backend: string, reason: string): number {
    const moved = this.inflight.evacuate(backend, `${backend} went down: ${reason}`);
    const at = this.clock.now();
    let total = 0;
    for (const [route, requests] of moved) {
      total += requests;
      const e: RouterEvent = { event: "router.evacuated", backend, route, reason, requests, at };
      this.log.warn(e, `${plural(requests, "request")} of ${route} moved off ${backend}, which went down: ${reason}`);
      this.emit(e);
    }
    if (total === 0) this.log.info({ event: "router.evacuate.none", backend, reason }, `${backend} went down with no request on it: ${reason}`);
    return total;
  }

  snapshot(): { routes: RouteSnapshot[] } {
    return { routes: this.model.snapshot() };
  }

  // ------------------------------------------------------------------ Core: what attempts report

  gate(ctx: RequestCtx, index: number): Gate {
    const backend = ctx.route.tiers[index]!.backend;
    return movedOffGate(backend, ctx.movedOff) ?? endpointGate(this.backends.get(backend)!.kind, ctx.endpoint) ?? this.model.gate(ctx, index);
  }

  windowOf(index: number, ctx: RequestCtx): number | undefined {
    return this.model.contextOf(ctx.route.tiers[index]!);
  }

  fail(ctx: RequestCtx, index: number, c: Classified, detail: string, cooldownWaived = false): void {
    const tier = ctx.route.tiers[index]!;
    ctx.tried.push({ tier: index, backend: tier.backend, model: tier.model, outcome: c.class, detail });
    this.metrics?.request(ctx.route.model, index, tier.backend, c.class);
    this.model.failed(tier, ctx.endpoint, c, detail, cooldownWaived);
    if (c.detector) {
      const e: RouterEvent = { event: "router.quality", route: ctx.route.model, requestId: ctx.requestId, backend: tier.backend, model: tier.model, detector: c.detector, detail, at: this.clock.now() };
      this.log.warn(e, `model failure on ${ctx.route.model}: tier ${index} (${tier.backend}/${tier.model}): ${detail}`);
      this.metrics?.quality(tier.backend, tier.model, c.detector);
      this.emit(e);
    }
  }

  succeed(ctx: RequestCtx, index: number, ttftMs?: number): void {
    const tier = ctx.route.tiers[index]!;
    this.model.succeeded(tier);
    this.metrics?.request(ctx.route.model, index, tier.backend, "ok");
    if (ttftMs !== undefined) {
      this.metrics?.ttft(ctx.route.model, tier.backend, ttftMs / 1000);
      this.hedges.record(tier, this.clock.now(), ttftMs);
    }
    this.deps.onSuccess?.(tier.backend);
    this.served.record(this.clock.now(), index > 0);
  }

  failover(ctx: RequestCtx, from: TierRef, to: TierRef | undefined, reason: FailureClass, detail: string): void {
    const e: RouterEvent = { event: "router.failover", route: ctx.route.model, requestId: ctx.requestId, from, to, reason, detail, at: this.clock.now() };
    this.log.info(e, `failover on ${ctx.route.model}: tier ${from.index} (${from.backend}) → ${to ? `tier ${to.index} (${to.backend})` : "nothing left"}: ${reason}: ${detail}`);
    this.metrics?.failover(ctx.route.model, from.backend, to?.backend ?? "none", reason);
    this.emit(e);
  }

  continueStream(ctx: RequestCtx, failedIndex: number, soFar: string, generated: number, detail: string, cause: FailureClass): Promise<void> {
    return continueStream(this, ctx, failedIndex, soFar, generated, detail, cause);
  }

  // ------------------------------------------------------------------ the request

  async handle(req: IncomingMessage, res: ServerResponse, endpoint: Endpoint, body: Body): Promise<void> {
    const startedAt = performance.now();
    const requestId = (header(req.headers as Record<string, string>, "x-request-id") ?? nextRequestId()).slice(0, 128);
    const model = typeof body.model === "string" ? body.model : undefined;
    const route = this.routeFor(model);
    if (!route) {
      sendError(res, "model_not_found", `The model \`${model ?? ""}\` does not exist: llmsup routes ${this.config.routes.map((r) => r.model).join(", ")}`, { "x-request-id": requestId });
      return;
    }
    const clientGone = new Cancel();
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
      clientGone,
      deadline: this.clock.now() + this.config.router.request_timeout,
      startedAt,
      attempts: 0,
      tried: [],
      contextModels: new Set(),
    };
    if (await this.tryTiers(ctx)) return;
    if (ctx.clientGone.aborted) return;
    if (this.config.router.queue_timeout > 0 && (await holdForRecovery(ctx, this.deps.health, this.clock, this.config.router.queue_timeout)) && (await this.tryTiers(ctx))) return;
    if (ctx.clientGone.aborted) return;
    await this.endOfChain(ctx);
  }

  // ------------------------------------------------------------------ HedgeCore: what a hedged race needs

  admit(ctx: RequestCtx, index: number): Gate {
    const g = this.gate(ctx, index);
    if (!g.go) {
      const tier = ctx.route.tiers[index]!;
      ctx.tried.push({ tier: index, backend: tier.backend, model: tier.model, outcome: "skipped", detail: g.why, skip: g.code });
    }
    return g;
  }

  async attempt(ctx: RequestCtx, index: number, g: Gate, hooks?: HedgeHooks): Promise<TierResult> {
    const tier = ctx.route.tiers[index]!;
    const halfOpen = g.go ? g.halfOpen : undefined;
    if (halfOpen) this.model.takeCheck(tier, halfOpen);
    try {
      return await attemptTier(this, ctx, index, hooks);
    } finally {
      // The half-open slot is given back on every way out that gave no verdict.
      if (halfOpen) this.model.returnCheck(tier, halfOpen);
    }
  }

  hedgeAfter(ctx: RequestCtx, index: number): number | undefined {
    return this.hedges.delay(ctx.route.tiers[index]!, this.config.router.hedge_after, this.clock.now());
  }

  /**
   * Tier `index`'s hedge delay when a hedge could start: hedging on for it,
   * room for one more attempt, and an admissible tier after it. Undefined
   * otherwise — then the attempt runs alone, with no timer.
   */
  private hedgeable(ctx: RequestCtx, index: number): number | undefined {
    if (ctx.attempts + 2 > this.config.router.max_attempts) return undefined;
    const tiers = ctx.route.tiers;
    let later = false;
    for (let j = index + 1; j < tiers.length && !later; j++) later = this.gate(ctx, j).go;
    return later ? this.hedgeAfter(ctx, index) : undefined;
  }

  /** Goes down the route's tiers; true once a response was sent. */
  private async tryTiers(ctx: RequestCtx): Promise<boolean> {
    const tiers = ctx.route.tiers;
    let lastFailed: { ref: TierRef; reason: FailureClass; detail: string } | undefined;
    for (let i = 0; i < tiers.length; i++) {
      const tier = tiers[i]!;
      const g = this.admit(ctx, i);
      if (!g.go) continue;
      const ref: TierRef = { index: i, backend: tier.backend, model: tier.model };
      if (lastFailed) this.failover(ctx, lastFailed.ref, ref, lastFailed.reason, lastFailed.detail);
      const delay = this.hedgeable(ctx, i);
      let r: TierResult;
      let from = ref;
      if (delay === undefined) r = await this.attempt(ctx, i, g);
      else {
        // Hedged: the race may have gone on to later tiers; the loop resumes after the last one it looked at.
        const end = await raceTiers(this, ctx, i, g, delay);
        r = end.result;
        from = { index: end.index, backend: tiers[end.index]!.backend, model: tiers[end.index]!.model };
        i = end.next - 1;
      }
      if (r === "sent" || r === "gone" || r === "lost") return true;
      if ("invalid" in r) {
        sendError(ctx.res, "invalid_request", `Invalid request: ${r.invalid}`, { "x-request-id": ctx.requestId });
        return true;
      }
      lastFailed = { ref: from, reason: r.class, detail: r.detail };
      if (ctx.attempts >= this.config.router.max_attempts || this.clock.now() >= ctx.deadline) break;
    }
    if (lastFailed) this.failover(ctx, lastFailed.ref, undefined, lastFailed.reason, lastFailed.detail);
    return false;
  }

  /** No tier answered: too long for every tier that is left, an answer from the cache, or 503. */
  private async endOfChain(ctx: RequestCtx): Promise<void> {
    const route = ctx.route;
    const firstContext = ctx.tried.findIndex((t) => t.outcome === "context_length");
    const tooLongEverywhere =
      ctx.contextError !== undefined && ctx.tried.slice(firstContext + 1).every((t) => t.outcome === "context_length" || (t.skip !== undefined && CONTEXT_SKIPS.has(t.skip as never)));
    if (tooLongEverywhere) return sendContextTooLong(ctx);
    if (ctx.tried.length > 0 && ctx.tried.every((t) => t.skip === "endpoint_not_served")) {
      return sendError(ctx.res, "endpoint_not_served", `No tier of route ${route.model} serves ${ENDPOINT_PATHS[ctx.endpoint]}: ${ctx.tried.map((t) => `tier ${t.tier} (${t.backend}): ${t.detail}`).join("; ")}`, { "x-request-id": ctx.requestId });
    }
    const cache = route.cache ? this.cache : undefined;
    if (cache) {
      const hit = await answerFromCache(ctx, cache, this.config.router.degraded_fields);
      if (hit) {
        this.emit({ event: "router.cache.served", route: route.model, similarity: hit.similarity, at: this.clock.now() });
        this.metrics?.request(route.model, -1, "cache", "cache_hit");
        return;
      }
    }
    this.metrics?.request(route.model, -1, "none", "all_tiers_down");
    sendAllDown(ctx, this.config.router.all_down_retry_after, cache !== undefined);
  }

  async close(): Promise<void> {
    this.model.close();
    await this.upstreams.close();
  }
}
