/** Emergency cache tests: a cache on a temp dir with a clock the test moves, and requests/answers to fill it. */
import type { CacheConfig, RouteConfig } from "../../src/config/types.ts";
import { EmergencyCache, type CacheOptions } from "../../src/cache/cache.ts";
import { loadSqlite } from "../../src/cache/sqlite.ts";
import { ManualClock } from "../helpers/clock.ts";
import { RouterMetrics } from "../../src/router/metrics.ts";
import { memoryLogger } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";

export const T0 = Date.UTC(2025, 5, 1, 12, 0, 0);
export const DAY = 86_400_000;

/** Manual time from T0; the cache's batching timers run on real time. */
export function cacheClock(): ManualClock {
  return new ManualClock(T0, { realTimers: true });
}

export const DEFAULTS: CacheConfig = { max_entries: 10_000, max_bytes: 256 * 1024 * 1024, ttl: 7 * DAY, similarity: 0.85, multi_turn: false };

export const route = (model = "llama", cache = true): RouteConfig => ({ model, tiers: [], cache });

export function ask(content: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: "llama", messages: [{ role: "user", content }], ...extra };
}

export function answer(content: string, model = "llama-a"): Record<string, unknown> {
  return { id: "chatcmpl-x", object: "chat.completion", created: 1, model, choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }], usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 } };
}

export interface TestCache {
  readonly cache: EmergencyCache;
  readonly dir: string;
  readonly clock: ManualClock;
  readonly metrics: RouterMetrics;
  readonly logs: () => Record<string, unknown>[];
  /** Closes this cache and opens another on the same directory (a daemon restart). */
  reopen(config?: Partial<CacheConfig>): TestCache;
}

export function openCache(t: { after(fn: () => void): void }, config: Partial<CacheConfig> = {}, extra: Partial<CacheOptions> & { dir?: string; clock?: ManualClock } = {}): TestCache {
  const dir = extra.dir ?? tempDir(t);
  const clock = extra.clock ?? cacheClock();
  const metrics = new RouterMetrics();
  const log = memoryLogger();
  const cache = EmergencyCache.open({ config: { ...DEFAULTS, ...config }, dir, logger: log.logger, clock, metrics, sqlite: loadSqlite(), ...extra });
  t.after(() => cache.close());
  return {
    cache,
    dir,
    clock,
    metrics,
    logs: log.lines,
    reopen: (c = {}) => {
      cache.close();
      return openCache(t, { ...config, ...c }, { ...extra, dir, clock });
    },
  };
}

/** The content of a hit's first choice. */
export function contentOf(response: unknown): string {
  return ((response as { choices: { message: { content: string } }[] }).choices[0]!.message.content);
}
