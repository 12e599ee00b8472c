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
}

export class RouteWatch {
  private readonly states = new Map<string, RouteState>();
  private readonly settleBy = new Map<string, number>();
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
      const prev = this.states.get(route.model)!;
      const o = observeRoute(prev, bestTier(admissions), now, { settleBy: this.settleBy.get(route.model)!, holdMs: this.d.holdMs });
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
