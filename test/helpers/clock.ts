/**
 * The one test clock: time moves only when the test says so. Timers set on it
 * fire in order as time is advanced — `advance` at once, `run` letting the
 * async work each timer starts run before the next (supervisor races) — or,
 * with `realTimers`, after real time (code whose timers only batch work).
 */
import type { Clock, TimerHandle } from "../../src/platform/clock.ts";

/** Lets promise chains and stream events that are already under way run to their next real wait. */
export async function flush(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private timers: { at: number; seq: number; fn: () => void }[] = [];
  private readonly realTimers: boolean;

  constructor(start = Date.UTC(2025, 5, 1, 14, 0, 0), options: { realTimers?: boolean } = {}) {
    this.t = start;
    this.realTimers = options.realTimers ?? false;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    if (this.realTimers) {
      const h = setTimeout(fn, ms);
      h.unref();
      return { cancel: () => clearTimeout(h) };
    }
    const timer = { at: this.t + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.push(timer);
    return { cancel: () => (this.timers = this.timers.filter((x) => x !== timer)) };
  }

  private next(until: number): { at: number; fn: () => void } | undefined {
    const due = this.timers.filter((x) => x.at <= until).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
    if (due) this.timers = this.timers.filter((x) => x !== due);
    return due;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const until = this.t + ms;
    for (let due = this.next(until); due; due = this.next(until)) {
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = until;
  }

  /** The same, letting the work each timer starts run before the next falls due. */
  async run(ms: number): Promise<void> {
    const until = this.t + ms;
    for (;;) {
      await flush();
      const due = this.next(until);
      if (!due) break;
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = until;
    await flush();
  }

  get pendingTimers(): number {
    return this.timers.length;
  }
}
