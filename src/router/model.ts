/**
 * The tier-state model of one configuration, with everything that feeds it:
 * breakers and cooldowns (tier-book.ts), the routes' serving tiers
 * (route-watch.ts), background probes (probes.ts), and what each attempt's
 * outcome does to them (outcome.ts), applied here once. Routing, status,
 * metrics, events, mails and drills read this one model.
 */
import type { BackendConfig, Config, RouteConfig, TierConfig } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import { CLOSED, release, type BreakerState } from "./breaker.ts";
import type { Classified } from "./classify.ts";
import { failureEffects, successEffects } from "./outcome.ts";
import { DEGRADE_POLICY, qualityVerdict, recentDetections } from "./quality.ts";
import { gateTier, type Gate } from "./plan.ts";
import { RecoveryProbes } from "./probes.ts";
import { RouteWatch } from "./route-watch.ts";
import { TierBook, tierKey } from "./tier-book.ts";
import { admission, type Admission } from "./tier-state.ts";
import type { Endpoint, RequestCtx, RouterDeps, RouterEvent } from "./types.ts";
import type { Upstreams } from "./upstream.ts";

export interface TierSnapshot {
  readonly backend: string;
  readonly model: string;
  readonly admission: Admission;
  readonly breaker: BreakerState["state"];
  readonly context?: number;
  /** Model failures caught on its answers within the window (quality.ts); DEGRADED at the policy's count. Absent: none. */
  readonly quality?: { readonly state: "ok" | "degraded"; readonly detections: number; readonly windowMs: number; readonly since?: number };
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

const GO: Gate = { go: true };

export class TierModel {
  private readonly config: Config;
  private readonly deps: RouterDeps;
  private readonly backends: ReadonlyMap<string, BackendConfig>;
  private readonly book: TierBook;
  private readonly routes: RouteWatch;
  private readonly probes: RecoveryProbes;
  private readonly log: Logger;
  private readonly allTiers: readonly TierConfig[];
  /** Backends of a kind the router speaks. */
  private readonly spoken: ReadonlySet<string>;
  private readonly offHealth: () => void;
  /** When each tier's recent model failures were caught (within the window), by tierKey. */
  private readonly detections = new Map<string, number[]>();
  /** Tiers marked DEGRADED by their rate of model failures, by tierKey. */
  private readonly degraded = new Set<string>();

  /** `previous`: the model of the configuration a reload replaces; what it knew of tiers and routes that remain carries over. */
  constructor(config: Config, deps: RouterDeps, backends: ReadonlyMap<string, BackendConfig>, upstreams: Upstreams, log: Logger, previous?: TierModel) {
    this.config = config;
    this.deps = deps;
    this.backends = backends;
    this.log = log;
    this.allTiers = config.routes.flatMap((r) => r.tiers);
    this.spoken = new Set(config.backends.filter((b) => admission({ kind: b.kind, health: { state: "healthy", reason: "", since: 0 }, breaker: CLOSED }, 0).admissible).map((b) => b.name));
    const b = config.router.breaker;
    this.book = new TierBook({
      backends,
      health: deps.health,
      ...(deps.drained ? { drained: deps.drained } : {}),
      clock: deps.clock,
      policy: { threshold: b.failure_threshold, openMs: b.open_interval, maxOpenMs: b.max_open_interval },
      onBreaker: (t, prev, next, reason) => {
        const e: RouterEvent = { event: "router.breaker", backend: t.backend, model: t.model, from: prev.state, to: next.state, reason, at: deps.clock.now() };
        this.log.warn(e, `breaker ${t.backend}/${t.model}: ${prev.state} → ${next.state} (${reason})`);
        this.emit(e);
        this.reassess();
      },
      onCooldown: () => this.reassess(),
    });
    this.probes = new RecoveryProbes({
      backends,
      upstreams,
      health: deps.health,
      clock: deps.clock,
      log,
      stillOut: (t) => this.book.breaker(t).state !== "closed",
      healed: (t, detail) => this.healed(t, detail),
    });
    this.routes = new RouteWatch(config.routes, { backends, clock: deps.clock, emit: (e) => this.emit(e), admission: (t) => this.book.admission(t), holdMs: config.router.recovery_hold, loading: (t) => deps.health.isRecovering(t.backend) });
    if (previous) {
      this.book.adopt(previous.book, this.allTiers);
      this.routes.adopt(previous.routes);
      for (const t of this.allTiers) if (this.book.breaker(t).state === "open") this.probes.tierOut(t, previous.probes.endpointOf(t) ?? "chat");
    }
    this.routes.observe();
    deps.metrics?.follow(() => this.snapshot());
    // Routes change tier when health does, traffic or not (a reason change can end a boot's settling: starting → fatal).
    this.offHealth = deps.health.onChange(() => this.reassess());
  }

  private emit(e: RouterEvent): void {
    this.deps.onEvent?.(e);
  }

  breaker(t: TierConfig): BreakerState {
    return this.book.breaker(t);
  }

  admission(t: TierConfig): Admission {
    return this.book.admission(t);
  }

  /** The route's serving tier by the model (-1: none). */
  servingTier(route: RouteConfig): number {
    return this.routes.state(route.model)?.serving ?? -1;
  }

  /** Re-reads every route's serving tier (health, breakers, cooldowns or drains changed). */
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
    const now = this.deps.clock.now();
    this.book.setBreaker(t, CLOSED, `a background probe answered after ${Math.round((now - b.since) / 1000)}s out (${detail})`);
    this.emit({ event: "router.tier.healed", backend: t.backend, model: t.model, outMs: now - b.since, at: now });
  }

