/**
 * Finishing an answer whose stream broke after the commit point (or was
 * moved off a backend that went down under it: router.ts `evacuate`): the next
 * tier that is in service gets the partial answer and streams the rest after
 * a marked seam — by assistant prefill where the tier's model continues a
 * final assistant message, else in a prefill-free form (the partial answer as
 * an assistant turn, then a user turn asking to go on exactly where it
 * stopped), relaying only the new text. Whether a (backend, model) takes a
 * prefill is configured (`prefill`) or, on "auto", learnt from its first
 * rejection and kept for the router's life. State that cannot be carried to
 * another tier (a tool call's arguments, guided decoding, n > 1, logprobs)
 * is never continued. Each try goes through the same gate, classification
 * and accounting as a first attempt; when no tier can finish the answer, the
 * stream ends with an explicit error event, never [DONE].
 */
import type { BackendConfig, TierConfig } from "../config/types.ts";
import { adjustForTier, type Body } from "./adjust.ts";
import type { Core } from "./attempt.ts";
import { storeStreamed } from "./attempt.ts";
import { classifyHttp, classifyQuality, classifyTransport, type FailureClass, type TransportClass } from "./classify.ts";
import { header } from "./http.ts";
import { judges, QualityWatch, qualityOf } from "./quality.ts";
import { Cancel } from "../platform/cancel.ts";
import { relayStream, streamRecord } from "./relay.ts";
import { endWithStreamError, seamComment } from "./respond.ts";
import type { SseChunk } from "./sse.ts";
import { ENDPOINT_PATHS, type Endpoint, type RequestCtx } from "./types.ts";

/** Kinds whose servers continue a final assistant message: "auto" starts from prefill everywhere, and these are known to take it. */
export const PREFILL_KINDS: ReadonlySet<string> = new Set(["vllm", "llamacpp", "ollama"]);

/** The user turn of the prefill-free form. */
export const CONTINUE_PROMPT =
  "Your previous reply was cut off. Continue it exactly where it stopped, mid-word or mid-sentence if need be: do not repeat anything already written, do not start over, and add no preamble or comment.";

export type PrefillSetting = "auto" | boolean;
export type ContinueForm = "prefill" | "free";

/** (backend, model) pairs that rejected a final assistant message, per router: prefill-free from then on. */
const learnt = new WeakMap<object, Set<string>>();

function rejectedBy(core: object): Set<string> {
  let s = learnt.get(core);
  if (!s) learnt.set(core, (s = new Set()));
  return s;
}

const pairKey = (tier: TierConfig) => `${tier.backend}\u0000${tier.model}`;

/** Whether `core`'s router has learnt that this tier's model rejects a prefill. */
export function prefillRejected(core: object, tier: TierConfig): boolean {
  return learnt.get(core)?.has(pairKey(tier)) ?? false;
}

/** How a tier continues: the tier's setting, else its backend's; "auto" is prefill until a rejection was learnt. */
export function continueForm(setting: PrefillSetting, rejected: boolean): ContinueForm {
  if (setting === false) return "free";
  if (setting === true) return "prefill";
  return rejected ? "free" : "prefill";
}

/** A 4xx that refuses a conversation ending with the assistant's message (vLLM, llama-server, Anthropic-style and proxy wordings). */
export function isPrefillRejection(status: number, body: string): boolean {
  if (status !== 400 && status !== 422) return false;
  return /prefill|continue_final_message|final assistant|(?:last|final) message|must end with a user|assistant message/i.test(body);
}

/** Parameters of guided (constrained) decoding: a continuation elsewhere would not be held to them. */
const GUIDED_PARAMS = ["guided_json", "guided_regex", "guided_choice", "guided_grammar", "guided_decoding_backend", "structured_outputs", "grammar", "json_schema", "regex"] as const;

/** Why a request's answer cannot be carried to another tier; undefined when it can. */
export function untransferable(endpoint: Endpoint, body: Body): string | undefined {
  if (endpoint !== "chat") return "only chat answers are continued on another tier";
  if (!Array.isArray(body.messages)) return "the request has no messages to continue";
  if (typeof body.n === "number" && body.n > 1) return `the request asked for n = ${body.n} choices, which another tier cannot continue together`;
  if (body.logprobs === true || (typeof body.top_logprobs === "number" && body.top_logprobs > 0)) return "the request asked for logprobs, which another tier cannot give for text it did not generate";
  const rf = body.response_format as { type?: unknown } | undefined;
  if (rf && (rf.type === "json_schema" || rf.type === "json_object")) return `the request uses guided decoding (response_format ${String(rf.type)}), which a continuation would not be held to`;
  const guided = GUIDED_PARAMS.find((p) => body[p] !== undefined && body[p] !== null);
  if (guided) return `the request uses guided decoding (${guided}), which a continuation would not be held to`;
  return undefined;
}

const TOOL_CALL_BREAK = "the stream broke inside a tool call's arguments, which another tier cannot continue";

/** The longest repeat of the partial answer a prefill-free continuation may open with, and the shortest that counts as one. */
const MIN_OVERLAP = 24;
const HOLD_CHARS = 32;

