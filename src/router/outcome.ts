/**
 * What one attempt's result does to the tier-state model. Pure: the
 * classified failure (or a success), the tier's breaker, the policy and `now`
 * in; the next breaker state, a cooldown, a backend-level verdict and whether
 * to probe the backend at once, out. Every failure is counted here once,
 * wherever in the request it happened (first attempt, retry, continuation).
 *
 * | classified                     | breaker                       | other effects                  |
 * |--------------------------------|-------------------------------|--------------------------------|
 * | blame tier (5xx, timeouts, …)  | onFailure                     | suspect → immediate probe      |
 * | misconfigured (401/403/404)    | trip (open at once)           | misconfiguration event         |
 * | blame backend (refused, …)     | half-open slot released       | backend DOWN until a probe     |
 * | 429                            | half-open slot released       | cooldown (if not waited out)   |
 * | blame none (4xx, context)      | half-open slot released       | —                              |
 * | success                        | closed, failure count cleared | backend-level suspicion lifted |
 */
import { onFailure, onSuccess, release, trip, type BreakerPolicy, type BreakerState } from "./breaker.ts";
import type { Classified } from "./classify.ts";

export interface Effects {
  /** The breaker's next state (unchanged when equal to the input). */
  readonly breaker: BreakerState;
  readonly breakerReason: string;
  readonly cooldown?: { readonly ms: number; readonly reason: string };
  /** The backend's process or host is gone: DOWN with this reason until a shallow probe passes. */
  readonly backendDown?: string;
  /** Probe the backend now (a reset may mean its process died). */
  readonly suspect: boolean;
  readonly misconfigured: boolean;
}

const short = (s: string) => s.slice(0, 160);

/** A failed attempt. `cooldownWaived`: a short Retry-After that the attempt waits out instead. */
export function failureEffects(c: Classified, b: BreakerState, policy: BreakerPolicy, now: number, detail: string, cooldownWaived = false): Effects {
  const base = { suspect: c.suspect, misconfigured: false };
  if (c.class === "misconfigured") return { ...base, misconfigured: true, breaker: trip(b, policy, now, short(detail)), breakerReason: `misconfiguration: ${short(detail)}` };
  if (c.blame === "tier") return { ...base, breaker: onFailure(b, policy, now, `${c.class}: ${short(detail)}`), breakerReason: c.class };
  const released = { breaker: release(b, now), breakerReason: "the checking request ended without a verdict on the tier" };
  if (c.blame === "backend") return { ...base, ...released, backendDown: `${c.class}: ${short(detail)}` };
  if (c.action.kind === "cooldown" && !cooldownWaived) {
    return { ...base, ...released, cooldown: { ms: c.action.ms, reason: `429 from the backend, Retry-After ${Math.round(c.action.ms / 1000)}s` } };
  }
  return { ...base, ...released };
}

/** A good answer: the breaker closes and its count of consecutive failures starts again. */
export function successEffects(b: BreakerState): Effects {
  return { breaker: b.state === "closed" && b.failures === 0 ? b : onSuccess(b), breakerReason: "a request succeeded", suspect: false, misconfigured: false };
}
