/**
 * The routing loop: for each request, go down the route's tiers as the plan
 * allows, one attempt each (attempt.ts), until one answers; then the end of
 * the chain (hold, cache, clean 400 or 503). What outcomes do to the
 * tier-state model is decided in outcome.ts and applied here, once.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import type { BackendConfig, Config, RouteConfig, TierConfig } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import type { Body } from "./adjust.ts";
import { CLOSED, release, type BreakerState } from "./breaker.ts";
import type { Classified, FailureClass } from "./classify.ts";
import { attemptTier, type Core } from "./attempt.ts";
import { continueStream } from "./continuation.ts";
import { header, sendError } from "./http.ts";
import { answerFromCache, holdForRecovery } from "./last-resort.ts";
import { failureEffects, successEffects } from "./outcome.ts";
import { CONTEXT_SKIPS, gateTier, type Gate } from "./plan.ts";
import { RecoveryProbes } from "./probes.ts";
import { sendAllDown, sendContextTooLong } from "./respond.ts";
import { RouteWatch } from "./route-watch.ts";
import { TierBook, tierKey } from "./tier-book.ts";
import { admission, type Admission } from "./tier-state.ts";
import { Upstreams } from "./upstream.ts";
import { ServedWindow } from "./window.ts";
import type { RequestCtx, RouterDeps, RouterEvent, TierRef } from "./types.ts";

export { ENDPOINT_PATHS, type CacheHook, type Endpoint, type RouterDeps, type RouterEvent, type TierRef, type TriedTier } from "./types.ts";
import type { Endpoint } from "./types.ts";

const GO: Gate = { go: true };

/** Request ids: a random prefix per process and a counter (no entropy drawn per request). */
const ID_PREFIX = randomBytes(4).toString("hex");
let idCounter = 0;
function nextRequestId(): string {
  idCounter = (idCounter + 1) % 0x100000000;
  return `${ID_PREFIX}${idCounter.toString(16).padStart(8, "0")}`;
}

export interface TierSnapshot {
  readonly backend: string;
  readonly model: string;
  readonly admission: Admission;
  readonly breaker: BreakerState["state"];
  readonly context?: number;
}

export interface RouteSnapshot {
  readonly model: string;
  /** The serving tier by the model; -1: none. */
  readonly serving: number;
  readonly phase: "settling" | "settled";
  readonly since: number;
  readonly degradedSince?: number;
  readonly tiers: readonly TierSnapshot[];
}

export class Router implements Core {
  readonly config: Config;
  readonly backends: Map<string, BackendConfig>;
  readonly upstreams: Upstreams;
  readonly clock: RouterDeps["clock"];
  readonly random: () => number;
  readonly metrics?: RouterDeps["metrics"];
  readonly cache?: RouterDeps["cache"];
  private readonly deps: RouterDeps;
  private readonly book: TierBook;
  private readonly routes: RouteWatch;
  private readonly probes: RecoveryProbes;
  private readonly log: Logger;
  private readonly allTiers: readonly TierConfig[];
  private readonly offHealth: () => void;
  /** Backends of a kind the router speaks. */
  private readonly spoken: ReadonlySet<string>;
  /** Answers served, and how many by a fallback tier, over the last five minutes. */
  readonly served = new ServedWindow(300);

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
    this.allTiers = config.routes.flatMap((r) => r.tiers);
    this.spoken = new Set(config.backends.filter((b) => admission({ kind: b.kind, health: { state: "healthy", reason: "", since: 0 }, breaker: CLOSED }, 0).admissible).map((b) => b.name));
    this.upstreams = new Upstreams(config.backends);
    for (const [name, why] of this.upstreams.keyProblems) deps.health.set(name, "probe", "down", why);
    const b = config.router.breaker;
    this.book = new TierBook({
      backends: this.backends,
      health: deps.health,
      clock: deps.clock,
      policy: { threshold: b.failure_threshold, openMs: b.open_interval, maxOpenMs: b.max_open_interval },
      onBreaker: (t, prev, next, reason) => {
        const e: RouterEvent = { event: "router.breaker", backend: t.backend, model: t.model, from: prev.state, to: next.state, reason, at: deps.clock.now() };
        this.log.warn(e, `breaker ${t.backend}/${t.model}: ${prev.state} → ${next.state} (${reason})`);
        deps.metrics?.breaker(t.backend, t.model, next.state);
        this.emit(e);
        this.reassess();
      },
      onCooldown: () => this.reassess(),
    });
    this.probes = new RecoveryProbes({
      backends: this.backends,
      upstreams: this.upstreams,
      health: deps.health,
      clock: deps.clock,
      log: this.log,
      stillOut: (t) => this.book.breaker(t).state !== "closed",
      healed: (t, detail) => this.healed(t, detail),
    });
    this.routes = new RouteWatch(config.routes, { backends: this.backends, clock: deps.clock, emit: (e) => this.emit(e), admission: (t) => this.book.admission(t), holdMs: config.router.recovery_hold, loading: (t) => deps.health.isRecovering(t.backend) });
    if (previous) {
      this.book.adopt(previous.book, this.allTiers);
      this.routes.adopt(previous.routes);
      for (const t of this.allTiers) if (this.book.breaker(t).state === "open") this.probes.tierOut(t, previous.probes.endpointOf(t) ?? "chat");
    }
    this.routes.observe();
    deps.metrics?.follow(() => this.snapshot().routes);
    // Routes change tier when health does, traffic or not (a reason change can end a boot's settling: starting → fatal).
    this.offHealth = deps.health.onChange(() => this.reassess());
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

