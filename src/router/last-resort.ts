/**
 * The end of the chain, when no tier answered: wait a little for a tier on
 * its way back, or look in the emergency cache. The answers themselves are
 * written by respond.ts.
 */
import type { HealthRegistry } from "../health/registry.ts";
import type { Clock } from "../platform/clock.ts";
import { sendCacheHit } from "./respond.ts";
import type { CacheHook, RequestCtx } from "./types.ts";

/** Waits (bounded by queue_timeout and the request's deadline) for a restarting backend of the route to come back. */
export async function holdForRecovery(ctx: RequestCtx, health: HealthRegistry, clock: Clock, queueTimeoutMs: number): Promise<boolean> {
  const names = new Set(ctx.route.tiers.map((t) => t.backend).filter((n) => health.isRecovering(n)));
  if (names.size === 0) return false;
  const wait = Math.min(queueTimeoutMs, ctx.deadline - clock.now());
  if (wait <= 0) return false;
  const back = await new Promise<boolean>((resolve) => {
    const timer = clock.setTimeout(() => finish(false), wait);
    const off = health.onChange((name, h) => {
      if (names.has(name) && h.state !== "down") finish(true);
    });
    const onGone = () => finish(false);
    ctx.clientGone.addEventListener("abort", onGone, { once: true });
    function finish(v: boolean) {
      timer.cancel();
      off();
      ctx.clientGone.removeEventListener("abort", onGone);
      resolve(v);
    }
  });
  if (back) ctx.tried.length = 0;
  return back;
}

/** The fifth level: an earlier answer to the same or a nearly identical question, marked as such. The hit once sent. */
export async function answerFromCache(ctx: RequestCtx, cache: CacheHook, degradedFields: boolean): Promise<{ similarity: number } | undefined> {
  const hit = await cache.lookup(ctx.route, ctx.endpoint, ctx.body).catch(() => undefined);
  const stored = hit?.response;
  if (!hit || !stored || typeof stored !== "object" || Array.isArray(stored)) return undefined;
  sendCacheHit(ctx, stored as Record<string, unknown>, hit, degradedFields);
  return hit;
}