/**
 * Trims what a prefill-free continuation repeated: the whole partial answer when it started over, else
 * the longest tail of it (at least MIN_OVERLAP characters) it opened with. Pure.
 */
export function trimRepeat(before: string, next: string): string {
  if (before !== "" && next.startsWith(before)) return next.slice(before.length);
  for (let k = Math.min(before.length, next.length); k >= MIN_OVERLAP; k--) {
    if (before.endsWith(next.slice(0, k))) return next.slice(k);
  }
  return next;
}

/**
 * The seam of a prefill-free continuation: its first characters are held until they show whether it
 * repeats the partial answer, then go out trimmed; the rest passes through. Pure (state in the object).
 */
export class Seam {
  private held = "";
  private passing: boolean;
  private readonly before: string;

  constructor(before: string, trim: boolean) {
    this.before = before;
    this.passing = !trim;
  }

  /** Text to send now for `text` received. */
  feed(text: string): string {
    if (this.passing) return text;
    this.held += text;
    // Still possibly the partial answer again, or too short to tell: hold on.
    if (this.held.length < HOLD_CHARS || (this.before.startsWith(this.held) && this.held.length <= this.before.length)) return "";
    return this.release();
  }

  /** Whatever is held, trimmed: at the end of the stream. */
  release(): string {
    if (this.passing) return "";
    this.passing = true;
    const out = trimRepeat(this.before, this.held);
    this.held = "";
    return out;
  }
}

interface Usage {
  readonly prompt_tokens?: number;
  readonly completion_tokens?: number;
}

/** A chunk with its first choice's delta content replaced. */
function withContent(c: SseChunk, text: string): SseChunk {
  const [first, ...rest] = c.choices ?? [];
  return { ...c, choices: [{ ...first, delta: { ...first?.delta, content: text } }, ...rest] };
}

/**
 * The client's view of a continuation's chunks: trimmed text at the seam (prefill-free form) and the
 * usage of every tier added up (prompt tokens of the tiers that reported them; completion tokens of a
 * broken tier counted by its output chunks).
 */
export function seamRewriter(seam: Seam, priorCompletion: number): (c: SseChunk) => SseChunk[] {
  return (c) => {
    const choice = c.choices?.[0];
    const text = choice?.delta?.content;
    const hasText = typeof text === "string" && text !== "";
    const finish = choice?.finish_reason != null;
    let keep = hasText ? seam.feed(text) : "";
    if (finish) keep += seam.release();
    let out: SseChunk | undefined = c;
    if (hasText || keep !== "") {
      if (keep !== text) out = keep !== "" || finish ? withContent(c, keep) : undefined;
    }
    const u = c.usage as Usage | null | undefined;
    if (out && u && typeof u === "object" && priorCompletion > 0) {
      const completion = (u.completion_tokens ?? 0) + priorCompletion;
      out = { ...out, usage: { ...u, completion_tokens: completion, total_tokens: (u.prompt_tokens ?? 0) + completion } };
    }
    return out ? [out] : [];
  };
}

/** The request a continuation sends: the conversation and the partial answer, as `form` says. */
export function continuationBody(body: Body, tier: TierConfig, backend: BackendConfig, form: ContinueForm, soFar: string, generated: number): Body {
  const messages = body.messages as unknown[];
  const asked = typeof body.max_tokens === "number" ? body.max_tokens : undefined;
  return adjustForTier(body, tier, {
    messages: form === "prefill" ? [...messages, { role: "assistant", content: soFar }] : [...messages, { role: "assistant", content: soFar }, { role: "user", content: CONTINUE_PROMPT }],
    stream: true,
    ...(asked !== undefined ? { max_tokens: Math.max(1, Math.min(asked - generated, tier.max_tokens ?? Infinity)) } : {}),
    ...(form === "prefill" && backend.kind === "vllm" ? { continue_final_message: true, add_generation_prompt: false } : {}),
  });
}

/**
 * The route's detectors for a continuation's own text: a loop or garbage there is the continuing tier's
 * failure. Not the empty check (a model may rightly add nothing: the answer was all but done) nor the
 * refusal check (it looks at how an answer starts, and this is its middle).
 */
function continuationWatch(ctx: RequestCtx): QualityWatch | undefined {
  const policy = { ...qualityOf(ctx.route), empty: false, refusal_patterns: [] };
  return judges(policy) ? new QualityWatch(policy) : undefined;
}

/**
 * Finishes the answer of a stream that broke after its commit point on tier `failedIndex` (`cause`:
 * how; `detail`: why, in words), or ends it with an error event that says why it could not be.
 */
