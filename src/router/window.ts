/** Requests served per second and the share answered by a fallback tier, over a sliding window of one-second buckets. */

export class ServedWindow {
  private readonly seconds: number;
  private readonly total: Float64Array;
  private readonly fallback: Float64Array;
  private readonly stamp: Float64Array;

  constructor(seconds = 300) {
    this.seconds = seconds;
    this.total = new Float64Array(seconds);
    this.fallback = new Float64Array(seconds);
    this.stamp = new Float64Array(seconds).fill(-1);
  }

  record(nowMs: number, degraded: boolean): void {
    const s = Math.floor(nowMs / 1000);
    const i = s % this.seconds;
    if (this.stamp[i] !== s) {
      this.stamp[i] = s;
      this.total[i] = 0;
      this.fallback[i] = 0;
    }
    this.total[i]! += 1;
    if (degraded) this.fallback[i]! += 1;
  }

  /** Totals over the last `windowS` seconds (at most the window's size). */
  sums(nowMs: number, windowS = this.seconds): { total: number; fallback: number } {
    const now = Math.floor(nowMs / 1000);
    let total = 0;
    let fallback = 0;
    for (let i = 0; i < this.seconds; i++) {
      const s = this.stamp[i]!;
      if (s >= 0 && now - s < Math.min(windowS, this.seconds)) {
        total += this.total[i]!;
        fallback += this.fallback[i]!;
      }
    }
    return { total, fallback };
  }
}
