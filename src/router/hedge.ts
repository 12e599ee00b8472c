/**
 * Hedged first token: a tier that has not produced its first output token
 * (its whole answer, when not streaming) after its `hedge_after` gets the
 * next admissible tier started alongside it; the first of the two to reach
 * its commit point answers the client and the other is aborted — its
 * upstream request cancelled, its connection closed.
 *
 * Both go through the same gate, attempt and outcome accounting as any
 * attempt: a failure is counted once against its own tier, the loser's abort
 * is no verdict on its tier (no breaker count), and a hedge that fails just
 * leaves the tier it hedged running — and, since that tier is already past
 * its hedge_after, the next admissible tier starts at once. At most two
 * attempts run at a time; each counts in the request's attempt budget and in
 * `x-llmsup-attempts`.
 */
import { Cancel } from "../platform/cancel.ts";
import type { Clock } from "../platform/clock.ts";
import type { Config, TierConfig } from "../config/types.ts";
import type { Core, HedgeHooks, TierResult } from "./attempt.ts";
import type { Gate } from "./plan.ts";
import { hedgeDelay, TtftWindow, type AutoHedgePolicy, AUTO_HEDGE } from "./hedge-policy.ts";
import { tierKey } from "./tier-book.ts";
import type { RouterMetrics } from "./metrics.ts";
import type { RequestCtx, TierRef } from "./types.ts";

export type HedgeOutcome = "won" | "lost" | "failed";

/** Each (backend, model)'s recent first-token times, for `hedge_after = "auto"`. */
export class HedgeBook {
  private readonly windows = new Map<string, TtftWindow>();
  private readonly policy: AutoHedgePolicy;

  constructor(policy: AutoHedgePolicy = AUTO_HEDGE) {
    this.policy = policy;
  }

  record(tier: TierConfig, now: number, ttftMs: number): void {
    const key = tierKey(tier);
    let w = this.windows.get(key);
    if (!w) this.windows.set(key, (w = new TtftWindow(this.policy)));
    w.record(now, ttftMs);
  }

  /** How long `tier` may go without a first token before it is hedged; undefined: never. */
  delay(tier: TierConfig, routerSetting: Config["router"]["hedge_after"], now: number): number | undefined {
    const setting = tier.hedge_after ?? routerSetting;
    if (setting === "auto") return this.windows.get(tierKey(tier))?.autoDelay(now) ?? this.policy.ceilingMs;
    return hedgeDelay(setting, () => []);
  }
}

/** What the race needs of the router. */
export interface HedgeCore {
  readonly config: Config;
  readonly clock: Clock;
  readonly metrics?: RouterMetrics;
  failover: Core["failover"];
  /** Whether tier `index` may take this request; a tier that may not is recorded as skipped. */
  admit(ctx: RequestCtx, index: number): Gate;
  /** One attempt on tier `index` (its half-open check taken and given back). */
  attempt(ctx: RequestCtx, index: number, g: Gate, hooks?: HedgeHooks): Promise<TierResult>;
  /** Tier `index`'s hedge delay for this request now; undefined: it is not hedged. */
  hedgeAfter(ctx: RequestCtx, index: number): number | undefined;
}

/** The race's end: a final result from tier `index`, or the last failure; `next` is the first tier no attempt has looked at. */
export interface RaceEnd {
  readonly result: TierResult;
  readonly index: number;
  readonly next: number;
}

interface Slot {
  readonly index: number;
  readonly ref: TierRef;
  readonly startedAt: number;
  readonly hedge: boolean;
  /** Set when another attempt committed (or the race ended) and this one was aborted. */
  lost: boolean;
  counted: boolean;
  readonly ctl: Cancel;
  readonly done: Promise<{ slot: Slot; result: TierResult }>;
}

/**
 * Runs tier `first` (admitted by `gate`) with hedging: `delayMs` is its
 * hedge delay. Returns once an answer went out (or the client left, or the
 * request is invalid), or every attempt the race started failed.
 */
