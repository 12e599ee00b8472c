/**
 * One tier for one request: the request as the tier wants it, the upstream
 * call, at most one jittered retry after a 5xx, a short Retry-After waited
 * out once, and reading the answer — whole, or streamed up to its commit
 * point and on. Every failure goes through `core.fail` exactly once.
 *
 * While it runs, the attempt can be moved off its backend (router.ts
 * `evacuate`): its upstream is aborted as `evacuated`, and the request goes
 * on as after any failure — before the commit point to the next tier
 * unseen, after it by continuation — never back to that backend.
 */
import { Cancel, type Abortable } from "../platform/cancel.ts";
import { answerFromStream } from "../cache/marks.ts";
import type { BackendConfig, Config } from "../config/types.ts";
import type { Clock } from "../platform/clock.ts";
import { sleepOn } from "../platform/clock.ts";
import { adjustForTier } from "./adjust.ts";
import { classifyHttp, classifyQuality, classifyTransport, retryAfterMs, type Classified, type FailureClass, type TransportClass } from "./classify.ts";
import { header } from "./http.ts";
import type { Gate } from "./plan.ts";
import { judgeAnswer, judges, QualityWatch, qualityOf, refusalMatchers, type Detection, type Detector } from "./quality.ts";
import { relayStream } from "./relay.ts";
import { tierKey } from "./tier-book.ts";
import { endDegenerate, sendPassThrough, sendWhole, writeStreamHead } from "./respond.ts";
import { ENDPOINT_PATHS, type CacheHook, type RequestCtx, type TierRef } from "./types.ts";
import { transportFailure, type AttemptOutcome, type Upstreams } from "./upstream.ts";
import type { RouterMetrics } from "./metrics.ts";
import type { InFlight } from "./inflight.ts";

export type Response = Extract<AttemptOutcome, { kind: "response" }>;

/** Why a tier failed; `detector`: a model failure (class "quality") and which detector caught it. */
export interface TierFailure {
  readonly class: FailureClass;
  readonly detail: string;
  readonly detector?: Detector;
}

/** sent: an answer went out; gone: the client left; lost: another attempt of a hedged race answered first (no verdict on this tier); invalid: the request itself cannot be sent; else why the tier failed. */
export type TierResult = "sent" | "gone" | "lost" | { readonly invalid: string } | TierFailure;

/**
 * An attempt racing another (hedge.ts): its own abort signal (the client's
 * and the race's), `claim` at the commit point — true when this attempt may
 * answer, false when the other already did — and whether it was aborted as
 * the loser. Absent when the attempt runs alone.
 */
export interface HedgeHooks {
  readonly signal: Abortable;
  claim(): boolean;
  lost(): boolean;
}

/** Thrown from a stream's commit callback when the other attempt of a race already answered: nothing is written. */
class LostRace extends Error {}

/** What the attempt and the continuation need of the router. */
export interface Core {
  readonly config: Config;
  readonly backends: ReadonlyMap<string, BackendConfig>;
  readonly upstreams: Upstreams;
  readonly clock: Clock;
  readonly random: () => number;
  readonly metrics?: RouterMetrics;
  readonly cache?: CacheHook;
  /** Counts one failed attempt once: the request's trail, metrics, breaker, cooldown, backend verdict, probes. */
  fail(ctx: RequestCtx, index: number, c: Classified, detail: string, cooldownWaived?: boolean): void;
  /** A good answer from tier `index`. */
  succeed(ctx: RequestCtx, index: number, ttftMs?: number): void;
  /** The request went on from one tier to the next (or to nothing). */
  failover(ctx: RequestCtx, from: TierRef, to: TierRef | undefined, reason: FailureClass, detail: string): void;
  /** Whether this request may use tier `index` now. */
  gate(ctx: RequestCtx, index: number): Gate;
  /** The tier's context window, when configured or discovered. */
  windowOf(index: number, ctx: RequestCtx): number | undefined;
  /** Continues a stream that broke (`cause`: how) after its commit point, or ends it with an error event. */
  continueStream(ctx: RequestCtx, failedIndex: number, soFar: string, generated: number, detail: string, cause: FailureClass): Promise<void>;
  /** Requests in flight per backend (`llmsup drain` reports them): an attempt holds its backend while it runs. */
  readonly inflight: InFlight;
}

