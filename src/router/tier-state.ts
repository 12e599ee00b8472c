/**
 * The tier-state model: for one tier of a route, whether it may serve and,
 * when not, why and until when — from its backend's health, its breaker and
 * its 429 cooldown. Pure, time as a parameter. Routing, route events, status,
 * metrics, mails and drills all read this one answer.
 *
 * | condition (first that holds)             | code             | until                 |
 * |------------------------------------------|------------------|-----------------------|
 * | backend not configured                   | not_configured   |                       |
 * | kind the router does not speak           | unsupported      |                       |
 * | backend drained by an operator           | drained          |                       |
 * | backend health DOWN                      | backend_down     |                       |
 * | breaker open/half-open, misconfiguration | misconfigured    | breaker's `until`     |
 * | breaker open or half-open                | breaker_open     | breaker's `until`     |
 * | 429 cooldown running                     | cooldown         | end of the cooldown   |
 * | otherwise                                | (admissible)     |                       |
 */
import { formatWhen } from "../alerts/text.ts";
import type { BackendHealth } from "../health/registry.ts";
import type { BreakerState } from "./breaker.ts";

export type OutCode = "not_configured" | "unsupported" | "drained" | "backend_down" | "misconfigured" | "breaker_open" | "cooldown";

/** Every reason a tier can be out, for metrics labels (bounded). */
export const OUT_CODES: readonly OutCode[] = ["not_configured", "unsupported", "drained", "backend_down", "misconfigured", "breaker_open", "cooldown"];

export interface TierFacts {
  /** The backend's kind, or undefined when no such backend is configured. */
  readonly kind: string | undefined;
  readonly health: BackendHealth;
  readonly breaker: BreakerState;
  readonly cooldown?: { readonly until: number; readonly reason: string };
  /** Set while an operator has the backend out of rotation (`llmsup drain`). */
  readonly drained?: Drain;
}

/** An operator's drain of a backend: who, and since when. */
export interface Drain {
  readonly by: string;
  readonly since: number;
}

export type Admission =
  | { readonly admissible: true }
  | { readonly admissible: false; readonly code: OutCode; readonly why: string; readonly since?: number; readonly until?: number };

/** Kinds the router speaks (OpenAI-compatible HTTP, and Anthropic's Messages API through router/anthropic/). */
const SPOKEN = new Set(["vllm", "ollama", "llamacpp", "openai", "anthropic"]);

const secs = (ms: number) => `${Math.max(0, Math.ceil(ms / 1000))}s`;

export function admission(f: TierFacts, now: number): Admission {
  if (f.kind === undefined) return { admissible: false, code: "not_configured", why: "backend not configured" };
  if (!SPOKEN.has(f.kind)) return { admissible: false, code: "unsupported", why: `the ${f.kind} API is not spoken by the router; use an OpenAI-compatible endpoint` };
  if (f.drained) return { admissible: false, code: "drained", why: `drained by ${f.drained.by} since ${formatWhen(f.drained.since, "UTC")}`, since: f.drained.since };
  if (f.health.state === "down") return { admissible: false, code: "backend_down", why: `backend down: ${f.health.reason}`, since: f.health.since };
  const b = f.breaker;
  if (b.state !== "closed") {
    const code = b.misconfigured ? "misconfigured" : "breaker_open";
    const until = b.state === "open" ? b.until : undefined;
    const when =
      b.state === "half_open" ? "half-open: one request is checking it" : until! > now ? `open for ${secs(until! - now)} more` : "open: the next request or probe checks it";
    return { admissible: false, code, why: `breaker ${when} (${b.reason})`, since: b.since, ...(until !== undefined ? { until } : {}) };
  }
  if (f.cooldown && f.cooldown.until > now) {
    return { admissible: false, code: "cooldown", why: `cooling off for ${secs(f.cooldown.until - now)} more (${f.cooldown.reason})`, until: f.cooldown.until };
  }
  return { admissible: true };
}

/** The route's best tier by the model: the first admissible one, -1 when none is. */
export function bestTier(admissions: readonly Admission[]): number {
  return admissions.findIndex((a) => a.admissible);
}
