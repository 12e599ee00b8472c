/**
 * Keeps every route's serving-tier state (route-state.ts) in step with the
 * tier-state model: observed whenever health, a breaker or a cooldown changes,
 * and at the times the model says to look again (end of a hold, of a
 * cooldown, of the boot settling time). Each transition is one event.
 */
import type { BackendConfig, RouteConfig, TierConfig } from "../config/types.ts";
import type { Clock, TimerHandle } from "../platform/clock.ts";
import { initialRouteState, observeRoute, type RouteState, type RouteTransition } from "./route-state.ts";
import { bestTier, type Admission } from "./tier-state.ts";
import type { RouterEvent, TierRef } from "./types.ts";

export interface RouteWatchDeps {
  readonly backends: ReadonlyMap<string, BackendConfig>;
  readonly clock: Clock;
  readonly emit: (e: RouterEvent) => void;
  readonly admission: (tier: TierConfig) => Admission;
  /** How long a better tier must stay admissible before the route returns to it. */
  readonly holdMs: number;
  /** Whether a tier's backend is still on its way up (boot: settling goes on while a tier better than the best one loads). */
  readonly loading: (tier: TierConfig) => boolean;
}

export class RouteWatch {
  private readonly states = new Map<string, RouteState>();
  private readonly settleBy = new Map<string, number>();
  /** Routes whose state is taken as it is at the next look, without an announcement. */
  private readonly baseline = new Set<string>();
  private readonly routes: readonly RouteConfig[];
  private readonly d: RouteWatchDeps;
  private timer?: { at: number; handle: TimerHandle };
  private closed = false;

  constructor(routes: readonly RouteConfig[], deps: RouteWatchDeps) {
    this.routes = routes;
    this.d = deps;
    const now = deps.clock.now();
    for (const r of routes) {
      const first = deps.backends.get(r.tiers[0]!.backend);
      // Until the first tier had its start-up time, a route off it is a boot, not an outage.
      this.settleBy.set(r.model, now + (first?.managed ? (first.process?.startup_timeout ?? 0) : 0));
      this.states.set(r.model, initialRouteState(now));
    }
  }

  /**
   * Takes over a previous watch's states (a reload): a route whose tiers are
   * the same keeps its state; a new or changed route starts from what the
   * model says at the first look, silently — a reload is no outage and no
   * recovery.
   */
  adopt(previous: RouteWatch): void {
    const same = (a: RouteConfig, b: RouteConfig) => a.tiers.length === b.tiers.length && a.tiers.every((t, i) => t.backend === b.tiers[i]!.backend && t.model === b.tiers[i]!.model);
    for (const r of this.routes) {
      const old = previous.routes.find((x) => x.model === r.model);
      const st = old && previous.states.get(r.model);
      if (old && st && same(old, r)) {
        this.states.set(r.model, st);
        this.settleBy.set(r.model, previous.settleBy.get(r.model) ?? 0);
      } else this.baseline.add(r.model);
    }
  }

  state(model: string): Readonly<RouteState> | undefined {
    return this.states.get(model);
  }

  /** Re-reads every route from the model; announces transitions; arranges the next look. */
  observe(): void {
    if (this.closed) return;
    const now = this.d.clock.now();
    let wake = Infinity;
    for (const route of this.routes) {
      const admissions = route.tiers.map((t) => this.d.admission(t));
      const best = bestTier(admissions);
      if (this.baseline.delete(route.model)) {
        this.states.set(route.model, { phase: "settled", serving: best, since: now, ...(best === 0 ? {} : { degradedSince: now }) });
        continue;
      }
      const prev = this.states.get(route.model)!;
      const o = observeRoute(prev, best, now, { settleBy: this.settleBy.get(route.model)!, holdMs: this.d.holdMs, loading: (best < 0 ? route.tiers : route.tiers.slice(0, best)).some((t) => this.d.loading(t)) });
      this.states.set(route.model, o.next);
      for (const t of o.transitions) this.d.emit(this.eventOf(route, t, admissions));
      if (o.wakeAt !== undefined) wake = Math.min(wake, o.wakeAt);
      for (const a of admissions) if (!a.admissible && a.code === "cooldown" && a.until !== undefined) wake = Math.min(wake, a.until);
    }
    this.arm(wake);
  }

  private arm(at: number): void {
    if (this.timer && this.timer.at === at) return;
    this.timer?.handle.cancel();
    this.timer = undefined;
    if (!Number.isFinite(at)) return;
    const handle = this.d.clock.setTimeout(() => {
      this.timer = undefined;
      this.observe();
    }, Math.max(0, at - this.d.clock.now()) + 1);
    this.timer = { at, handle };
  }

  private eventOf(route: RouteConfig, t: RouteTransition, admissions: readonly Admission[]): RouterEvent {
    const ref = (i: number): TierRef | undefined => (i >= 0 && route.tiers[i] ? { index: i, backend: route.tiers[i]!.backend, model: route.tiers[i]!.model } : undefined);
    const whyOut = (i: number) => {
      const a = admissions[i];
      return a && !a.admissible ? a : undefined;
    };
    if (t.kind === "recovered") return { event: "router.route.recovered", route: route.model, to: ref(0)!, outageMs: t.outageMs, at: t.at };
    if (t.kind === "down") {
      const tried = route.tiers.map((tier, i) => ({ tier: i, backend: tier.backend, model: tier.model, outcome: "skipped" as const, detail: whyOut(i)?.why ?? "unavailable" }));
      return { event: "router.route.down", route: route.model, tried, at: t.at };
    }
    // The tier the route left (or, from a boot or a dark route, its first tier) says why.
    const left = whyOut(t.from >= 0 ? t.from : 0) ?? whyOut(0);
    const reason = left ? left.why : `tier ${t.to} can serve again`;
    return { event: "router.route.fallback", route: route.model, from: ref(t.from), to: ref(t.to)!, reason, code: left?.code ?? "recovering", at: t.at };
  }

  close(): void {
    this.closed = true;
    this.timer?.handle.cancel();
    this.timer = undefined;
  }
}
