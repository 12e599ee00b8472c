/**
 * Ollama's native inference API: /api/chat and /api/generate (NDJSON streams
 * unless told not to; a request with nothing to generate only loads the
 * model) and /api/embed.
 */
import type { StreamFormat, Usage } from "../generate.ts";
import type { EmbeddingApi, GenerationApi, RequestBody } from "./kind.ts";

const NDJSON = "application/x-ndjson";

/** Ollama's native /api/chat and /api/generate NDJSON. */
export function ollamaNdjson(model: string, chat: boolean, startedAt: number): StreamFormat {
  const line = (content: string, done: boolean, extra: Record<string, unknown> = {}) =>
    `${JSON.stringify({
      model,
      created_at: new Date().toISOString(),
      ...(chat ? { message: { role: "assistant", content } } : { response: content }),
      done,
      ...extra,
    })}\n`;
  return {
    contentType: NDJSON,
    token: (text) => line(text, false),
    finish: (reason, usage) => line("", true, ollamaTotals(reason, usage, startedAt)),
    malformed: () => `{"model":"${model}","message":{"role":"assistant","content":\n`,
  };
}

export function ollamaTotals(reason: string, usage: Usage, startedAt: number): Record<string, unknown> {
  const ns = Math.max(1, Math.round((performance.now() - startedAt) * 1e6));
  return {
    done_reason: reason,
    total_duration: ns,
    load_duration: 0,
    prompt_eval_count: usage.prompt_tokens,
    prompt_eval_duration: Math.round(ns / 10),
    eval_count: usage.completion_tokens,
    eval_duration: Math.round((ns * 9) / 10),
  };
}

/** /api/chat or /api/generate. */
function nativeGeneration(chat: boolean): GenerationApi {
  const content = (text: string) => (chat ? { message: { role: "assistant", content: text } } : { response: text });
  return {
    type: "generation",
    chat,
    streamsByDefault: true,
    streamContentType: NDJSON,
    prompt: (body) => String(body.prompt ?? ""),
    warmUp: (body: RequestBody, model: string) => {
      const empty = chat ? Array.isArray(body.messages) && body.messages.length === 0 : !body.prompt;
      if (!empty) return undefined;
      return { model, created_at: new Date().toISOString(), ...content(""), done: true, done_reason: "load" };
    },
    stream: (_kind, t) => ollamaNdjson(t.model, chat, t.started),
    whole: (_kind, t) => ({ model: t.model, created_at: new Date().toISOString(), ...content(t.text), done: true, ...ollamaTotals(t.finishReason, t.usage, t.started) }),
  };
}

export const ollamaChat = nativeGeneration(true);
export const ollamaGenerate = nativeGeneration(false);

export const ollamaEmbed: EmbeddingApi = {
  type: "embedding",
  streamsByDefault: true,
  streamContentType: NDJSON,
  answer: (_body, model, vectors, tokens) => ({ model, embeddings: vectors, total_duration: 1000, load_duration: 0, prompt_eval_count: tokens }),
};
