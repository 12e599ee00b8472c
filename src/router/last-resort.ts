/**
 * The end of the chain, when no tier answered: wait a little for a tier on
 * its way back, answer from the emergency cache, tell the caller a prompt is
 * too long for every tier, or a clean 503 with Retry-After.
 */
import type { HealthRegistry } from "../health/registry.ts";
import type { Clock } from "../platform/clock.ts";
import { cacheNotice, CACHE_BACKEND, markedAnswerAsSse, markHit } from "../cache/marks.ts";
import { headerSafe, sendJson } from "./http.ts";
import type { CacheHook, RequestCtx } from "./types.ts";

/** Waits (bounded by queue_timeout and the request's deadline) for a restarting backend of the route to come back. */
export async function holdForRecovery(ctx: RequestCtx, health: HealthRegistry, clock: Clock, queueTimeoutMs: number): Promise<boolean> {
  const names = new Set(ctx.route.tiers.map((t) => t.backend).filter((n) => health.isRecovering(n)));
  if (names.size === 0) return false;
  const wait = Math.min(queueTimeoutMs, ctx.deadline - clock.now());
  if (wait <= 0) return false;
  const back = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => finish(false), wait);
    const off = health.onChange((name, h) => {
      if (names.has(name) && h.state !== "down") finish(true);
    });
    const onGone = () => finish(false);
    ctx.clientGone.addEventListener("abort", onGone, { once: true });
    function finish(v: boolean) {
      clearTimeout(timer);
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
  const route = ctx.route;
  const hit = await cache.lookup(route, ctx.endpoint, ctx.body).catch(() => undefined);
  const stored = hit?.response;
  if (!hit || !stored || typeof stored !== "object" || Array.isArray(stored)) return undefined;
  if (ctx.res.headersSent || ctx.res.destroyed) return hit;
  const notice = cacheNotice(route.model, hit);
  const body = markHit(stored as Record<string, unknown>, hit, notice, degradedFields);
  const headers: Record<string, string> = {
    "x-llmsup-tier": "cache",
    "x-llmsup-backend": CACHE_BACKEND,
    "x-llmsup-degraded": "true",
    "x-llmsup-attempts": String(ctx.attempts),
    "x-llmsup-cache": "hit",
    "x-llmsup-cache-similarity": (body._cache_similarity as number).toFixed(3),
    "x-llmsup-notice": headerSafe(notice),
    "x-request-id": ctx.requestId,
  };
  if (!ctx.stream) {
    sendJson(ctx.res, 200, body, headers);
    return hit;
  }
  const so = ctx.body.stream_options as { include_usage?: unknown } | undefined;
  const text = markedAnswerAsSse(body, so?.include_usage === true);
  ctx.res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "content-length": Buffer.byteLength(text), ...headers });
  ctx.res.end(text);
  return hit;
}

/** Nothing larger to go to: the caller's prompt is too long — said in the backend's words. */
export function sendContextTooLong(ctx: RequestCtx): void {
  const last = [...ctx.tried].reverse().find((t) => t.outcome === "context_length");
  sendJson(
    ctx.res,
    400,
    { error: { message: `No tier has a context large enough for this request. ${extractMessage(ctx.contextError?.body ?? "")}`, type: "invalid_request_error", param: "messages", code: "context_length_exceeded" } },
    { "x-llmsup-tier": String(last?.tier ?? 0), "x-llmsup-backend": last?.backend ?? "", "x-llmsup-degraded": "false", "x-llmsup-attempts": String(ctx.attempts), "x-request-id": ctx.requestId },
  );
}

/** 503 all_tiers_down with Retry-After and what each tier said. */
export function sendAllDown(ctx: RequestCtx, retryAfterMs: number, cacheOn: boolean): void {
  if (ctx.res.headersSent) {
    if (!ctx.res.writableEnded) ctx.res.end();
    return;
  }
  const retryAfter = Math.ceil(retryAfterMs / 1000);
  const summary = ctx.tried.map((t) => `tier ${t.tier} (${t.backend}): ${t.outcome === "skipped" ? "skipped" : t.outcome}: ${t.detail}`).join("; ");
  sendJson(
    ctx.res,
    503,
    { error: { message: `Every tier of ${ctx.route.model} is unavailable; retry after ${retryAfter}s. ${summary}`, type: "service_unavailable", param: null, code: "all_tiers_down", tried: ctx.tried } },
    { "retry-after": String(retryAfter), "x-llmsup-degraded": "true", "x-llmsup-attempts": String(ctx.attempts), "x-llmsup-tier": "none", "x-llmsup-backend": "none", "x-request-id": ctx.requestId, ...(cacheOn ? { "x-llmsup-cache": "miss" } : {}) },
  );
}

function extractMessage(body: string): string {
  try {
    const j = JSON.parse(body) as { error?: { message?: string } | string; message?: string };
    if (typeof j.error === "string") return j.error;
    return j.error?.message ?? j.message ?? body.slice(0, 300);
  } catch {
    return body.slice(0, 300);
  }
}