export async function continueStream(core: Core, ctx: RequestCtx, failedIndex: number, soFar: string, generated: number, detail: string, cause: FailureClass): Promise<void> {
  let from = failedIndex;
  let why = detail;
  const blocked = streamRecord(ctx.res)?.toolCalls ? TOOL_CALL_BREAK : soFar === "" ? "nothing of the answer's text to continue from" : untransferable(ctx.endpoint, ctx.body);
  if (blocked) return endWithStreamError(ctx, `${why}; not continued: ${blocked}`);
  const rejected = rejectedBy(core);
  // Each continuation that got an answer going, or failed trying, on the tier it was asked of (`llmsup_stream_continuations_total`).
  const ended = (to: string, outcome: "continued" | "failed") => core.metrics?.continuation(ctx.route.model, ctx.route.tiers[from]!.backend, to, outcome);
  for (let j = failedIndex + 1; j < ctx.route.tiers.length; j++) {
    const tier = ctx.route.tiers[j]!;
    const backend = core.backends.get(tier.backend)!;
    const g = core.gate(ctx, j);
    // Only a tier that is in service continues: the half-open check is for whole requests.
    if (!g.go || g.halfOpen) continue;
    const setting: PrefillSetting = tier.prefill ?? backend.prefill ?? "auto";
    let form = continueForm(setting, rejected.has(pairKey(tier)));
    // The stream is on this tier's backend while it is asked and relayed (`llmsup drain` counts it), and can be moved off it from there.
    const evacuation = new Cancel();
    const move = (reason: string) => {
      (ctx.movedOff ??= new Set()).add(tier.backend);
      evacuation.abort(reason);
    };
    const release = core.inflight.hold(tier.backend, { request: ctx, route: ctx.route.model, move });
    try {
      // At most two sends per tier: a rejected prefill is asked again at once in the prefill-free form.
      for (let send = 0; send < 2; send++) {
        if (ctx.attempts >= core.config.router.max_attempts || core.clock.now() >= ctx.deadline || ctx.clientGone.aborted) return endWithStreamError(ctx, why);
        if (evacuation.aborted) break;
        ctx.attempts++;
        const body = continuationBody(ctx.body, tier, backend, form, soFar, generated);
        const start = performance.now();
        const up = await core.upstreams.attempt({ backend, tier, path: ENDPOINT_PATHS.chat, body: JSON.stringify(body), stream: true, requestId: ctx.requestId, clientSignal: ctx.clientGone, evacuation, remainingMs: ctx.deadline - core.clock.now() });
        if (up.kind === "failure") {
          if (up.failure === "aborted") return;
          core.fail(ctx, j, classifyTransport(up.failure), up.detail);
          ended(tier.backend, "failed");
          break;
        }
        if (up.status !== 200 || !(header(up.headers, "content-type") ?? "").includes("text/event-stream")) {
          const text = await up.errorText();
          up.done();
          if (evacuation.aborted) {
            core.fail(ctx, j, classifyTransport("evacuated"), String(evacuation.reason));
            ended(tier.backend, "failed");
            break;
          }
          if (form === "prefill" && isPrefillRejection(up.status, text)) {
            // Not the caller's error and not the tier's fault: this model takes no prefill. Ask again without one.
            if (setting === "auto") rejected.add(pairKey(tier));
            form = "free";
            continue;
          }
          const c = up.status === 200 ? classifyTransport("stream_broken") : classifyHttp({ status: up.status, body: text, retryAfter: header(up.headers, "retry-after") }, { now: core.clock.now(), retryAfterMax: core.config.router.retry_after_max, defaultCooldown: core.config.router.breaker.open_interval, retried: true });
          core.fail(ctx, j, c, up.status === 200 ? "a continuation answered without a stream" : `HTTP ${up.status}: ${text.slice(0, 300)}`);
          ended(tier.backend, "failed");
          break;
        }
        // A broken stream's failover, or a moved one's.
        core.failover(ctx, { index: from, backend: ctx.route.tiers[from]!.backend, model: ctx.route.tiers[from]!.model }, { index: j, backend: tier.backend, model: tier.model }, cause === "evacuated" ? cause : "stream_broken", `continued after: ${why}`);
        ctx.res.write(seamComment(j, tier.backend, from, cause, form === "prefill" ? why : `${why} (continued without prefill)`));
        const seam = new Seam(soFar, form === "free");
        const r = await relayStream(ctx.res, up, {
          commit: () => undefined,
          continuing: true,
          ttftLeftMs: tier.ttft_timeout,
          finishGraceMs: Math.min(1_000, tier.idle_timeout),
          startedAt: start,
          rewrite: seamRewriter(seam, generated),
          // The continuation is judged on its own text: a loop or garbage there is this tier's failure, and the next tier continues.
          quality: continuationWatch(ctx),
        });
        if (r.kind === "complete") {
          ended(tier.backend, "continued");
          core.succeed(ctx, j);
          ctx.res.end();
          storeStreamed(core, ctx, j, soFar + r.content);
          return;
        }
        if (r.kind === "client_gone") return;
        core.fail(ctx, j, r.detector ? classifyQuality(r.detector) : classifyTransport(r.failure as TransportClass), r.detail);
        ended(tier.backend, "failed");
        if (r.kind === "broken_after_commit") {
          soFar += r.content;
          generated += r.chunks;
          if (r.toolCalls) return endWithStreamError(ctx, `${r.detail}; not continued: ${TOOL_CALL_BREAK}`);
        }
        from = j;
        why = r.detail;
        cause = r.failure;
        break;
      }
    } finally {
      release();
    }
  }
  endWithStreamError(ctx, why);
}
