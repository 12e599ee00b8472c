/**
 * Circuit breaker per (backend, model). Pure: every transition takes `now`.
 *
 * | state     | event                                  | next                                    |
 * |-----------|----------------------------------------|-----------------------------------------|
 * | closed    | failure (threshold reached)            | open for openMs                         |
 * | closed    | misconfiguration (401/403/404-model)   | open for openMs, marked misconfigured   |
 * | open      | a request asks after `until`           | half_open (that one request admitted)   |
 * | open      | background probe succeeded             | closed                                  |
 * | half_open | the admitted request succeeded         | closed                                  |
 * | half_open | the admitted request failed            | open for min(2 × openMs, maxOpenMs)     |
 * | half_open | it ended without a verdict (released)  | open, `until` now (the slot is free)    |
 * | any       | reset (backend restarted and ready)    | closed                                  |
 *
 * User requests are not the probes: background probes (router/probes.ts)
 * close an open breaker as soon as the tier answers again; the half-open
 * request is only the fallback when probing is off for the tier.
 */
import { doublingDelay } from "../time/backoff.ts";

export interface BreakerPolicy {
  readonly threshold: number;
  readonly openMs: number;
  readonly maxOpenMs: number;
}

export type BreakerState =
  | { readonly state: "closed"; readonly failures: number }
  | { readonly state: "open"; readonly since: number; readonly until: number; readonly openMs: number; readonly reason: string; readonly misconfigured: boolean }
  | { readonly state: "half_open"; readonly since: number; readonly openMs: number; readonly reason: string; readonly misconfigured: boolean };

export const CLOSED: BreakerState = { state: "closed", failures: 0 };

/** The next open time after `openMs`: twice as long, at most maxOpenMs (the one doubling rule, time/backoff.ts). */
function reopenMs(openMs: number, policy: BreakerPolicy): number {
  return doublingDelay({ first: openMs, max: policy.maxOpenMs }, 1);
}

/** Whether a request may go to this tier now, and the state after admitting it (`probe`: it is the half-open request). */
export function admit(b: BreakerState, now: number): { allowed: boolean; next: BreakerState; probe: boolean } {
  if (b.state === "closed") return { allowed: true, next: b, probe: false };
  if (b.state === "open") {
    if (now >= b.until) return { allowed: true, next: { state: "half_open", since: b.since, openMs: b.openMs, reason: b.reason, misconfigured: b.misconfigured }, probe: true };
    return { allowed: false, next: b, probe: false };
  }
  // half_open: one request is already in flight.
  return { allowed: false, next: b, probe: false };
}

/** A success (a request, or a background probe) closes the breaker. */
export function onSuccess(_b: BreakerState): BreakerState {
  return CLOSED;
}

export function onFailure(b: BreakerState, policy: BreakerPolicy, now: number, reason: string): BreakerState {
  if (b.state === "closed") {
    const failures = b.failures + 1;
    if (failures >= policy.threshold) return { state: "open", since: now, until: now + policy.openMs, openMs: policy.openMs, reason, misconfigured: false };
    return { state: "closed", failures };
  }
  if (b.state === "half_open") {
    const openMs = reopenMs(b.openMs, policy);
    return { state: "open", since: b.since, until: now + openMs, openMs, reason, misconfigured: false };
  }
  return b;
}

/** Opens at once (misconfiguration: 401/403/404 from the backend). */
export function trip(b: BreakerState, policy: BreakerPolicy, now: number, reason: string): BreakerState {
  const openMs = b.state === "closed" ? policy.openMs : reopenMs(b.openMs, policy);
  return { state: "open", since: b.state === "closed" ? now : b.since, until: now + openMs, openMs, reason, misconfigured: true };
}

/** A half-open request that ended without a verdict (the client went away, the request itself was at fault) gives the slot back. */
export function release(b: BreakerState, now: number): BreakerState {
  return b.state === "half_open" ? { state: "open", since: b.since, until: now, openMs: b.openMs, reason: b.reason, misconfigured: b.misconfigured } : b;
}
