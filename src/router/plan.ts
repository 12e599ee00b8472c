/**
 * Whether one request may go to one tier, and if not why. Pure: the tier's
 * admission (tier-state.ts), its breaker, what the request learnt so far about
 * context windows, and `now`.
 *
 * - An admissible tier is tried.
 * - A tier out only because its breaker's open interval is over admits this
 *   one request as the half-open check (the caller takes the slot).
 * - After a context-length error: a tier whose window is known and not larger
 *   than the largest window known to be too small is skipped, and a
 *   (backend, model) that refused the prompt is never asked again. An unknown
 *   window is not "too small": the same model on another box is tried.
 * - A request moved off a backend (router.ts `evacuate`) goes back to none of
 *   its tiers, whatever its health says by then.
 */
import { admit, type BreakerState } from "./breaker.ts";
import type { Admission, OutCode } from "./tier-state.ts";
import type { Endpoint } from "./types.ts";

export type SkipCode = OutCode | "context_too_small" | "same_model" | "moved_off" | "endpoint_not_served";

/** Skips that say "this prompt is too long here", as opposed to "this tier is out". */
export const CONTEXT_SKIPS: ReadonlySet<SkipCode> = new Set(["context_too_small", "same_model"]);

export interface ContextKnowledge {
  /** The largest window, in tokens, a context-length error was seen on. */
  readonly floor?: number;
  /** Tiers (tier-book.ts `tierKey`) that answered with a context-length error. */
  readonly models: ReadonlySet<string>;
}

export type Gate =
  | { readonly go: true; /** Set when this request is the half-open check: the breaker state to take. */ readonly halfOpen?: BreakerState }
  | { readonly go: false; readonly code: SkipCode; readonly why: string };

export function gateTier(a: Admission, breaker: BreakerState, now: number, key: string, window: number | undefined, ctx: ContextKnowledge): Gate {
  if (ctx.models.has(key)) return { go: false, code: "same_model", why: "this model already refused the prompt as too long" };
  if (window !== undefined && ctx.floor !== undefined && window <= ctx.floor) {
    return { go: false, code: "context_too_small", why: `context ${window} is not larger than the ${ctx.floor} tokens that were too few` };
  }
  if (a.admissible) return { go: true };
  if (a.code === "breaker_open" || a.code === "misconfigured") {
    const t = admit(breaker, now);
    if (t.allowed) return { go: true, halfOpen: t.next };
  }
  return { go: false, code: a.code, why: a.why };
}

/** Whether a tier on `backend` is closed to a request that was moved off the backends in `movedOff`. */
/** Kinds without an API for an endpoint: Anthropic's Messages API has no embeddings. */
const NOT_SERVED: Readonly<Record<string, readonly Endpoint[]>> = { anthropic: ["embedding"] };

/** A tier whose kind has no API for this endpoint is passed over, blaming nobody; undefined when it has one. Pure. */
export function endpointGate(kind: string, endpoint: Endpoint): Gate | undefined {
  return NOT_SERVED[kind]?.includes(endpoint) ? { go: false, code: "endpoint_not_served", why: `${kind} has no ${endpoint} API` } : undefined;
}

export function movedOffGate(backend: string, movedOff: ReadonlySet<string> | undefined): Gate | undefined {
  return movedOff?.has(backend) ? { go: false, code: "moved_off", why: `this request was moved off ${backend}` } : undefined;
}
