/** Waiting for something a real process or server does, always with a deadline, and saying what was awaited when it never came. */

/** Resolves once `pred` holds (checked every `everyMs`); throws naming `what` after `timeoutMs`. Returns the last value. */
export async function waitUntil<T>(what: string, pred: () => T | Promise<T>, options: { timeoutMs?: number; everyMs?: number } = {}): Promise<Exclude<T, undefined | null | false | "" | 0>> {
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  for (;;) {
    const v = await pred();
    if (v) return v as Exclude<T, undefined | null | false | "" | 0>;
    if (Date.now() >= deadline) throw new Error(`timed out after ${options.timeoutMs ?? 15_000} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, options.everyMs ?? 20));
  }
}

/** Whether GET `url` answers 200 now (a refused connection is a no). */
export async function answers200(url: string): Promise<boolean> {
  const r = await fetch(url).catch(() => undefined);
  if (r) await r.arrayBuffer().catch(() => undefined);
  return r?.status === 200;
}
