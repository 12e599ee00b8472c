/**
 * Writing answers on the wire: whole JSON answers and streams, paced by
 * time-to-first-token and token rate, shaped by the stream faults the fault
 * gate passed on; OpenAI's SSE formats.
 */
import type { ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { AnswerShape, Degrade } from "./fault-gate.ts";

export interface Usage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
}

export interface Generation {
  /** Content tokens; for a tool call, the pieces of its arguments. */
  readonly tokens: readonly string[];
  readonly finishReason: "stop" | "length" | "tool_calls";
  readonly promptTokens: number;
  readonly ttftMs: number;
  /** Milliseconds between tokens. */
  readonly intervalMs: number;
  readonly shape: AnswerShape;
}

/** Renders one stream's pieces; the runner decides when each is written. */
export interface StreamFormat {
  readonly contentType: string;
  /** Written before the first token (vLLM and llama-server name the role first). */
  first?(): string;
  token(text: string, index: number): string;
  finish(reason: string, usage: Usage): string;
  /** Written after finish unless the shape drops it (the no_done fault). */
  done?(): string;
  /** A chunk that is not valid for the format. */
  malformed(): string;
  /** The API's in-stream error event (the error_after fault); the stream ends after it. */
  error?(): string;
}

/** The sentence a refusing model answers with (the `refuse` fault). */
export const REFUSAL_TEXT = "I can't help with that request. If you have another question, I'm happy to try.";
/** Tokens a looping answer runs to without max_tokens; the span it repeats, in tokens. */
export const LOOP_DEFAULT_TOKENS = 240;
export const LOOP_SPAN_TOKENS = 6;

/** Words as tokens, each after the first with its leading space. */
function wordsAsTokens(text: string): string[] {
  return text.split(" ").map((w, i) => (i === 0 ? w : ` ${w}`));
}

/**
 * The answer a model failure makes of a planned one (a tool call's is left alone). Pure. A loop keeps
 * the first `after` tokens, then repeats the next LOOP_SPAN_TOKENS (wrapping round the answer) until
 * `maxTokens`, finishing with "length".
 */
export function degradeAnswer(tokens: readonly string[], finishReason: Generation["finishReason"], degrade: Degrade | undefined, maxTokens: number | undefined): { tokens: readonly string[]; finishReason: Generation["finishReason"] } {
  if (!degrade || finishReason === "tool_calls") return { tokens, finishReason };
  switch (degrade.kind) {
    case "empty":
      return { tokens: [], finishReason: "stop" };
    case "refuse":
      return { tokens: wordsAsTokens(REFUSAL_TEXT), finishReason: "stop" };
    case "garbage":
      return { tokens: Array.from({ length: 24 }, (_, i) => (i % 4 === 3 ? " \uFFFD\uFFFD" : "\uFFFD\uFFFD\uFFFD")), finishReason: "stop" };
    case "loop": {
      const limit = maxTokens ?? LOOP_DEFAULT_TOKENS;
      const head = tokens.slice(0, Math.min(degrade.after, limit));
      const span = Array.from({ length: LOOP_SPAN_TOKENS }, (_, i) => tokens[(degrade.after + i) % Math.max(1, tokens.length)] ?? " again");
      const out = [...head];
      for (let i = 0; out.length < limit; i++) out.push(span[i % span.length]!);
      return { tokens: out, finishReason: "length" };
    }
  }
}

export function usageOf(g: Generation): Usage {
  return { prompt_tokens: g.promptTokens, completion_tokens: g.tokens.length, total_tokens: g.promptTokens + g.tokens.length };
}

