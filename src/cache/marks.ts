/**
 * How an answer from the emergency cache is told apart from a live one: the
 * only place the body marks (`_from_cache`, `_cache_similarity`,
 * `_cache_match`, `_cached_at`, `_notice`) and the notice text are made, for a JSON answer and
 * for a streamed one. Also the reverse: the chat.completion a finished stream
 * is stored as. Pure.
 */
import type { CacheEndpoint } from "./key.ts";

export interface CacheHitInfo {
  readonly similarity: number;
  /** When the answer was given (ms since the epoch). */
  readonly cachedAt: number;
  /** How it matched: "exact", "similar" (words) or "semantic" (meaning); `_cache_match` in the body. */
  readonly match?: "exact" | "similar" | "semantic";
}

export const CACHE_BACKEND = "emergency-cache";

/** The notice sent with a hit (body `_notice`, header `x-llmsup-notice`). */
export function cacheNotice(route: string, hit: CacheHitInfo): string {
  const what =
    hit.similarity >= 1 && hit.match !== "semantic"
      ? "the same question"
      : `a ${hit.match === "semantic" ? "question similar in meaning" : "similar question"} (similarity ${roundSimilarity(hit.similarity).toFixed(3)})`;
  return `Answered from the emergency cache: every tier of ${route} is down. This is the answer to ${what} given at ${new Date(hit.cachedAt).toISOString()}; it may be out of date.`;
}

export function roundSimilarity(s: number): number {
  return Math.floor(Math.max(0, Math.min(1, s)) * 1000) / 1000;
}

const ZERO_USAGE = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };

/**
 * The cached answer with the marks. Usage is zeroed: nothing was generated for
 * this request. `degradedFields` adds `_backend` and `_degraded` as on any
 * degraded answer ([router] degraded_fields).
 */
export function markHit(response: Readonly<Record<string, unknown>>, hit: CacheHitInfo, notice: string, degradedFields: boolean): Record<string, unknown> {
  return {
    ...response,
    ...(response.usage !== undefined ? { usage: ZERO_USAGE } : {}),
    ...(degradedFields ? { _backend: CACHE_BACKEND, _degraded: true } : {}),
    _from_cache: true,
    _cache_similarity: roundSimilarity(hit.similarity),
    ...(hit.match ? { _cache_match: hit.match } : {}),
    _cached_at: new Date(hit.cachedAt).toISOString(),
    _notice: notice,
  };
}

function marksOf(body: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(body).filter(([k]) => k.startsWith("_")));
}

function data(o: unknown): string {
  return `data: ${JSON.stringify(o)}\n\n`;
}

/**
 * A marked answer as the SSE stream a `stream: true` caller expects: per
 * choice, one chunk with the whole text, one with the finish reason; a usage
 * chunk when asked for; [DONE]. Every chunk carries the marks.
 */
export function markedAnswerAsSse(body: Readonly<Record<string, unknown>>, includeUsage: boolean): string {
  const marks = marksOf(body);
  const choices = Array.isArray(body.choices) ? (body.choices as Record<string, unknown>[]) : [];
  const text = body.object === "text_completion";
  const base = { id: body.id, object: text ? "text_completion" : "chat.completion.chunk", created: body.created, model: body.model };
  let out = "";
  choices.forEach((c, i) => {
    const index = typeof c?.index === "number" ? c.index : i;
    if (text) {
      out += data({ ...base, choices: [{ index, text: typeof c?.text === "string" ? c.text : "", logprobs: null, finish_reason: null }], ...marks });
    } else {
      const m = (c?.message ?? {}) as Record<string, unknown>;
      const delta: Record<string, unknown> = { role: "assistant", content: typeof m.content === "string" ? m.content : "" };
      if (Array.isArray(m.tool_calls)) delta.tool_calls = (m.tool_calls as Record<string, unknown>[]).map((t, k) => ({ index: k, ...t }));
      for (const r of ["reasoning_content", "reasoning"]) if (typeof m[r] === "string") delta[r] = m[r];
      out += data({ ...base, choices: [{ index, delta, logprobs: null, finish_reason: null }], ...marks });
    }
    const finish = typeof c?.finish_reason === "string" ? c.finish_reason : "stop";
    out += data({ ...base, choices: [text ? { index, text: "", logprobs: null, finish_reason: finish } : { index, delta: {}, logprobs: null, finish_reason: finish }], ...marks });
  });
  if (includeUsage) out += data({ ...base, choices: [], usage: body.usage ?? ZERO_USAGE, ...marks });
  return `${out}data: [DONE]\n\n`;
}

/** The OpenAI answer a finished stream is stored as: its assembled text as one choice. */
export function answerFromStream(endpoint: CacheEndpoint, content: string, model: string, now: number): Record<string, unknown> {
  const created = Math.floor(now / 1000);
  if (endpoint === "completion") {
    return { id: `cmpl-llmsup-${now.toString(36)}`, object: "text_completion", created, model, choices: [{ index: 0, text: content, logprobs: null, finish_reason: "stop" }] };
  }
  return { id: `chatcmpl-llmsup-${now.toString(36)}`, object: "chat.completion", created, model, choices: [{ index: 0, message: { role: "assistant", content }, logprobs: null, finish_reason: "stop" }] };
}

/** Whether a response is an answer worth keeping: an object with at least one choice that says something. */
export function isAnswer(response: unknown): response is Record<string, unknown> {
  if (!response || typeof response !== "object" || Array.isArray(response)) return false;
  const choices = (response as { choices?: unknown }).choices;
  if (!Array.isArray(choices) || choices.length === 0) return false;
  return choices.every((c) => {
    if (!c || typeof c !== "object") return false;
    const ch = c as { message?: { content?: unknown; tool_calls?: unknown }; text?: unknown };
    if (typeof ch.text === "string") return ch.text !== "";
    const m = ch.message;
    return !!m && ((typeof m.content === "string" && m.content !== "") || (Array.isArray(m.tool_calls) && m.tool_calls.length > 0));
  });
}
