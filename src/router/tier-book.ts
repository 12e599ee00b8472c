/**
 * What the router knows about each tier besides its backend's health: the
 * circuit breaker per (backend, model) and the 429 cooldown. Answers "can this
 * tier take a request now, and if not, why".
 */
import type { BackendConfig, TierConfig } from "../config/types.ts";
import type { HealthRegistry } from "../health/registry.ts";
import type { Clock } from "../platform/clock.ts";
import { CLOSED, type BreakerPolicy, type BreakerState } from "./breaker.ts";

export interface TierBookDeps {
  readonly backends: ReadonlyMap<string, BackendConfig>;
  readonly health: HealthRegistry;
  readonly clock: Clock;
  readonly policy: BreakerPolicy;
  /** A breaker changed state. */
  readonly onBreaker: (t: TierConfig, prev: BreakerState, next: BreakerState, reason: string) => void;
}

const key = (t: TierConfig) => `${t.backend}\u0000${t.model}`;

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
    return this.breakers.get(key(t)) ?? CLOSED;
  }

  setBreaker(t: TierConfig, next: BreakerState, reason: string): void {
    const prev = this.breaker(t);
    this.breakers.set(key(t), next);
    if (prev.state !== next.state) this.d.onBreaker(t, prev, next, reason);
  }

  /** A 429: no request goes to this tier for `ms`. */
  coolDown(t: TierConfig, ms: number, reason: string): void {
    this.cooldowns.set(key(t), { until: this.d.clock.now() + ms, reason });
  }

  /** Why a tier cannot take a request now (no request is sent), or undefined when it can. */
  unavailable(t: TierConfig, contextFloor?: number): string | undefined {
    const b = this.d.backends.get(t.backend);
    if (!b) return "backend not configured";
    if (b.kind === "anthropic") return "the anthropic API is not spoken by the router; use an OpenAI-compatible endpoint";
    const h = this.d.health.get(t.backend);
    if (h.state === "down") return `backend down: ${h.reason}`;
    const cd = this.cooldowns.get(key(t));
    const now = this.d.clock.now();
    if (cd && cd.until > now) return `cooling off for ${Math.ceil((cd.until - now) / 1000)}s more (${cd.reason})`;
    const br = this.breaker(t);
    if (br.state === "open" && br.until > now) return `breaker open for ${Math.ceil((br.until - now) / 1000)}s more (${br.reason})`;
    if (br.state === "half_open") return `breaker half-open: a probe request is in flight (${br.reason})`;
    if (contextFloor !== undefined && (t.context === undefined || t.context <= contextFloor)) {
      return `context ${t.context ?? "unknown"} is not larger than the ${contextFloor} tokens that were too few`;
    }
    return undefined;
  }
}
