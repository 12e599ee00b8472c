/**
 * GET /health/ready: whether this box should get a route's traffic, for load
 * balancers and orchestrators. Pure: the answer follows from the route's
 * serving tier (the tier-state model), its boot phase and whether the router
 * is shutting down.
 *
 * | condition (first that holds)                 | HTTP | why              |
 * |----------------------------------------------|------|------------------|
 * | the router is draining / shutting down       | 503  | shutting_down    |
 * | no route is configured                       | 503  | no_route         |
 * | no serving tier, boot still settling         | 503  | starting         |
 * | no serving tier                              | 503  | no_serving_tier  |
 * | served by its first tier                     | 200  | first_tier       |
 * | served by a later tier (fallback)            | 200  | fallback         |
 *
 * The body says the route, the serving tier (-1: none), why, and for each
 * tier `admissible` or the stable code why it is out (tier-state.ts): codes
 * only, never a backend's own words, as the endpoint needs no API key.
 */
import type { Admission } from "./tier-state.ts";

export type ReadyWhy = "shutting_down" | "no_route" | "starting" | "no_serving_tier" | "first_tier" | "fallback";

export interface ReadyFacts {
  /** The route's model; undefined when no route is configured. */
  readonly route: string | undefined;
  /** The serving tier by the model; -1: none. */
  readonly serving: number;
  readonly phase: "settling" | "settled";
  readonly tiers: readonly Admission[];
  /** The router is draining for a shutdown (or closed). */
  readonly draining: boolean;
}

export interface ReadyBody {
  readonly ready: boolean;
  readonly route: string | null;
  readonly tier: number;
  readonly why: ReadyWhy;
  readonly tiers: readonly string[];
}

export interface ReadyAnswer {
  readonly status: 200 | 503;
  readonly body: ReadyBody;
}

function whyOf(f: ReadyFacts): ReadyWhy {
  if (f.draining) return "shutting_down";
  if (f.route === undefined) return "no_route";
  if (f.serving < 0) return f.phase === "settling" ? "starting" : "no_serving_tier";
  return f.serving === 0 ? "first_tier" : "fallback";
}

export function readiness(f: ReadyFacts): ReadyAnswer {
  const why = whyOf(f);
  const ready = why === "first_tier" || why === "fallback";
  return {
    status: ready ? 200 : 503,
    body: { ready, route: f.route ?? null, tier: f.serving, why, tiers: f.tiers.map((a) => (a.admissible ? "admissible" : a.code)) },
  };
}

/** The `route` query parameter of a /health/ready URL: undefined when absent (the default route), else its decoded value ("" included). */
export function readyRouteParam(query: string): string | undefined {
  const v = new URLSearchParams(query).get("route");
  return v === null ? undefined : v;
}