  // ------------------------------------------------------------------ the tier-state model

  breaker(t: TierConfig): BreakerState {
    return this.book.breaker(t);
  }

  admission(t: TierConfig): Admission {
    return this.book.admission(t);
  }

  /** Why a tier cannot take a request now, or undefined when it can. */
  unavailable(t: TierConfig): string | undefined {
    const a = this.book.admission(t);
    return a.admissible ? undefined : a.why;
  }

  /** The route's serving tier by the model (-1: none). */
  servingTier(route: RouteConfig): number {
    return this.routes.state(route.model)?.serving ?? -1;
  }

  /** Re-reads every route's serving tier from the model (health, breakers and cooldowns changed). */
  reassess(): void {
    this.routes?.observe();
  }

  /** A managed backend was restarted and passed readiness: its tiers start with closed breakers. */
  resetBackend(backend: string): void {
    this.book.resetBackend(backend, this.allTiers, "the backend was restarted and passed readiness");
  }

  private healed(t: TierConfig, detail: string): void {
    const b = this.book.breaker(t);
    if (b.state === "closed") return;
    const now = this.clock.now();
    this.book.setBreaker(t, CLOSED, `a background probe answered after ${Math.round((now - b.since) / 1000)}s out (${detail})`);
    this.emit({ event: "router.tier.healed", backend: t.backend, model: t.model, outMs: now - b.since, at: now });
  }

  snapshot(): { routes: RouteSnapshot[] } {
    return {
      routes: this.config.routes.map((r) => {
        const s = this.routes.state(r.model);
        return {
          model: r.model,
          serving: s?.serving ?? -1,
          phase: s?.phase ?? "settling",
          since: s?.since ?? 0,
          ...(s?.degradedSince !== undefined ? { degradedSince: s.degradedSince } : {}),
          tiers: r.tiers.map((t) => {
            const context = this.contextOf(t);
            return { backend: t.backend, model: t.model, admission: this.book.admission(t), breaker: this.book.breaker(t).state, ...(context !== undefined ? { context } : {}) };
          }),
        };
      }),
    };
  }

  // ------------------------------------------------------------------ Core: what attempts report

  gate(ctx: RequestCtx, index: number): Gate {
    const t = ctx.route.tiers[index]!;
    // The hot path: no breaker or cooldown anywhere, no context error in this request, the backend up.
    if (this.book.clean && ctx.contextModels.size === 0 && this.deps.health.get(t.backend).state !== "down" && this.spoken.has(t.backend)) return GO;
    return gateTier(this.book.admission(t), this.book.breaker(t), this.clock.now(), tierKey(t), this.contextOf(t), { floor: ctx.contextFloor, models: ctx.contextModels });
  }

  private contextOf(t: TierConfig): number | undefined {
    return t.context ?? this.backends.get(t.backend)?.context ?? this.deps.contextWindow?.(t.backend, t.model);
  }

  windowOf(index: number, ctx: RequestCtx): number | undefined {
    return this.contextOf(ctx.route.tiers[index]!);
  }