  snapshot(): RouteSnapshot[] {
    return this.config.routes.map((r) => {
      const s = this.routes.state(r.model);
      return {
        model: r.model,
        serving: s?.serving ?? -1,
        phase: s?.phase ?? "settling",
        since: s?.since ?? 0,
        ...(s?.degradedSince !== undefined ? { degradedSince: s.degradedSince } : {}),
        tiers: r.tiers.map((t) => {
          const context = this.contextOf(t);
          const quality = this.qualityOf(t);
          return { backend: t.backend, model: t.model, admission: this.book.admission(t), breaker: this.book.breaker(t).state, ...(context !== undefined ? { context } : {}), ...(quality ? { quality } : {}) };
        }),
      };
    });
  }

  /** A tier's context window: configured on the tier or its backend, else read from the backend. */
  contextOf(t: TierConfig): number | undefined {
    return t.context ?? this.backends.get(t.backend)?.context ?? this.deps.contextWindow?.(t.backend, t.model);
  }

  /** Whether this request may use tier `index` now (plan.ts). */
  gate(ctx: RequestCtx, index: number): Gate {
    const t = ctx.route.tiers[index]!;
    // The hot path: no breaker or cooldown anywhere, no context error in this request, the backend up.
    if (this.book.clean && ctx.contextModels.size === 0 && this.deps.health.get(t.backend).state !== "down" && this.spoken.has(t.backend) && !this.deps.drained?.(t.backend)) return GO;
    return gateTier(this.book.admission(t), this.book.breaker(t), this.deps.clock.now(), tierKey(t), this.contextOf(t), { floor: ctx.contextFloor, models: ctx.contextModels });
  }

  /** Takes the tier's half-open check for this request. */
  takeCheck(t: TierConfig, halfOpen: BreakerState): void {
    this.book.setBreaker(t, halfOpen, "open interval over: this request checks the tier");
  }

  /** Gives the check back if the request ended without a verdict on the tier. */
  returnCheck(t: TierConfig, halfOpen: BreakerState): void {
    if (this.book.breaker(t) === halfOpen) this.book.setBreaker(t, release(halfOpen, this.deps.clock.now()), "the checking request ended without a verdict on the tier");
  }

  /** One failed attempt on `tier`: breaker, cooldown, backend verdict, probes, events. */
  failed(tier: TierConfig, endpoint: Endpoint, c: Classified, detail: string, cooldownWaived: boolean): void {
    const now = this.deps.clock.now();
    const e = failureEffects(c, this.book.breaker(tier), this.book.policy, now, detail, cooldownWaived);
    this.book.setBreaker(tier, e.breaker, e.breakerReason);
    if (e.breaker.state === "open") this.probes.tierOut(tier, endpoint);
    if (e.cooldown) this.book.coolDown(tier, e.cooldown.ms, e.cooldown.reason);
    if (e.misconfigured) {
      const ev: RouterEvent = { event: "router.misconfigured", backend: tier.backend, model: tier.model, status: Number(/HTTP (\d+)/.exec(detail)?.[1] ?? 0), detail, at: now };
      this.log.error(ev, `backend ${tier.backend} refuses model ${tier.model}: ${detail}`);
      this.emit(ev);
    }
    if (c.detector) this.qualityFailed(tier, now);
    if (e.backendDown) this.probes.unreachable(tier.backend, e.backendDown);
    else if (e.suspect) this.probes.suspect(tier.backend, `the connection was reset under a request for ${tier.model}`);
  }

  /** A model failure on `tier` at `now`: counted in its window; DEGRADED once the policy's count is reached. */
  private qualityFailed(tier: TierConfig, now: number): void {
    const key = tierKey(tier);
    const times = recentDetections([...(this.detections.get(key) ?? []), now], now, DEGRADE_POLICY);
    this.detections.set(key, times);
    this.qualityOf(tier);
  }

  /** A tier's quality as of now (pure verdict on its detection times); emits the change when it became or stopped being DEGRADED. */
  private qualityOf(t: TierConfig): TierSnapshot["quality"] {
    const key = tierKey(t);
    const times = this.detections.get(key);
    if (!times) return undefined;
    const now = this.deps.clock.now();
    const v = qualityVerdict(times, now, DEGRADE_POLICY);
    if (v.count === 0) this.detections.delete(key);
    const was = this.degraded.has(key);
    if (v.degraded !== was) {
      if (v.degraded) this.degraded.add(key);
      else this.degraded.delete(key);
      const ev: RouterEvent = { event: "router.tier.quality", backend: t.backend, model: t.model, degraded: v.degraded, detections: v.count, windowMs: DEGRADE_POLICY.windowMs, at: now };
      if (v.degraded) this.log.warn(ev, `${t.backend}/${t.model} DEGRADED: ${v.count} model failures within ${DEGRADE_POLICY.windowMs / 1000}s`);
      else this.log.info(ev, `${t.backend}/${t.model} no longer degraded: ${v.count} model failures within ${DEGRADE_POLICY.windowMs / 1000}s`);
      this.emit(ev);
    }
    if (v.count === 0) return undefined;
    return { state: v.degraded ? "degraded" : "ok", detections: v.count, windowMs: DEGRADE_POLICY.windowMs, ...(v.since !== undefined ? { since: v.since } : {}) };
  }

  /** A good answer from `tier`. */
  succeeded(tier: TierConfig): void {
    if (!this.book.clean) this.book.setBreaker(tier, successEffects(this.book.breaker(tier)).breaker, "a request succeeded");
    if (this.deps.health.has(tier.backend, "passive")) this.deps.health.set(tier.backend, "passive", "healthy", "");
  }

  close(): void {
    this.offHealth();
    this.routes.close();
    this.probes.close();
  }
}
