/**
 * A cancellation the router makes per request and per attempt (the client
 * went away, the request was moved off its backend, a hedged race was lost):
 * the part of AbortSignal it uses — `aborted`, `reason`, `abort` listeners —
 * without an AbortController's EventTarget, whose construction and listener
 * bookkeeping showed in the router's CPU profile. AbortSignal satisfies
 * `Abortable` too, so code that waits on either takes both.
 *
 * undici is given no signal at all: an upstream request is aborted through
 * its dispatcher handler (router/body.ts DispatchedAnswer).
 *
 * As with AbortSignal: abort happens once, listeners run in the order they
 * were added, and a listener added after the abort is not called (callers
 * check `aborted` first).
 */

/** What waiting code needs of a cancellation: AbortSignal and Cancel both have it. */
export interface Abortable {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: "abort", fn: () => void, options?: { readonly once?: boolean }): void;
  removeEventListener(type: "abort", fn: () => void): void;
}

export class Cancel implements Abortable {
  aborted = false;
  reason: unknown = undefined;
  private fns: (() => void)[] | undefined;

  /** Cancels once, with `reason` (else the AbortError an AbortController's abort() gives), and tells the listeners. */
  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason === undefined ? new DOMException("This operation was aborted", "AbortError") : reason;
    const fns = this.fns;
    this.fns = undefined;
    if (fns) for (const fn of fns) fn();
  }

  /** `once` changes nothing: a Cancel aborts once. */
  addEventListener(_type: "abort", fn: () => void, _options?: { readonly once?: boolean }): void {
    if (!this.aborted) (this.fns ??= []).push(fn);
  }

  removeEventListener(_type: "abort", fn: () => void): void {
    const i = this.fns?.indexOf(fn) ?? -1;
    if (i >= 0) this.fns!.splice(i, 1);
  }

  /** Cancelled as soon as any of `parts` is, with its reason (AbortSignal.any for the router's cancellations). */
  static any(...parts: readonly Abortable[]): Cancel {
    const c = new Cancel();
    for (const p of parts) {
      if (p.aborted) {
        c.abort(p.reason);
        return c;
      }
    }
    for (const p of parts) p.addEventListener("abort", () => c.abort(p.reason));
    return c;
  }
}
