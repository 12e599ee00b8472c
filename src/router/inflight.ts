/**
 * Requests in flight per backend: what `llmsup drain` reports and `--wait`
 * waits on, and what an evacuation moves. An attempt holds its tier's
 * backend from its start until its answer was read, relayed or given up — a
 * stream until its last byte, a hedged loser until its abort has landed, a
 * stream broken after its commit point until the continuation takes it to
 * another tier. Each hold is released once (a second release does nothing),
 * in a finally: the count can neither go negative nor leak.
 *
 * A hold may come with a mover: how to take that request off its backend at
 * once (its upstream aborted as evacuated, so that it goes on elsewhere).
 * `evacuate` calls the mover of every hold on the backend.
 */

/** How to move one request off its backend now. */
export interface Mover {
  /** The request (one request may hold a backend twice: two tiers of one backend in a hedged race). */
  readonly request: object;
  readonly route: string;
  /** Aborts what the request has running on the backend, with `why`. */
  move(why: string): void;
}

export class InFlight {
  private readonly counts = new Map<string, number>();
  private readonly movers = new Map<string, Set<Mover>>();

  /** One more request on `backend`; the function gives it back (once, however often it is called). */
  hold(backend: string, mover?: Mover): () => void {
    this.counts.set(backend, (this.counts.get(backend) ?? 0) + 1);
    if (mover) {
      let set = this.movers.get(backend);
      if (!set) this.movers.set(backend, (set = new Set()));
      set.add(mover);
    }
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const n = (this.counts.get(backend) ?? 0) - 1;
      if (n > 0) this.counts.set(backend, n);
      else this.counts.delete(backend);
      if (mover) {
        const set = this.movers.get(backend);
        set?.delete(mover);
        if (set?.size === 0) this.movers.delete(backend);
      }
    };
  }

  /** Requests on `backend` now. */
  get(backend: string): number {
    return this.counts.get(backend) ?? 0;
  }

  /**
   * Moves every request on `backend` that can be moved off it, with `why`;
   * each request once. Returns how many requests of each route were moved.
   */
  evacuate(backend: string, why: string): Map<string, number> {
    const moved = new Map<string, number>();
    const seen = new Set<object>();
    const set = this.movers.get(backend);
    // A copy: a mover may release its hold (and so change the set) before this loop is done.
    for (const m of [...(set ?? [])]) {
      // Moved once: a second evacuation of the same backend (a GPU fault, then the hold for its reset) finds it gone.
      set?.delete(m);
      m.move(why);
      if (seen.has(m.request)) continue;
      seen.add(m.request);
      moved.set(m.route, (moved.get(m.route) ?? 0) + 1);
    }
    return moved;
  }
}
