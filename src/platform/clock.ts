/**
 * Time as a parameter: the real clock in production, a controllable one in
 * tests, and the two waits built on it: a sleep (sleepOn) and a race against
 * a deadline (within).
 */

import type { Abortable } from "./cancel.ts";
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` after `ms`; the timer never keeps the process alive on its own. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, Math.max(0, ms));
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

/** Resolves after `ms` on `clock`; rejects with the signal's reason when aborted. */
export function sleepOn(clock: Clock, ms: number, signal?: Abortable): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = clock.setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      t.cancel();
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Whether `p` settles (fulfils or rejects) within `ms` on `clock`: the one
 * race against a deadline. The timer is cancelled either way and, being a
 * Clock timer, never keeps the process alive on its own. A rejection counts
 * as settled; whoever needs the value or the error awaits `p` itself.
 */
export async function within(clock: Clock, p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: TimerHandle | undefined;
  const late = new Promise<false>((resolve) => {
    timer = clock.setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true, () => true), late]);
  } finally {
    timer?.cancel();
  }
}