export async function attemptTier(core: Core, ctx: RequestCtx, index: number, hedge?: HedgeHooks): Promise<TierResult> {
  const name = ctx.route.tiers[index]!.backend;
  // Aborted, with the reason, when the request is moved off this backend.
  const evacuation = new Cancel();
  const move = (why: string) => {
    (ctx.movedOff ??= new Set()).add(name);
    evacuation.abort(why);
  };
  // The request is on this backend until the attempt ends, however it ends (or its broken stream moves to another tier).
  const release = core.inflight.hold(name, { request: ctx, route: ctx.route.model, move });
  try {
    return await attemptOn(core, ctx, index, hedge, release, evacuation);
  } finally {
    release();
  }
}

async function attemptOn(core: Core, ctx: RequestCtx, index: number, hedge: HedgeHooks | undefined, release: () => void, evacuation: Cancel): Promise<TierResult> {
  const tier = ctx.route.tiers[index]!;
  const signal = hedge?.signal ?? ctx.clientGone;
  // An attempt aborted as a race's loser gives no verdict on its tier.
  const lost = () => hedge !== undefined && hedge.lost();
  // Moved off the backend: counted once (no verdict on the tier), and the request goes on elsewhere.
  const evacuated = (): TierResult => {
    const detail = String(evacuation.reason);
    core.fail(ctx, index, classifyTransport("evacuated"), detail);
    return { class: "evacuated", detail };
  };
  // Waits out a retry's delay; a move off the backend ends the wait too.
  const wait = async (ms: number): Promise<TierResult | undefined> => {
    if (await pause(core.clock, ms, Cancel.any(signal, evacuation))) return undefined;
    if (lost()) return "lost";
    return evacuation.aborted && !ctx.clientGone.aborted ? evacuated() : "gone";
  };
  const backend = core.backends.get(tier.backend)!;
  const r = core.config.router;
  let retried = false;
  let waited = false;
  let body: string;
  try {
    body = JSON.stringify(adjustForTier(ctx.body, tier));
  } catch (e) {
    return { invalid: `the request cannot be serialised: ${(e as Error).message}` };
  }
  for (;;) {
    if (lost()) return "lost";
    if (ctx.clientGone.aborted) return "gone";
    if (evacuation.aborted) return evacuated();
    const remainingMs = ctx.deadline - core.clock.now();
    if (remainingMs <= 0) return { class: "total_timeout", detail: "the request's deadline passed" };
    ctx.attempts++;
    const attemptStart = performance.now();
    const up = await core.upstreams.attempt({ backend, tier, path: ENDPOINT_PATHS[ctx.endpoint], body, stream: ctx.stream, requestId: ctx.requestId, clientSignal: signal, evacuation, remainingMs });
    if (up.kind === "failure") {
      if (lost()) return "lost";
      if (up.failure === "aborted") return "gone";
      core.fail(ctx, index, classifyTransport(up.failure), up.detail);
      return { class: up.failure, detail: up.detail };
    }
    if (up.status < 200 || up.status >= 300) {
      const text = await up.errorText();
      up.done();
      if (lost()) return "lost";
      // Moved off while its error was read: no verdict from a cut-off text.
      if (evacuation.aborted) return evacuated();
      const now = core.clock.now();
      const retryAfter = header(up.headers, "retry-after");
      const c = classifyHttp({ status: up.status, body: text, retryAfter }, { now, retryAfterMax: r.retry_after_max, defaultCooldown: r.breaker.open_interval, retried });
      const detail = `HTTP ${up.status}: ${text.slice(0, 300)}`;
      if (c.action.kind === "return_to_caller") {
        // The caller's own mistake: unchanged, no failover, nothing held against the tier.
        if (hedge && !hedge.claim()) return "lost";
        core.fail(ctx, index, c, detail);
        sendPassThrough(ctx, index, up.status, up.headers, text);
        return "sent";
      }
      // A short Retry-After that fits the deadline: waited out once, on the same tier.
      const retryIn = c.class === "rate_limited" ? retryAfterMs(retryAfter, now) : undefined;
      if (retryIn !== undefined && !waited && retryIn <= r.retry_after_wait_max && now + retryIn < ctx.deadline && ctx.attempts < r.max_attempts) {
        core.fail(ctx, index, c, detail, true);
        waited = true;
        const ended = await wait(retryIn);
        if (ended) return ended;
        continue;
      }
      core.fail(ctx, index, c, detail);
      if (c.action.kind === "retry_same_tier" && ctx.attempts < r.max_attempts && core.gate(ctx, index).go) {
        retried = true;
        const delay = r.retry_base_delay * (1 + core.random());
        if (ctx.deadline - core.clock.now() > delay) {
          const ended = await wait(delay);
          if (ended) return ended;
          continue;
        }
      }
      if (c.action.kind === "skip_smaller_context") {
        const w = core.windowOf(index, ctx);
        if (w !== undefined) ctx.contextFloor = Math.max(ctx.contextFloor ?? 0, w);
        ctx.contextModels.add(tierKey(tier));
        ctx.contextError = { status: up.status, body: text };
      }
      return { class: c.class, detail };
    }
    // A success status: the answer itself can still be broken.
    const result = ctx.stream && (header(up.headers, "content-type") ?? "").includes("text/event-stream") ? await streamAnswer(core, ctx, index, up, attemptStart, hedge, release) : await wholeAnswer(core, ctx, index, up, attemptStart, hedge);
    if (lost()) return "lost";
    if (result === "sent" || result === "gone" || result === "lost") return result;
    core.fail(ctx, index, result.detector ? classifyQuality(result.detector) : classifyTransport(result.class as TransportClass), result.detail);
    return result;
  }
}