  fail(ctx: RequestCtx, index: number, c: Classified, detail: string, cooldownWaived = false): void {
    const tier = ctx.route.tiers[index]!;
    ctx.tried.push({ tier: index, backend: tier.backend, model: tier.model, outcome: c.class, detail });
    this.metrics?.request(ctx.route.model, index, tier.backend, c.class);
    const now = this.clock.now();
    const e = failureEffects(c, this.book.breaker(tier), this.book.policy, now, detail, cooldownWaived);
    this.book.setBreaker(tier, e.breaker, e.breakerReason);
    if (e.breaker.state === "open") this.probes.tierOut(tier, ctx.endpoint);
    if (e.cooldown) this.book.coolDown(tier, e.cooldown.ms, e.cooldown.reason);
    if (e.misconfigured) {
      const ev: RouterEvent = { event: "router.misconfigured", backend: tier.backend, model: tier.model, status: Number(/HTTP (\d+)/.exec(detail)?.[1] ?? 0), detail, at: now };
      this.log.error(ev, `backend ${tier.backend} refuses model ${tier.model}: ${detail}`);
      this.emit(ev);
    }
    if (e.backendDown) this.probes.unreachable(tier.backend, e.backendDown);
    else if (e.suspect) this.probes.suspect(tier.backend, `the connection was reset under a request for ${tier.model}`);
  }

  succeed(ctx: RequestCtx, index: number, ttftMs?: number): void {
    const tier = ctx.route.tiers[index]!;
    if (!this.book.clean) this.book.setBreaker(tier, successEffects(this.book.breaker(tier)).breaker, "a request succeeded");
    if (this.deps.health.has(tier.backend, "passive")) this.deps.health.set(tier.backend, "passive", "healthy", "");
    this.metrics?.request(ctx.route.model, index, tier.backend, "ok");
    if (ttftMs !== undefined) this.metrics?.ttft(ctx.route.model, tier.backend, ttftMs / 1000);
    this.deps.onSuccess?.(tier.backend);
    this.served.record(this.clock.now(), index > 0);
  }

  failover(ctx: RequestCtx, from: TierRef, to: TierRef | undefined, reason: FailureClass, detail: string): void {
    const e: RouterEvent = { event: "router.failover", route: ctx.route.model, requestId: ctx.requestId, from, to, reason, detail, at: this.clock.now() };
    this.log.info(e, `failover on ${ctx.route.model}: tier ${from.index} (${from.backend}) → ${to ? `tier ${to.index} (${to.backend})` : "nothing left"}: ${reason}: ${detail}`);
    this.metrics?.failover(ctx.route.model, from.backend, to?.backend ?? "none", reason);
    this.emit(e);
  }

  continueStream(ctx: RequestCtx, failedIndex: number, soFar: string, generated: number, detail: string): Promise<void> {
    return continueStream(this, ctx, failedIndex, soFar, generated, detail);
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

  /** Goes down the route's tiers; true once a response was sent. */
  private async tryTiers(ctx: RequestCtx): Promise<boolean> {
    const tiers = ctx.route.tiers;
    let lastFailed: { ref: TierRef; reason: FailureClass; detail: string } | undefined;
    for (let i = 0; i < tiers.length; i++) {
      const tier = tiers[i]!;
      const g = this.gate(ctx, i);
      if (!g.go) {
        ctx.tried.push({ tier: i, backend: tier.backend, model: tier.model, outcome: "skipped", detail: g.why, skip: g.code });
        continue;
      }
      if (g.halfOpen) this.book.setBreaker(tier, g.halfOpen, "open interval over: this request checks the tier");
      const ref: TierRef = { index: i, backend: tier.backend, model: tier.model };
      if (lastFailed) this.failover(ctx, lastFailed.ref, ref, lastFailed.reason, lastFailed.detail);
      let r;
      try {
        r = await attemptTier(this, ctx, i);
      } finally {
        // The half-open slot is given back on every way out that gave no verdict.
        if (g.halfOpen && this.book.breaker(tier) === g.halfOpen) this.book.setBreaker(tier, release(g.halfOpen, this.clock.now()), "the checking request ended without a verdict on the tier");
      }
      if (r === "sent" || r === "gone") return true;
      if ("invalid" in r) {
        sendError(ctx.res, 400, `Invalid request: ${r.invalid}`, "invalid_request_error", "invalid_request", { "x-request-id": ctx.requestId });
        return true;
      }
      lastFailed = { ref, reason: r.class, detail: r.detail };
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
    this.offHealth();
    this.routes.close();
    this.probes.close();
    await this.upstreams.close();
  }
}
