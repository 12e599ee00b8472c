/**
 * When to hedge: how long a tier may go without its first token before the
 * next tier starts alongside it. Pure: samples and `now` are arguments.
 *
 * `hedge_after = "auto"` derives the delay from the tier's recent
 * time-to-first-token (whole answer when not streaming), per (backend, model):
 * 3 × its p95 over the last five minutes, never under 1 s nor over 10 s, and
 * the ceiling while there are too few samples to know. By construction fewer
 * than 5 % of a steady tier's requests take longer than its p95, so fewer
 * still take three times as long: a healthy tier is rarely hedged, and a
 * wedged one holds a first token back by at most the ceiling.
 */

/** `[router] hedge_after` or a tier's own: "auto", "off", or milliseconds. */
export type HedgeSetting = "auto" | "off" | number;

export interface AutoHedgePolicy {
  /** The delay is this many times the tier's p95 time to first token. */
  readonly factor: number;
  readonly floorMs: number;
  readonly ceilingMs: number;
  /** Fewer samples than this in the window: the ceiling. */
  readonly minSamples: number;
  /** How far back samples count. */
  readonly windowMs: number;
}

export const AUTO_HEDGE: AutoHedgePolicy = { factor: 3, floorMs: 1_000, ceilingMs: 10_000, minSamples: 20, windowMs: 5 * 60_000 };

/** The p-th percentile (0 < p ≤ 1) of `values` by nearest rank; undefined when empty. Does not reorder `values`. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/** The auto delay, in ms, for a tier whose recent first-token times are `samplesMs`. */
export function autoHedgeAfter(samplesMs: readonly number[], policy: AutoHedgePolicy = AUTO_HEDGE): number {
  if (samplesMs.length < policy.minSamples) return policy.ceilingMs;
  const p95 = percentile(samplesMs, 0.95)!;
  return Math.min(policy.ceilingMs, Math.max(policy.floorMs, policy.factor * p95));
}

/** A tier's hedge delay in ms from its setting, or undefined when hedging is off. */
export function hedgeDelay(setting: HedgeSetting, samplesMs: () => readonly number[], policy: AutoHedgePolicy = AUTO_HEDGE): number | undefined {
  if (setting === "off") return undefined;
  if (setting === "auto") return autoHedgeAfter(samplesMs(), policy);
  return setting;
}

/**
 * The recent first-token times of one (backend, model): a fixed ring of the
 * latest samples, those older than the window left out. The auto delay is
 * recomputed at most every `every` new samples or once a second, so the hot
 * path does not sort on every request.
 */
export class TtftWindow {
  private readonly at: Float64Array;
  private readonly ms: Float64Array;
  private next = 0;
  private size = 0;
  private fresh = 0;
  private cached: { value: number; computedAt: number } | undefined;
  private readonly policy: AutoHedgePolicy;
  private readonly every: number;

  constructor(policy: AutoHedgePolicy = AUTO_HEDGE, capacity = 256, every = 8) {
    this.policy = policy;
    this.every = every;
    this.at = new Float64Array(capacity);
    this.ms = new Float64Array(capacity);
  }

  record(now: number, ms: number): void {
    this.at[this.next] = now;
    this.ms[this.next] = ms;
    this.next = (this.next + 1) % this.at.length;
    if (this.size < this.at.length) this.size++;
    this.fresh++;
  }

  /** The samples inside the window at `now`. */
  samples(now: number): number[] {
    const out: number[] = [];
    for (let k = 0; k < this.size; k++) if (now - this.at[k]! <= this.policy.windowMs) out.push(this.ms[k]!);
    return out;
  }

  /** The auto delay at `now`, from a cached value while it is recent. */
  autoDelay(now: number): number {
    const c = this.cached;
    if (c && this.fresh < this.every && now - c.computedAt < 1_000) return c.value;
    const value = autoHedgeAfter(this.samples(now), this.policy);
    this.cached = { value, computedAt: now };
    this.fresh = 0;
    return value;
  }
}