/** Waits `ms` on the clock; false when the client went away meanwhile. */
async function pause(clock: Clock, ms: number, gone: Abortable): Promise<boolean> {
  try {
    await sleepOn(clock, ms, gone);
    return true;
  } catch {
    return false;
  }
}

/** The route's detectors, for one attempt's stream; undefined when the route has them all off, or for embeddings. */
function qualityWatch(ctx: RequestCtx): QualityWatch | undefined {
  const policy = qualityOf(ctx.route);
  return ctx.endpoint !== "embedding" && judges(policy) ? new QualityWatch(policy) : undefined;
}

/** A whole chat or completion answer judged by the route's detectors, choice by choice: the first detection, if any. */
export function judgeWhole(ctx: Pick<RequestCtx, "endpoint" | "route">, json: Record<string, unknown>): Detection | undefined {
  const policy = qualityOf(ctx.route);
  if (ctx.endpoint === "embedding" || !judges(policy)) return undefined;
  const matchers = refusalMatchers(policy.refusal_patterns);
  for (const choice of json.choices as unknown[]) {
    if (!choice || typeof choice !== "object") continue;
    const c = choice as { message?: { content?: unknown; tool_calls?: unknown; function_call?: unknown }; text?: unknown; finish_reason?: unknown };
    const text = typeof c.message?.content === "string" ? c.message.content : typeof c.text === "string" ? c.text : "";
    const toolCalls = (Array.isArray(c.message?.tool_calls) && c.message.tool_calls.length > 0) || (c.message?.function_call != null && typeof c.message.function_call === "object");
    const d = judgeAnswer(policy, matchers, text, toolCalls, typeof c.finish_reason === "string" ? c.finish_reason : undefined);
    if (d) return d;
  }
  return undefined;
}

