/**
 * Backoff delays, the one place they are computed. Restarts grow
 * geometrically from `restartSec` to `maxDelay` over `steps` restarts, as
 * systemd's RestartSteps= / RestartMaxDelaySec= do; retries of a failing
 * probe or delivery double from a first delay up to a ceiling. Pure; jitter
 * is a separate, explicit step.
 */

export interface BackoffPolicy {
  /** First delay, in ms. */
  readonly restartSec: number;
  /** Largest delay, in ms; reached after `steps` restarts. */
  readonly maxDelay: number;
  /** Number of restarts over which the delay grows from restartSec to maxDelay. */
  readonly steps: number;
}

/** Delay before restart number `n` (0 = the first restart after a failure), in ms, without jitter. */
export function restartDelay(policy: BackoffPolicy, n: number): number {
  const { restartSec, maxDelay, steps } = policy;
  if (maxDelay <= restartSec || steps <= 0) return restartSec;
  if (n >= steps) return maxDelay;
  if (restartSec <= 0) return Math.round((maxDelay * Math.max(0, n)) / steps);
  const ratio = maxDelay / restartSec;
  return Math.round(restartSec * ratio ** (Math.max(0, n) / steps));
}

/** Doubling from `first` up to `max`, for retries (nvidia-smi probes, alert delivery). */
export interface DoublingPolicy {
  /** Delay after the first failure, in ms. */
  readonly first: number;
  /** Largest delay, in ms. */
  readonly max: number;
}

/** Doublings counted at most: past this the delay is at its ceiling for any sane policy, and 2 ** n stays finite. */
const MAX_DOUBLINGS = 20;

/** Delay after failure number `n` (0 = the first failure), in ms: `first` × 2^n, at most `max`. */
export function doublingDelay(policy: DoublingPolicy, n: number): number {
  return Math.min(policy.max, policy.first * 2 ** Math.min(Math.max(0, n), MAX_DOUBLINGS));
}

/** Adds up to `fraction` of extra delay; `random` returns [0, 1). Jitter only lengthens a delay. */
export function withJitter(delay: number, random: () => number, fraction = 0.1): number {
  return Math.round(delay * (1 + fraction * random()));
}

/**
 * Shortest time in which `failures` consecutive failed starts can happen:
 * the sum of the restart delays between them (start durations count as zero).
 */
export function shortestSpanOfFailures(policy: BackoffPolicy, failures: number): number {
  let total = 0;
  for (let n = 0; n < failures - 1; n++) total += restartDelay(policy, n);
  return total;
}
