/**
 * Requests in flight per backend: what `llmsup drain` reports and `--wait`
 * waits on. An attempt holds its tier's backend from its start until its
 * answer was read, relayed or given up — a stream until its last byte, a
 * hedged loser until its abort has landed, a stream broken after its commit
 * point until the continuation takes it to another tier. Each hold is
 * released once (a second release does nothing), in a finally: the count
 * can neither go negative nor leak.
 */
export class InFlight {
  private readonly counts = new Map<string, number>();

  /** One more request on `backend`; the function gives it back (once, however often it is called). */
  hold(backend: string): () => void {
    this.counts.set(backend, (this.counts.get(backend) ?? 0) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const n = (this.counts.get(backend) ?? 0) - 1;
      if (n > 0) this.counts.set(backend, n);
      else this.counts.delete(backend);
    };
  }

  /** Requests on `backend` now. */
  get(backend: string): number {
    return this.counts.get(backend) ?? 0;
  }
}
