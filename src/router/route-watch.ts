/**
 * Route-level transitions for alerts: a route left its first tier, came back,
 * went dark. Until a route's first tier has served once, or its start-up time
 * has passed (the CPU tier is ready minutes before vLLM loads), changes are
 * tracked silently.
 */
import type { BackendConfig, RouteConfig, TierConfig } from "../config/types.ts";
import type { Clock } from "../platform/clock.ts";
import type { RouterEvent, TierRef, TriedTier } from "./types.ts";

export interface RouteState {
  /** Tier that answered last; -1 when nothing could. */
  serving: number;
  /** The first tier has served at least once: from then on, changes are announced. */
  settled: boolean;
  /** When the route left its first tier. */
  degradedSince?: number;
}

export interface RouteWatchDeps {
  readonly backends: ReadonlyMap<string, BackendConfig>;
  readonly clock: Clock;
  readonly emit: (e: RouterEvent) => void;
  /** Why a tier cannot take requests (undefined: it can). */
  readonly whyOut: (tier: TierConfig) => string | undefined;
}

export class RouteWatch {
  private readonly states = new Map<string, RouteState>();
  private readonly d: RouteWatchDeps;
  private readonly createdAt: number;

  constructor(deps: RouteWatchDeps) {
    this.d = deps;
    this.createdAt = deps.clock.now();
  }

  state(model: string): Readonly<RouteState> | undefined {
    return this.states.get(model);
  }

  /** The route is now served by tier `index` (-1: by nothing); `tried` explains a dark route. */
  served(route: RouteConfig, index: number, tried: readonly TriedTier[] = []): void {
    const st = this.states.get(route.model) ?? { serving: Number.NaN, settled: false };
    const now = this.d.clock.now();
    const first = this.d.backends.get(route.tiers[0]!.backend);
    const grace = first?.managed ? (first.process?.startup_timeout ?? 0) : 0;
    const loud = st.settled || now - this.createdAt >= grace;
    if (index === 0 || loud) st.settled = true;
    if (st.serving === index) return;
    const tier = route.tiers[index];
    if (index >= 0 && tier) {
      const to: TierRef = { index, backend: tier.backend, model: tier.model };
      if (index > 0) {
        const prev = st.serving >= 0 ? route.tiers[st.serving] : undefined;
        st.degradedSince ??= now;
        if (loud) this.d.emit({ event: "router.route.fallback", route: route.model, from: prev ? { index: st.serving, backend: prev.backend, model: prev.model } : undefined, to, reason: this.d.whyOut(route.tiers[0]!) ?? "the first tier failed", at: now });
      } else {
        if (loud) this.d.emit({ event: "router.route.recovered", route: route.model, to, outageMs: now - (st.degradedSince ?? now), at: now });
        st.degradedSince = undefined;
      }
    } else {
      st.degradedSince ??= now;
      if (loud) {
        const trail = tried.length ? tried : route.tiers.map((t, i) => ({ tier: i, backend: t.backend, model: t.model, outcome: "skipped" as const, detail: this.d.whyOut(t) ?? "unavailable" }));
        this.d.emit({ event: "router.route.down", route: route.model, tried: trail, at: now });
      }
    }
    st.serving = index;
    this.states.set(route.model, st);
  }
}
