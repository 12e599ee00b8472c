/**
 * The OpenAI-compatible inference endpoints every kind serves: how they read
 * a request and what they answer, whole or as SSE. Kinds differ only in the
 * details their spec declares (how `stream` is read, Ollama's chat chunks).
 */
import { embeddingBase64 } from "./answer.ts";
import { chatSse, completionSse, newId } from "./generate.ts";
import type { EmbeddingApi, GenerationApi, Route } from "./kinds/kind.ts";

const SSE = "text/event-stream; charset=utf-8";

export const openaiChat: GenerationApi = {
  type: "generation",
  chat: true,
  toolCalls: true,
  streamsByDefault: false,
  streamContentType: SSE,
  prompt: () => "",
  stream: (kind, t) => chatSse(newId("chatcmpl"), t.model, t.created, t.includeUsage, kind.openaiChat.roleEveryChunk, t.toolCall),
  whole: (kind, t) => ({
    id: newId("chatcmpl"),
    object: "chat.completion",
    created: t.created,
    model: t.model,
    choices: [
      {
        index: 0,
        message: t.toolCall
          ? { role: "assistant", content: null, tool_calls: [{ id: t.toolCall.id, type: "function", function: { name: t.toolCall.name, arguments: t.text } }] }
          : { role: "assistant", content: t.text, tool_calls: [] },
        logprobs: null,
        finish_reason: t.finishReason,
      },
    ],
    usage: t.usage,
    ...kind.openaiChat.extra,
  }),
};

export const openaiCompletion: GenerationApi = {
  type: "generation",
  chat: false,
  streamsByDefault: false,
  streamContentType: SSE,
  prompt: (body) => (Array.isArray(body.prompt) ? body.prompt.map(String).join("\n") : String(body.prompt ?? "")),
  stream: (_kind, t) => completionSse(newId("cmpl"), t.model, t.created, t.includeUsage),
  whole: (_kind, t) => ({
    id: newId("cmpl"),
    object: "text_completion",
    created: t.created,
    model: t.model,
    choices: [{ index: 0, text: t.text, logprobs: null, finish_reason: t.finishReason }],
    usage: t.usage,
  }),
};

export const openaiEmbedding: EmbeddingApi = {
  type: "embedding",
  streamsByDefault: false,
  streamContentType: SSE,
  answer: (body, model, vectors, tokens) => {
    const base64 = body.encoding_format === "base64";
    return {
      object: "list",
      data: vectors.map((v, index) => ({ object: "embedding", embedding: base64 ? embeddingBase64(v) : v, index })),
      model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  },
};

/** The /v1 inference endpoints, the same on every kind. */
export const OPENAI_INFERENCE_ROUTES: readonly Route[] = [
  { method: "POST", path: "/v1/chat/completions", api: openaiChat },
  { method: "POST", path: "/v1/completions", api: openaiCompletion },
  { method: "POST", path: "/v1/embeddings", api: openaiEmbedding },
];
