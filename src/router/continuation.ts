/**
 * Finishing an answer whose stream broke after the commit point: the next
 * tier that can continue an assistant message (prefill) gets the partial
 * answer and streams the rest after a marked seam. Each try goes through the
 * same gate, classification and accounting as a first attempt; when no tier
 * can finish it, the stream ends with an explicit error event, never [DONE].
 */
import { adjustForTier } from "./adjust.ts";
import type { Core } from "./attempt.ts";
import { storeStreamed } from "./attempt.ts";
import { classifyHttp, classifyTransport, type TransportClass } from "./classify.ts";
import { header, readText } from "./http.ts";
import { relayStream } from "./relay.ts";
import { endWithStreamError, seamComment } from "./respond.ts";
import { ENDPOINT_PATHS, type RequestCtx } from "./types.ts";

/** Kinds that continue an assistant message (prefill): a broken stream can be finished there. */
export const PREFILL_KINDS: ReadonlySet<string> = new Set(["vllm", "llamacpp", "ollama"]);

export async function continueStream(core: Core, ctx: RequestCtx, failedIndex: number, soFar: string, generated: number, detail: string): Promise<void> {
  const messages = Array.isArray(ctx.body.messages) ? (ctx.body.messages as unknown[]) : undefined;
  let from = failedIndex;
  let why = detail;
  if (ctx.endpoint === "chat" && messages && soFar !== "") {
    for (let j = failedIndex + 1; j < ctx.route.tiers.length; j++) {
      const tier = ctx.route.tiers[j]!;
      const backend = core.backends.get(tier.backend)!;
      const g = core.gate(ctx, j);
      // Only a tier that is in service continues: the half-open check is for whole requests.
      if (!PREFILL_KINDS.has(backend.kind) || !g.go || g.halfOpen) continue;
      if (ctx.attempts >= core.config.router.max_attempts || core.clock.now() >= ctx.deadline || ctx.clientGone.aborted) break;
      ctx.attempts++;
      const asked = typeof ctx.body.max_tokens === "number" ? ctx.body.max_tokens : undefined;
      const body = adjustForTier(ctx.body, tier, {
        messages: [...messages, { role: "assistant", content: soFar }],
        stream: true,
        ...(asked !== undefined ? { max_tokens: Math.max(1, Math.min(asked - generated, tier.max_tokens ?? Infinity)) } : {}),
        ...(backend.kind === "vllm" ? { continue_final_message: true, add_generation_prompt: false } : {}),
      });
      const start = performance.now();
      const up = await core.upstreams.attempt({ backend, tier, path: ENDPOINT_PATHS.chat, body: JSON.stringify(body), stream: true, requestId: ctx.requestId, clientSignal: ctx.clientGone, remainingMs: ctx.deadline - core.clock.now() });
      if (up.kind === "failure") {
        if (up.failure === "aborted") return;
        core.fail(ctx, j, classifyTransport(up.failure), up.detail);
        continue;
      }
      if (up.status !== 200 || !(header(up.headers, "content-type") ?? "").includes("text/event-stream")) {
        const text = await readText(up.body).catch(() => "");
        up.done();
        const c = up.status === 200 ? classifyTransport("stream_broken") : classifyHttp({ status: up.status, body: text, retryAfter: header(up.headers, "retry-after") }, { now: core.clock.now(), retryAfterMax: core.config.router.retry_after_max, defaultCooldown: core.config.router.breaker.open_interval, retried: true });
        core.fail(ctx, j, c, up.status === 200 ? "a continuation answered without a stream" : `HTTP ${up.status}: ${text.slice(0, 300)}`);
        continue;
      }
      core.failover(ctx, { index: from, backend: ctx.route.tiers[from]!.backend, model: ctx.route.tiers[from]!.model }, { index: j, backend: tier.backend, model: tier.model }, "stream_broken", `continued after: ${why}`);
      ctx.res.write(seamComment(j, tier.backend, from, why));
      const r = await relayStream(ctx.res, up, { commit: () => undefined, continuing: true, ttftLeftMs: tier.ttft_timeout, finishGraceMs: Math.min(1_000, tier.idle_timeout), startedAt: start });
      if (r.kind === "complete") {
        core.succeed(ctx, j);
        ctx.res.end();
        storeStreamed(core, ctx, j, soFar + r.content);
        return;
      }
      if (r.kind === "client_gone") return;
      core.fail(ctx, j, classifyTransport(r.failure as TransportClass), r.detail);
      if (r.kind === "broken_after_commit") {
        soFar += r.content;
        generated += r.chunks;
      }
      from = j;
      why = r.detail;
    }
  }
  endWithStreamError(ctx, why);
}
