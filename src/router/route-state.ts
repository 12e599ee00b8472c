/**
 * A route's serving tier as a state of the tier-state model, never "the tier
 * that answered last". Pure: the caller observes the route's best admissible
 * tier (tier-state.ts `bestTier`) whenever anything it depends on changes and
 * gets the next state, the transitions to announce, and when to look again.
 *
 * - settling (boot): silent while the first tier is still loading; settled
 *   once the first tier is admissible, or when `settleBy` (its start-up time)
 *   has passed, or when no better tier is still loading (the first tier
 *   went fatal or is blocked, and the best one is known) — then a route
 *   still off its first tier is announced.
 * - settled: a worse best tier is taken at once (fallback, or down when no
 *   tier is admissible); a better one only after it stayed admissible for
 *   `holdMs` (hysteresis), and the transition is dated from when it became
 *   admissible. One real outage is one fallback and one recovery, whatever
 *   requests are in flight.
 */

export interface RouteState {
  readonly phase: "settling" | "settled";
  /** The tier serving the route; -1: none. */
  readonly serving: number;
  /** Since when `serving` holds. */
  readonly since: number;
  /** When the route left its first tier (settled phase), until it is back. */
  readonly degradedSince?: number;
  /** A better tier, admissible since, waiting out the hold. */
  readonly better?: { readonly index: number; readonly since: number };
}

export type RouteTransition =
  | { readonly kind: "fallback"; readonly from: number; readonly to: number; readonly at: number }
  | { readonly kind: "down"; readonly from: number; readonly at: number }
  | { readonly kind: "recovered"; readonly from: number; readonly outageMs: number; readonly at: number };

export interface RouteObservation {
  readonly next: RouteState;
  readonly transitions: readonly RouteTransition[];
  /** When to observe again even if nothing changes (end of the hold or of the settling time). */
  readonly wakeAt?: number;
}

export interface RouteTiming {
  /** End of the boot settling time (the first tier's start-up timeout). */
  readonly settleBy: number;
  readonly holdMs: number;
  /** A tier better than the best admissible one (any tier, when none is) is still on its way up (starting, restarting); false once every such tier is out for another reason (fatal, blocked, a fault). */
  readonly loading: boolean;
}

export function initialRouteState(now: number): RouteState {
  return { phase: "settling", serving: -1, since: now };
}

const worse = (best: number, serving: number) => serving >= 0 && (best === -1 || best > serving);

function moveTo(s: RouteState, to: number, at: number): RouteObservation {
  const from = s.serving;
  const t: RouteTransition =
    to === 0 ? { kind: "recovered", from, outageMs: at - (s.degradedSince ?? at), at } : to === -1 ? { kind: "down", from, at } : { kind: "fallback", from, to, at };
  const next: RouteState = { phase: "settled", serving: to, since: at, ...(to === 0 ? {} : { degradedSince: s.degradedSince ?? at }) };
  return { next, transitions: [t] };
}

export function observeRoute(s: RouteState, best: number, now: number, timing: RouteTiming): RouteObservation {
  if (s.phase === "settling") {
    if (best === 0) return { next: { phase: "settled", serving: 0, since: now }, transitions: [] };
    if (now < timing.settleBy && timing.loading) return { next: { ...s, serving: best, since: best === s.serving ? s.since : now }, transitions: [], wakeAt: timing.settleBy };
    // The first tier did not come up in its start-up time, or stopped trying (fatal, blocked): an outage to announce.
    return moveTo({ phase: "settled", serving: 0, since: s.since }, best, now);
  }
  if (best === s.serving) return { next: s.better ? { ...s, better: undefined } : s, transitions: [] };
  if (worse(best, s.serving)) return moveTo(s, best, now);
  // Better than now: wait out the hold.
  const better = s.better && s.better.index === best ? s.better : { index: best, since: now };
  if (now - better.since >= timing.holdMs) return moveTo(s, best, better.since);
  return { next: { ...s, better }, transitions: [], wakeAt: better.since + timing.holdMs };
}