export function newId(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString("hex")}`;
}

/** Waits, unless the client went away; then rejects with AbortError. */
function wait(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0) return signal.aborted ? Promise.reject(signal.reason) : Promise.resolve();
  return sleep(ms, undefined, { signal });
}

const FOREVER = 2 ** 31 - 1;

/** Streams a generation; resolves when done, the client left, or the stream was cut. */
export async function writeStream(res: ServerResponse, g: Generation, format: StreamFormat, signal: AbortSignal, headers: Record<string, string> = {}): Promise<void> {
  res.writeHead(200, { "content-type": format.contentType, "cache-control": "no-cache", ...headers });
  res.flushHeaders();
  const s = g.shape;
  try {
    await wait(s.ttftMs ?? g.ttftMs, signal);
    if (format.first) res.write(format.first());
    for (let i = 0; i < g.tokens.length; i++) {
      if (i > 0) await wait(g.intervalMs, signal);
      if (s.cutAfter !== undefined && i >= s.cutAfter) {
        res.socket?.destroy();
        return;
      }
      if (s.stallAfter !== undefined && i === s.stallAfter) await wait(s.stallMs ?? FOREVER, signal);
      if (s.malformedAfter !== undefined && i === s.malformedAfter) res.write(format.malformed());
      if (s.errorAfter !== undefined && i >= s.errorAfter && format.error) {
        res.end(format.error());
        return;
      }
      res.write(format.token(g.tokens[i]!, i));
    }
    if (s.cutAfter === g.tokens.length) {
      res.socket?.destroy();
      return;
    }
    if (s.errorAfter !== undefined && s.errorAfter >= g.tokens.length && format.error) {
      res.end(format.error());
      return;
    }
    res.write(format.finish(g.finishReason, usageOf(g)));
    if (format.done && s.done) res.write(format.done());
    res.end();
  } catch (e) {
    if ((e as Error).name !== "AbortError") throw e;
  }
}

/** Sends a non-streamed answer after the time the whole generation takes. */
export async function writeWhole(res: ServerResponse, g: Generation, body: () => unknown, signal: AbortSignal, headers: Record<string, string> = {}): Promise<void> {
  const s = g.shape;
  try {
    const total = (s.ttftMs ?? g.ttftMs) + Math.max(0, g.tokens.length - 1) * g.intervalMs;
    if (s.cutAfter !== undefined) {
      await wait((s.ttftMs ?? g.ttftMs) + s.cutAfter * g.intervalMs, signal);
      res.socket?.destroy();
      return;
    }
    if (s.stallAfter !== undefined) await wait(s.stallMs ?? FOREVER, signal);
    await wait(total, signal);
    const text = JSON.stringify(body());
    res.writeHead(200, { "content-type": "application/json", ...headers });
    res.end(s.malformedAfter !== undefined ? text.slice(0, Math.max(1, Math.floor(text.length / 2))) : text);
  } catch (e) {
    if ((e as Error).name !== "AbortError") throw e;
  }
}

/** A streamed tool call: its id and function name come first, then the arguments piece by piece. */
export interface ToolCallHead {
  readonly id: string;
  readonly name: string;
}

/** An OpenAI-style error chunk in a stream, as OpenAI-compatible servers send one when generation fails mid-answer. */
const STREAM_ERROR_CHUNK = `data: ${JSON.stringify({ error: { message: "The server had an error while processing the request", type: "server_error", code: 500 } })}\n\n`;

/** OpenAI chat.completion.chunk SSE; with `toolCall`, the tokens are that call's arguments. */
export function chatSse(id: string, model: string, created: number, includeUsage: boolean, roleEveryChunk: boolean, toolCall?: ToolCallHead): StreamFormat {
  const chunk = (delta: unknown, finish: string | null, extra: Record<string, unknown> = {}) =>
    `data: ${JSON.stringify({
      id,
      object: "chat.completion.chunk",
      created,
      model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      ...(includeUsage ? { usage: null } : {}),
      ...extra,
    })}\n\n`;
  if (toolCall) {
    return {
      contentType: "text/event-stream; charset=utf-8",
      first: () => chunk({ role: "assistant", content: null, tool_calls: [{ index: 0, id: toolCall.id, type: "function", function: { name: toolCall.name, arguments: "" } }] }, null),
      token: (text) => chunk({ tool_calls: [{ index: 0, function: { arguments: text } }] }, null),
      finish: (reason, usage) => {
        let out = chunk({}, reason);
        if (includeUsage) out += `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices: [], usage })}\n\n`;
        return out;
      },
      done: () => "data: [DONE]\n\n",
      malformed: () => `data: {"id":"${id}","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":\n\n`,
      error: () => STREAM_ERROR_CHUNK,
    };
  }
  return {
    contentType: "text/event-stream; charset=utf-8",
    first: roleEveryChunk ? undefined : () => chunk({ role: "assistant", content: "" }, null),
    token: (text) => chunk(roleEveryChunk ? { role: "assistant", content: text } : { content: text }, null),
    finish: (reason, usage) => {
      let out = chunk({}, reason);
      if (includeUsage) out += `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices: [], usage })}\n\n`;
      return out;
    },
    done: () => "data: [DONE]\n\n",
    malformed: () => `data: {"id":"${id}","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":\n\n`,
    error: () => STREAM_ERROR_CHUNK,
  };
}

/** OpenAI text_completion SSE. */
export function completionSse(id: string, model: string, created: number, includeUsage: boolean): StreamFormat {
  const chunk = (text: string, finish: string | null) =>
    `data: ${JSON.stringify({ id, object: "text_completion", created, model, choices: [{ index: 0, text, logprobs: null, finish_reason: finish }], ...(includeUsage ? { usage: null } : {}) })}\n\n`;
  return {
    contentType: "text/event-stream; charset=utf-8",
    token: (text) => chunk(text, null),
    finish: (reason, usage) => {
      let out = chunk("", reason);
      if (includeUsage) out += `data: ${JSON.stringify({ id, object: "text_completion", created, model, choices: [], usage })}\n\n`;
      return out;
    },
    done: () => "data: [DONE]\n\n",
    malformed: () => `data: {"id":"${id}","choices":[{"text":\n\n`,
    error: () => STREAM_ERROR_CHUNK,
  };
}
