/**
 * Writing answers on the wire: OpenAI JSON and SSE, Ollama NDJSON, paced by
 * time-to-first-token and token rate, with the stream faults applied.
 */
import type { ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Fault } from "./faults.ts";

export interface Usage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
}

export interface Generation {
  readonly tokens: readonly string[];
  readonly finishReason: "stop" | "length";
  readonly promptTokens: number;
  readonly ttftMs: number;
  /** Milliseconds between tokens. */
  readonly intervalMs: number;
  readonly fault: Fault;
}

/** Renders one stream's pieces; the runner decides when each is written. */
export interface StreamFormat {
  readonly contentType: string;
  /** Written before the first token (vLLM and llama-server name the role first). */
  first?(): string;
  token(text: string, index: number): string;
  finish(reason: string, usage: Usage): string;
  /** Written after finish unless the no_done fault is on. */
  done?(): string;
  /** A chunk that is not valid for the format. */
  malformed(): string;
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
  const f = g.fault;
  try {
    await wait(f.ttft_ms ?? g.ttftMs, signal);
    if (format.first) res.write(format.first());
    for (let i = 0; i < g.tokens.length; i++) {
      if (i > 0) await wait(g.intervalMs, signal);
      if (f.cut_after !== undefined && i >= f.cut_after) {
        res.socket?.destroy();
        return;
      }
      if (f.stall_after !== undefined && i === f.stall_after) await wait(f.stall_ms ?? FOREVER, signal);
      if (f.malformed_after !== undefined && i === f.malformed_after) res.write(format.malformed());
      res.write(format.token(g.tokens[i]!, i));
    }
    if (f.cut_after === g.tokens.length) {
      res.socket?.destroy();
      return;
    }
    res.write(format.finish(g.finishReason, usageOf(g)));
    if (format.done && !f.no_done) res.write(format.done());
    res.end();
  } catch (e) {
    if ((e as Error).name !== "AbortError") throw e;
  }
}

/** Sends a non-streamed answer after the time the whole generation takes. */
export async function writeWhole(res: ServerResponse, g: Generation, body: () => unknown, signal: AbortSignal, headers: Record<string, string> = {}): Promise<void> {
  const f = g.fault;
  try {
    const total = (f.ttft_ms ?? g.ttftMs) + Math.max(0, g.tokens.length - 1) * g.intervalMs;
    if (f.cut_after !== undefined) {
      await wait((f.ttft_ms ?? g.ttftMs) + f.cut_after * g.intervalMs, signal);
      res.socket?.destroy();
      return;
    }
    if (f.stall_after !== undefined) await wait(f.stall_ms ?? FOREVER, signal);
    await wait(total, signal);
    const text = JSON.stringify(body());
    res.writeHead(200, { "content-type": "application/json", ...headers });
    res.end(f.malformed_after !== undefined ? text.slice(0, Math.max(1, Math.floor(text.length / 2))) : text);
  } catch (e) {
    if ((e as Error).name !== "AbortError") throw e;
  }
}

/** OpenAI chat.completion.chunk SSE. */
export function chatSse(id: string, model: string, created: number, includeUsage: boolean, roleEveryChunk: boolean): StreamFormat {
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
  };
}

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
    contentType: "application/x-ndjson",
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
