/**
 * Circuit breaker per (backend, model). Pure: every transition takes `now`.
 * closed → open after `threshold` consecutive failures; open tiers are skipped
 * without a request; after the open interval one half-open probe request is
 * admitted; success closes, failure reopens with a doubled interval.
 */

export interface BreakerPolicy {
  readonly threshold: number;
  readonly openMs: number;
  readonly maxOpenMs: number;
}

export type BreakerState =
  | { readonly state: "closed"; readonly failures: number }
  | { readonly state: "open"; readonly until: number; readonly openMs: number; readonly reason: string }
  | { readonly state: "half_open"; readonly openMs: number; readonly reason: string };

export const CLOSED: BreakerState = { state: "closed", failures: 0 };

/** Whether a request may go to this tier now, and the state after admitting it. */
export function admit(b: BreakerState, now: number): { allowed: boolean; next: BreakerState; probe: boolean } {
  if (b.state === "closed") return { allowed: true, next: b, probe: false };
  if (b.state === "open") {
    if (now >= b.until) return { allowed: true, next: { state: "half_open", openMs: b.openMs, reason: b.reason }, probe: true };
    return { allowed: false, next: b, probe: false };
  }
  // half_open: one probe is already in flight.
  return { allowed: false, next: b, probe: false };
}

export function onSuccess(_b: BreakerState): BreakerState {
  return CLOSED;
}

export function onFailure(b: BreakerState, policy: BreakerPolicy, now: number, reason: string): BreakerState {
  if (b.state === "closed") {
    const failures = b.failures + 1;
    if (failures >= policy.threshold) return { state: "open", until: now + policy.openMs, openMs: policy.openMs, reason };
    return { state: "closed", failures };
  }
  if (b.state === "half_open") {
    const openMs = Math.min(policy.maxOpenMs, b.openMs * 2);
    return { state: "open", until: now + openMs, openMs, reason };
  }
  return b;
}

/** Opens at once (misconfiguration: 401/403/404 from the backend). */
export function trip(b: BreakerState, policy: BreakerPolicy, now: number, reason: string): BreakerState {
  const openMs = b.state === "closed" ? policy.openMs : Math.min(policy.maxOpenMs, b.openMs * 2);
  return { state: "open", until: now + openMs, openMs, reason };
}

/** A probe that ended without a verdict (client went away) gives the slot back. */
export function release(b: BreakerState, now: number): BreakerState {
  return b.state === "half_open" ? { state: "open", until: now, openMs: b.openMs, reason: b.reason } : b;
}