export async function raceTiers(core: HedgeCore, ctx: RequestCtx, first: number, gate: Gate, delayMs: number): Promise<RaceEnd> {
  const tiers = ctx.route.tiers;
  const live: Slot[] = [];
  let winner: Slot | undefined;
  let next = first + 1;
  let lastFailure: { slot: Slot; result: TierResult } | undefined;

  const count = (s: Slot, outcome: HedgeOutcome, from: Slot | undefined) => {
    if (!s.hedge || s.counted) return;
    s.counted = true;
    core.metrics?.hedge(ctx.route.model, from?.ref.backend ?? "none", s.ref.backend, outcome);
  };
  // The tier each hedge was started against, for its metric's `from`.
  const hedgedFrom = new Map<Slot, Slot>();
  const abort = (s: Slot) => {
    if (s.lost) return;
    s.lost = true;
    s.ctl.abort();
  };
  const claim = (s: Slot): boolean => {
    if (winner) return winner === s;
    if (s.lost) return false;
    winner = s;
    for (const o of live) {
      if (o === s) continue;
      abort(o);
      count(o, "lost", hedgedFrom.get(o));
    }
    count(s, "won", hedgedFrom.get(s));
    return true;
  };
  const launch = (index: number, g: Gate, hedge: boolean): Slot => {
    const tier = tiers[index]!;
    const ctl = new Cancel();
    const signal = Cancel.any(ctx.clientGone, ctl);
    const slot: Slot = {
      index,
      ref: { index, backend: tier.backend, model: tier.model },
      startedAt: core.clock.now(),
      hedge,
      lost: false,
      counted: false,
      ctl,
      done: undefined as never,
    };
    const hooks: HedgeHooks = { signal, claim: () => claim(slot), lost: () => slot.lost };
    (slot as { done: Slot["done"] }).done = core.attempt(ctx, index, g, hooks).then(
      (result) => ({ slot, result }),
      (e: unknown) => ({ slot, result: slot.lost ? ("lost" as const) : { class: "stream_broken" as const, detail: `the attempt failed: ${(e as Error).message}` } }),
    );
    live.push(slot);
    return slot;
  };

  launch(first, gate, false);
  const delayOf = new Map<Slot, number | undefined>([[live[0]!, delayMs]]);
  while (live.length > 0) {
    // One attempt left without a first token: it may be hedged when its delay runs out.
    const only = live.length === 1 && !winner && next < tiers.length ? live[0]! : undefined;
    let due: number | undefined;
    if (only && ctx.attempts < core.config.router.max_attempts && core.clock.now() < ctx.deadline) {
      if (!delayOf.has(only)) delayOf.set(only, core.hedgeAfter(ctx, only.index));
      const d = delayOf.get(only);
      if (d !== undefined) due = Math.max(0, only.startedAt + d - core.clock.now());
    }
    let timer: { cancel(): void } | undefined;
    const settled = await Promise.race<{ slot: Slot; result: TierResult } | undefined>(
      due === undefined ? live.map((s) => s.done) : [...live.map((s) => s.done), new Promise<undefined>((resolve) => (timer = core.clock.setTimeout(() => resolve(undefined), due)))],
    );
    timer?.cancel();

    if (!settled) {
      // The attempt claimed the answer while the delay ran out: it is being sent, nothing to hedge.
      if (winner) continue;
      // Time to hedge: the next admissible tier starts alongside.
      const from = live[0]!;
      let j = next;
      let g: Gate | undefined;
      for (; j < tiers.length; j++) {
        g = core.admit(ctx, j);
        if (g.go) break;
      }
      next = j + 1;
      if (j >= tiers.length || !g?.go) continue;
      hedgedFrom.set(launch(j, g, true), from);
      continue;
    }

    const { slot } = settled;
    live.splice(live.indexOf(slot), 1);
    const result: TierResult = slot.lost && slot !== winner ? "lost" : settled.result;
    if (result === "lost") continue;
    if (typeof result === "object" && "class" in result) {
      // A failure, counted against its tier by the attempt: the race goes on with what still runs.
      count(slot, "failed", hedgedFrom.get(slot));
      lastFailure = { slot, result };
      const other = live[0];
      if (other && other.index > slot.index) core.failover(ctx, slot.ref, other.ref, result.class, result.detail);
      continue;
    }
    // An answer went out, the client left, or the request cannot be sent: whatever else runs is no longer wanted.
    for (const o of live) {
      abort(o);
      count(o, "lost", hedgedFrom.get(o));
    }
    if (result === "sent" && slot !== winner) count(slot, "won", hedgedFrom.get(slot));
    return { result, index: slot.index, next };
  }
  if (!lastFailure) return { result: "gone", index: first, next };
  return { result: lastFailure.result, index: lastFailure.slot.index, next };
}