async function wholeAnswer(core: Core, ctx: RequestCtx, index: number, up: Response, attemptStart: number, hedge: HedgeHooks | undefined): Promise<"sent" | "gone" | "lost" | TierFailure> {
  let raw: Buffer;
  try {
    // The bytes are kept to be sent on unchanged.
    raw = await up.body.whole();
  } catch (e) {
    // Aborted by llmsup (the client left, a deadline, a move), or silent past the tier's idle_timeout; else it broke off.
    const why = up.abortedBy() ?? (transportFailure(e) === "idle_timeout" ? "idle_timeout" : undefined);
    up.done();
    if (why === "aborted") return "gone";
    if (why === "evacuated") return { class: "evacuated", detail: up.evacuatedBecause() ?? "the request was moved off its backend" };
    return { class: why ?? "stream_broken", detail: why ? `${why.replace("_", " ")} while reading the answer` : up.scrub(`the answer broke off: ${(e as Error).message}`) };
  }
  up.done();
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(raw.toString("utf8")) as Record<string, unknown>;
    if (!json || typeof json !== "object") throw new Error("not a JSON object");
  } catch (e) {
    return { class: "stream_broken", detail: up.scrub(`the backend's answer is not valid JSON (${(e as Error).message})`) };
  }
  if (ctx.endpoint === "embedding" ? !Array.isArray(json.data) : !Array.isArray(json.choices)) return { class: "stream_broken", detail: `the backend's answer has no ${ctx.endpoint === "embedding" ? "data" : "choices"}` };
  // A model failure is a tier failure: nothing of it reaches the client, the next tier answers.
  const degenerate = judgeWhole(ctx, json);
  if (degenerate) return { class: "quality", detail: degenerate.detail, detector: degenerate.detector };
  // A whole answer's commit point: the valid answer is in (what ttft_timeout measures without streaming).
  if (hedge && !hedge.claim()) return "lost";
  const ttftMs = performance.now() - attemptStart;
  core.succeed(ctx, index, ttftMs);
  if (ctx.route.cache) core.cache?.store(ctx.route, ctx.endpoint, ctx.body, json, ctx.clientHeaders);
  if (!sendWhole(ctx, index, raw, json, core.config.router.degraded_fields)) return "gone";
  // What the router itself added: everything but the one upstream attempt (failovers excluded).
  if (ctx.attempts === 1) core.metrics?.overhead(Math.max(0, performance.now() - ctx.startedAt - ttftMs) / 1000);
  return "sent";
}

async function streamAnswer(core: Core, ctx: RequestCtx, index: number, up: Response, attemptStart: number, hedge: HedgeHooks | undefined, release: () => void): Promise<"sent" | "gone" | "lost" | TierFailure> {
  const tier = ctx.route.tiers[index]!;
  let result;
  try {
    result = await relayStream(ctx.res, up, {
      commit: () => {
        // The first output token: in a race, only the first attempt to get here answers.
        if (hedge && !hedge.claim()) throw new LostRace("another attempt answered first");
        writeStreamHead(ctx, index);
      },
      continuing: false,
      ttftLeftMs: tier.ttft_timeout - (performance.now() - attemptStart),
      finishGraceMs: Math.min(1_000, tier.idle_timeout),
      startedAt: attemptStart,
      quality: qualityWatch(ctx),
    });
  } catch (e) {
    up.abort("aborted");
    up.done();
    if (e instanceof LostRace || hedge?.lost()) return "lost";
    throw e;
  }
  if (hedge?.lost()) return "lost";
  if (result.kind === "client_gone") return "gone";
  if (result.kind === "failed_before_commit") return { class: result.failure, detail: result.detail, ...(result.detector ? { detector: result.detector } : {}) };
  if (result.kind === "complete") {
    core.succeed(ctx, index, result.ttftMs);
    ctx.res.end();
    storeStreamed(core, ctx, index, result.content);
    return "sent";
  }
  if (result.detector) {
    // Degenerated after the commit: the client already has part of it, which no other tier can take back;
    // the rest is not sent, and the stream ends saying so (never a clean [DONE]).
    core.fail(ctx, index, classifyQuality(result.detector), result.detail);
    endDegenerate(ctx, result.detail);
    return "sent";
  }
  // Broken after the commit: count it, then finish the answer elsewhere or say so.
  core.fail(ctx, index, classifyTransport(result.failure as TransportClass), result.detail);
  // Nothing more comes from this backend: the continuation holds the tier it goes on with.
  release();
  await core.continueStream(ctx, index, result.content, result.chunks, result.detail, result.failure);
  return "sent";
}

/** A finished stream, for the emergency cache: its text as the whole answer it was. */
export function storeStreamed(core: Pick<Core, "cache" | "clock">, ctx: RequestCtx, index: number, content: string): void {
  if (!ctx.route.cache || !core.cache || content === "") return;
  core.cache.store(ctx.route, ctx.endpoint, ctx.body, answerFromStream(ctx.endpoint, content, ctx.route.tiers[index]!.model, core.clock.now()), ctx.clientHeaders);
}
