/**
 * Every answer the router writes, and the `x-llmsup-*` headers on it: a tier's
 * whole answer (marked when degraded), a caller's own error passed through,
 * a stream's head, seam and error event, an answer from the emergency cache,
 * "too long for every tier" and "every tier down".
 */
import type { RouteConfig } from "../config/types.ts";
import { cacheNotice, CACHE_BACKEND, markedAnswerAsSse, markHit, type CacheHitInfo } from "../cache/marks.ts";
import { header, headerSafe, sendError, sendJson, sseError } from "./http.ts";
import type { RequestCtx } from "./types.ts";

/** The notice of an answer from tier `index`: the tier's own, or a plain one for any fallback. */
export function tierNotice(route: RouteConfig, index: number): string | undefined {
  const tier = route.tiers[index]!;
  if (tier.notice) return tier.notice;
  return index > 0 ? `Answered by fallback tier ${index} (${tier.backend}, ${tier.model})` : undefined;
}

export function llmsupHeaders(ctx: RequestCtx, index: number): Record<string, string> {
  const tier = ctx.route.tiers[index]!;
  const h: Record<string, string> = {
    "x-llmsup-tier": String(index),
    "x-llmsup-backend": tier.backend,
    "x-llmsup-degraded": String(index > 0),
    "x-llmsup-attempts": String(ctx.attempts),
    "x-request-id": ctx.requestId,
  };
  const notice = tierNotice(ctx.route, index);
  if (notice) h["x-llmsup-notice"] = headerSafe(notice);
  return h;
}

/** A tier's answer to the caller's own mistake, unchanged. */
export function sendPassThrough(ctx: RequestCtx, index: number, status: number, headers: Record<string, string | string[] | undefined>, text: string): void {
  if (ctx.res.headersSent || ctx.res.destroyed) return;
  const ct = header(headers, "content-type") ?? "application/json";
  ctx.res.writeHead(status, { "content-type": ct, "content-length": Buffer.byteLength(text), ...llmsupHeaders(ctx, index) });
  ctx.res.end(text);
}

/** A whole answer: the backend's bytes unchanged, or marked with _backend/_degraded/_notice when degraded. False when the client is gone. */
export function sendWhole(ctx: RequestCtx, index: number, raw: Buffer, json: Record<string, unknown>, degradedFields: boolean): boolean {
  let out: Buffer | string = raw;
  if (index > 0 && degradedFields) out = JSON.stringify({ ...json, _backend: ctx.route.tiers[index]!.backend, _degraded: true, _notice: tierNotice(ctx.route, index) });
  if (ctx.res.headersSent || ctx.res.destroyed) return false;
  ctx.res.writeHead(200, { "content-type": "application/json", "content-length": typeof out === "string" ? Buffer.byteLength(out) : out.length, ...llmsupHeaders(ctx, index) });
  ctx.res.end(out);
  return true;
}

/** The head of a streamed answer, written at the commit point. */
export function writeStreamHead(ctx: RequestCtx, index: number): void {
  ctx.res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", ...llmsupHeaders(ctx, index) });
}

/** The SSE comment that marks where another tier takes over a broken answer, or one moved off its backend (`cause` evacuated). */
export function seamComment(to: number, backend: string, from: number, cause: string, detail: string): string {
  const how = cause === "evacuated" ? `, moved off tier ${from}` : ` after tier ${from} broke off`;
  return `: llmsup: the answer continues on tier ${to} (${backend})${how}: ${detail}\n\n`;
}

/** A stream that broke after the commit and could not be completed: an error event, never [DONE]. */
export function endWithStreamError(ctx: RequestCtx, detail: string): void {
  if (ctx.res.destroyed) return;
  ctx.res.write(sseError("stream_interrupted", `The answer was cut off and could not be completed: ${detail}`));
  ctx.res.end();
}

/**
 * Ends a stream whose answer degenerated after its commit point (a loop, garbage: quality.ts): what
 * was sent stands, the rest is not sent, and the last event says why instead of [DONE].
 */
export function endDegenerate(ctx: RequestCtx, detail: string): void {
  if (ctx.res.destroyed) return;
  ctx.res.write(sseError("stream_interrupted", `The answer degenerated and was stopped: ${detail}. What was sent before is incomplete; send the request again.`));
  ctx.res.end();
}

/** An earlier answer from the emergency cache, marked as such (JSON or SSE as asked). */
export function sendCacheHit(ctx: RequestCtx, stored: Record<string, unknown>, hit: CacheHitInfo, degradedFields: boolean): void {
  if (ctx.res.headersSent || ctx.res.destroyed) return;
  const notice = cacheNotice(ctx.route.model, hit);
  const body = markHit(stored, hit, notice, degradedFields);
  const headers: Record<string, string> = {
    "x-llmsup-tier": "cache",
    "x-llmsup-backend": CACHE_BACKEND,
    "x-llmsup-degraded": "true",
    "x-llmsup-attempts": String(ctx.attempts),
    "x-llmsup-cache": "hit",
    "x-llmsup-cache-similarity": (body._cache_similarity as number).toFixed(3),
    ...(hit.match ? { "x-llmsup-cache-match": hit.match } : {}),
    "x-llmsup-notice": headerSafe(notice),
    "x-request-id": ctx.requestId,
  };
  if (!ctx.stream) return sendJson(ctx.res, 200, body, headers);
  const so = ctx.body.stream_options as { include_usage?: unknown } | undefined;
  const text = markedAnswerAsSse(body, so?.include_usage === true);
  ctx.res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "content-length": Buffer.byteLength(text), ...headers });
  ctx.res.end(text);
}

/** Nothing larger to go to: the caller's prompt is too long — said in the backend's words. */
export function sendContextTooLong(ctx: RequestCtx): void {
  const last = [...ctx.tried].reverse().find((t) => t.outcome === "context_length");
  sendError(
    ctx.res,
    "context_length_exceeded",
    `No tier has a context large enough for this request. ${extractMessage(ctx.contextError?.body ?? "")}`,
    { "x-llmsup-tier": String(last?.tier ?? 0), "x-llmsup-backend": last?.backend ?? "", "x-llmsup-degraded": "false", "x-llmsup-attempts": String(ctx.attempts), "x-request-id": ctx.requestId },
    { param: "messages" },
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
  sendError(
    ctx.res,
    "all_tiers_down",
    `Every tier of ${ctx.route.model} is unavailable; retry after ${retryAfter}s. ${summary}`,
    { "retry-after": String(retryAfter), "x-llmsup-degraded": "true", "x-llmsup-attempts": String(ctx.attempts), "x-llmsup-tier": "none", "x-llmsup-backend": "none", "x-request-id": ctx.requestId, ...(cacheOn ? { "x-llmsup-cache": "miss" } : {}) },
    { tried: ctx.tried },
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
