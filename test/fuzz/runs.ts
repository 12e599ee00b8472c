/**
 * How many cases a fuzz property tries: the count each test names, sized to
 * keep a file within a few seconds, times LLMSUP_FUZZ_SCALE (default 1) for a
 * longer hunt by hand, e.g. `LLMSUP_FUZZ_SCALE=20 node --test test/fuzz/sse.test.ts`.
 * fast-check prints the seed and the shrunk case of a failure; pass them back
 * with `fc.assert(…, { seed, path })` to replay it.
 */
const asked = Number(process.env.LLMSUP_FUZZ_SCALE ?? "1");
export const FUZZ_SCALE = Number.isFinite(asked) && asked > 0 ? asked : 1;

export function runs(n: number): number {
  return Math.max(1, Math.round(n * FUZZ_SCALE));
}

/** A text or bytes cut at the sorted positions `at` (`take` slices it): the pieces in order, empty ones included. */
export function cutAt<T>(at: readonly number[], take: (from: number, to?: number) => T): T[] {
  const out: T[] = [];
  let from = 0;
  for (const cut of at) {
    out.push(take(from, cut));
    from = cut;
  }
  out.push(take(from));
  return out;
}
