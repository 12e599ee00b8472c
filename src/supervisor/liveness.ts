/**
 * What a round of liveness probes means for a ready backend. Pure: the
 * owner runs the probes and applies the verdict.
 */
import type { HealthConfig } from "../config/types.ts";
import type { ProbeResult } from "./probes.ts";

export interface LivenessInput {
  readonly shallow: ProbeResult;
  /** The deep probe's result when one ran this round. */
  readonly deep?: ProbeResult & { readonly skipped?: boolean };
  readonly shallowFailures: number;
  readonly deepFailures: number;
  readonly degraded: boolean;
  readonly health: HealthConfig;
}

export type LivenessVerdict =
  | { readonly kind: "wedged_restart"; readonly reason: string }
  /** `wedged`: deep probes fail while /health answers (restart_on_wedge = false), worse than any other degradation. */
  | { readonly kind: "degrade"; readonly reason: string; readonly wedged?: true }
  | { readonly kind: "recover"; readonly reason: string }
  | { readonly kind: "none" };

export interface LivenessRound {
  readonly shallowFailures: number;
  readonly deepFailures: number;
  readonly verdict: LivenessVerdict;
}

/** The deep probe runs when the shallow one passes and no real request succeeded for deep_interval. */
export function deepProbeDue(shallowOk: boolean, now: number, lastSuccessAt: number | undefined, h: HealthConfig): boolean {
  return shallowOk && now - (lastSuccessAt ?? 0) >= h.deep_interval;
}

export function judgeLiveness(i: LivenessInput): LivenessRound {
  const h = i.health;
  const shallowFailures = i.shallow.ok ? 0 : i.shallowFailures + 1;
  let deepFailures = i.deepFailures;
  if (i.deep) {
    deepFailures = i.deep.ok ? 0 : deepFailures + 1;
    if (deepFailures >= h.wedge_failures) {
      const reason = `wedged: ${deepFailures} consecutive 1-token completions failed while /health answered (${i.deep.detail})`;
      return { shallowFailures, deepFailures, verdict: h.restart_on_wedge ? { kind: "wedged_restart", reason } : { kind: "degrade", reason, wedged: true } };
    }
  }
  const s = i.shallow;
  let verdict: LivenessVerdict = { kind: "none" };
  if (shallowFailures >= h.failures_to_down) verdict = { kind: "degrade", reason: `health probe failing ${shallowFailures} times: ${s.detail ?? "no detail"}` };
  else if (s.ok && s.degraded) verdict = { kind: "degrade", reason: s.detail ?? "degraded" };
  else if (s.ok && s.latencyMs > h.degraded_latency) verdict = { kind: "degrade", reason: `health probe slow: ${s.latencyMs}ms > ${h.degraded_latency}ms` };
  else if (s.ok && deepFailures === 0 && i.degraded) verdict = { kind: "recover", reason: "health probes pass again" };
  return { shallowFailures, deepFailures, verdict };
}
