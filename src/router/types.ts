/** The router's vocabulary: endpoints, tiers, events, and the hooks other parts plug in. */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { RouteConfig } from "../config/types.ts";
import type { HealthRegistry } from "../health/registry.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock } from "../platform/clock.ts";
import type { Body } from "./adjust.ts";
import type { FailureClass } from "./classify.ts";
import type { RouterMetrics } from "./metrics.ts";
import type { Detector } from "./quality.ts";
import type { Drain } from "./tier-state.ts";
import type { UpstreamFaults } from "./upstream.ts";
import type { Cancel } from "../platform/cancel.ts";

export type Endpoint = "chat" | "completion" | "embedding";

export const ENDPOINT_PATHS: Record<Endpoint, string> = { chat: "/v1/chat/completions", completion: "/v1/completions", embedding: "/v1/embeddings" };

export interface TierRef {
  readonly index: number;
  readonly backend: string;
  readonly model: string;
}

export type RouterEvent =
  | { readonly event: "router.failover"; readonly route: string; readonly requestId: string; readonly from: TierRef; readonly to?: TierRef; readonly reason: FailureClass; readonly detail: string; readonly at: number }
  /** The route's serving tier moved to a worse tier, or improved to one that is still not its first; `code` says why the tier it left is out. */
  | { readonly event: "router.route.fallback"; readonly route: string; readonly from?: TierRef; readonly to: TierRef; readonly reason: string; readonly code: string; readonly at: number }
  | { readonly event: "router.route.recovered"; readonly route: string; readonly to: TierRef; readonly outageMs: number; readonly at: number }
  | { readonly event: "router.route.down"; readonly route: string; readonly tried: readonly TriedTier[]; readonly at: number }
  | { readonly event: "router.breaker"; readonly backend: string; readonly model: string; readonly from: string; readonly to: string; readonly reason: string; readonly at: number }
  | { readonly event: "router.misconfigured"; readonly backend: string; readonly model: string; readonly status: number; readonly detail: string; readonly at: number }
  | { readonly event: "router.cache.served"; readonly route: string; readonly similarity: number; readonly at: number }
  /** A background probe of an out tier answered: its breaker closed. */
  | { readonly event: "router.tier.healed"; readonly backend: string; readonly model: string; readonly outMs: number; readonly at: number }
  /**
   * A backend went down under requests in flight (a GPU fault) and they were moved off it at once: a
   * stream goes on with the next tier (or ends with an error event that says why it cannot), a request
   * not answered yet goes to the next tier. One event per route that had any; `requests`: how many.
   */
  | { readonly event: "router.evacuated"; readonly backend: string; readonly route: string; readonly reason: string; readonly requests: number; readonly at: number }
  /** A model failure (quality.ts) caught on a tier's answer: `detector` and why; the request went on to the next tier, or its stream ended saying so. */
  | { readonly event: "router.quality"; readonly route: string; readonly requestId: string; readonly backend: string; readonly model: string; readonly detector: Detector; readonly detail: string; readonly at: number }
  /** A (backend, model) reached the rate of model failures that marks it DEGRADED (`detections` within `windowMs`), or fell back under it. */
  | { readonly event: "router.tier.quality"; readonly backend: string; readonly model: string; readonly degraded: boolean; readonly detections: number; readonly windowMs: number; readonly at: number };

export interface TriedTier {
  readonly tier: number;
  readonly backend: string;
  readonly model: string;
  /** "skipped" when no request was sent. */
  readonly outcome: FailureClass | "skipped";
  readonly detail: string;
  /** Why a skipped tier was skipped (tier-state.ts OutCode, or a context reason). */
  readonly skip?: string;
}

/**
 * Where the emergency cache plugs in. `store` is called after every successful
 * answer (a streamed one as the chat.completion its text makes) of a route
 * with `cache = true`, never for other routes; `headers` are the client's
 * request headers (`x-llmsup-cache: no-store` opts out). `lookup` is called
 * only when every tier failed.
 */
export interface CacheHook {
  store(route: RouteConfig, endpoint: Endpoint, request: Body, response: unknown, headers: Record<string, string | string[] | undefined>): void;
  lookup(
    route: RouteConfig,
    endpoint: Endpoint,
    request: Body,
  ): Promise<{ readonly response: unknown; readonly similarity: number; readonly cachedAt: number; readonly match?: "exact" | "similar" | "semantic" } | undefined>;
}

export interface RouterDeps {
  readonly health: HealthRegistry;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: RouterMetrics;
  readonly onEvent?: (e: RouterEvent) => void;
  readonly cache?: CacheHook;
  readonly random?: () => number;
  /** A request succeeded on a backend (the supervisor skips its deep probe). */
  readonly onSuccess?: (backend: string) => void;
  /** A tier's context window in tokens when discovered from its backend (the config's `context` wins). */
  readonly contextWindow?: (backend: string, model: string) => number | undefined;
  /** Whether an operator drained a backend (`llmsup drain`): its tiers take no new request. Kept outside the router, so it outlives a reload. */
  readonly drained?: (backend: string) => Drain | undefined;
  /** A drill's router faults (drills/inject.ts): every upstream attempt and shallow check of this router passes through them. */
  readonly faults?: UpstreamFaults;
}

/** One request on its way down the chain. */
export interface RequestCtx {
  readonly route: RouteConfig;
  readonly endpoint: Endpoint;
  readonly body: Body;
  readonly stream: boolean;
  readonly requestId: string;
  readonly res: ServerResponse;
  /** The client's request headers (the cache reads its opt-out there). */
  readonly clientHeaders: IncomingMessage["headers"];
  readonly clientGone: Cancel;
  readonly deadline: number;
  readonly startedAt: number;
  attempts: number;
  readonly tried: TriedTier[];
  /** After a context-length error: the largest window known to be too small, and the tiers (tierKey) that refused. */
  contextFloor?: number;
  readonly contextModels: Set<string>;
  contextError?: { status: number; body: string };
  /** Backends this request was moved off (router.ts `evacuate`): none of its attempts goes back to them. */
  movedOff?: Set<string>;
}
