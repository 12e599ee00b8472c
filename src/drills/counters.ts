/**
 * The router's own counters for one route (llmsup_requests_total,
 * llmsup_failovers_total and llmsup_hedges_total), read before and after a drill: what every client
 * saw while it ran, the drill's own requests and real traffic together.
 */
import type { Registry } from "prom-client";

export interface RouteCounters {
  /** Answers from the first tier. */
  readonly primary_answers: number;
  /** Answers from a later tier. */
  readonly fallback_answers: number;
  /** Requests no tier answered: 503 (all_tiers_down). */
  readonly unanswered: number;
  /** Requests answered from the emergency cache. */
  readonly cache_answers: number;
  /** Attempts that failed on a tier (any failure class). */
  readonly failed_attempts: number;
  /** Requests that went on from one tier to another (or to nothing). */
  readonly failovers: number;
  /** Slow first tokens a later tier was started alongside, and won (the slow tier's answer was not waited for). */
  readonly hedges_won: number;
}

export const NO_COUNTS: RouteCounters = { primary_answers: 0, fallback_answers: 0, unanswered: 0, cache_answers: 0, failed_attempts: 0, failovers: 0, hedges_won: 0 };

interface Sample {
  readonly labels: Readonly<Record<string, string | number | undefined>>;
  readonly value: number;
}

/** Pure: the counters of `route` from the two metrics' samples. */
export function countersOf(route: string, requests: readonly Sample[], failovers: readonly Sample[], hedges: readonly Sample[] = []): RouteCounters {
  const c: { -readonly [K in keyof RouteCounters]: number } = { ...NO_COUNTS };
  for (const s of requests) {
    if (s.labels.route !== route) continue;
    const tier = Number(s.labels.tier);
    const outcome = String(s.labels.outcome);
    if (outcome === "ok") {
      if (tier === 0) c.primary_answers += s.value;
      else c.fallback_answers += s.value;
    } else if (outcome === "all_tiers_down") c.unanswered += s.value;
    else if (outcome === "cache_hit") c.cache_answers += s.value;
    else if (tier >= 0) c.failed_attempts += s.value;
  }
  for (const s of failovers) if (s.labels.route === route) c.failovers += s.value;
  for (const s of hedges) if (s.labels.route === route && s.labels.outcome === "won") c.hedges_won += s.value;
  return c;
}

/** Reads the route's counters from the router's registry. */
export async function readCounters(registry: Registry, route: string): Promise<RouteCounters> {
  const values = async (name: string): Promise<readonly Sample[]> => (await registry.getSingleMetric(name)?.get())?.values ?? [];
  return countersOf(route, await values("llmsup_requests_total"), await values("llmsup_failovers_total"), await values("llmsup_hedges_total"));
}

/** What happened between two readings. */
export function countersDelta(before: RouteCounters, after: RouteCounters): RouteCounters {
  const out: Record<string, number> = {};
  for (const k of Object.keys(NO_COUNTS) as (keyof RouteCounters)[]) out[k] = Math.max(0, after[k] - before[k]);
  return out as unknown as RouteCounters;
}
