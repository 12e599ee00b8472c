/**
 * The mutable half of the tier-state model: the circuit breaker per
 * (backend, model) and the 429 cooldowns, with the backend health it reads
 * from the registry. `admission` answers "can this tier serve now, and if
 * not why and until when" through the pure tier-state.ts.
 */
import type { BackendConfig, TierConfig } from "../config/types.ts";
import type { HealthRegistry } from "../health/registry.ts";
import type { Clock } from "../platform/clock.ts";
import { CLOSED, type BreakerPolicy, type BreakerState } from "./breaker.ts";
import { admission, type Admission, type Drain } from "./tier-state.ts";

export interface TierBookDeps {
  readonly backends: ReadonlyMap<string, BackendConfig>;
  readonly health: HealthRegistry;
  /** An operator's drain of a backend, if any. */
  readonly drained?: (backend: string) => Drain | undefined;
  readonly clock: Clock;
  readonly policy: BreakerPolicy;
  /** A breaker changed state. */
  readonly onBreaker: (t: TierConfig, prev: BreakerState, next: BreakerState, reason: string) => void;
  /** A cooldown began or ended. */
  readonly onCooldown: () => void;
}

const tierKeys = new WeakMap<object, { backend: string; model: string; key: string }>();

/** `backend\0model`: built once per tier object (while its backend and model stay the same), not per request. */
export const tierKey = (t: Pick<TierConfig, "backend" | "model">): string => {
  const k = tierKeys.get(t);
  if (k && k.backend === t.backend && k.model === t.model) return k.key;
  const key = `${t.backend}\u0000${t.model}`;
  tierKeys.set(t, { backend: t.backend, model: t.model, key });
  return key;
};

export class TierBook {
  private readonly breakers = new Map<string, BreakerState>();
  private readonly cooldowns = new Map<string, { until: number; reason: string }>();
  private readonly d: TierBookDeps;

  constructor(deps: TierBookDeps) {
    this.d = deps;
  }

  get policy(): BreakerPolicy {
    return this.d.policy;
  }

  breaker(t: TierConfig): BreakerState {
    return this.breakers.get(tierKey(t)) ?? CLOSED;
  }

  setBreaker(t: TierConfig, next: BreakerState, reason: string): void {
    const prev = this.breaker(t);
    if (next === prev) return;
    if (next.state === "closed" && next.failures === 0) this.breakers.delete(tierKey(t));
    else this.breakers.set(tierKey(t), next);
    if (prev.state !== next.state) this.d.onBreaker(t, prev, next, reason);
  }

  /** Closes every breaker of a backend (it was restarted and passed readiness). */
  resetBackend(backend: string, tiers: readonly TierConfig[], reason: string): void {
    for (const t of tiers) if (t.backend === backend) this.setBreaker(t, CLOSED, reason);
  }

  /** A 429: no request goes to this tier for `ms`. */
  coolDown(t: TierConfig, ms: number, reason: string): void {
    this.cooldowns.set(tierKey(t), { until: this.d.clock.now() + ms, reason });
    this.d.onCooldown();
  }

  cooldown(t: TierConfig): { until: number; reason: string } | undefined {
    const c = this.cooldowns.get(tierKey(t));
    if (c && c.until <= this.d.clock.now()) {
      this.cooldowns.delete(tierKey(t));
      return undefined;
    }
    return c;
  }

  /** Takes over a previous book's breakers and cooldowns (a reload): tiers that still exist keep what was learnt about them. */
  adopt(previous: TierBook, tiers: readonly TierConfig[]): void {
    for (const t of tiers) {
      const k = tierKey(t);
      const b = previous.breakers.get(k);
      if (b) this.breakers.set(k, b);
      const c = previous.cooldowns.get(k);
      if (c) this.cooldowns.set(k, c);
    }
  }

  /** Whether nothing is held against any tier (no breaker counting, no cooldown): the common case, answered without building anything. */
  get clean(): boolean {
    return this.breakers.size === 0 && this.cooldowns.size === 0;
  }

  /** Whether this tier may serve now, and if not why and until when. */
  admission(t: TierConfig): Admission {
    const b = this.d.backends.get(t.backend);
    const drained = this.d.drained?.(t.backend);
    return admission({ kind: b?.kind, health: this.d.health.get(t.backend), breaker: this.breaker(t), cooldown: this.cooldown(t), ...(drained ? { drained } : {}) }, this.d.clock.now());
  }
}
