/**
 * Deterministic answers. The canonical answer to a conversation depends only on
 * its messages, so every simulated tier gives the same text for the same
 * question: a test can tell a complete answer from a truncated one, and an
 * answer continued on another tier from one started afresh.
 */
import { createHash } from "node:crypto";

const VOCABULARY = (
  "the a model answer token stream engine server latency memory cache route tier backend health probe restart budget " +
  "signal window request reply value system graph kernel driver thermal power clock queue batch prompt context " +
  "vector layer weight gradient sample output input result status event metric alert socket channel buffer frame " +
  "steady quick careful simple honest clear brief exact local remote primary fallback ready healthy degraded"
).split(" ");

export interface ChatMessage {
  readonly role: string;
  readonly content: unknown;
}

/** Text of a message's content: a string, or the text parts of a content array. */
export function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((p) => (p && typeof p === "object" && (p as { type?: unknown }).type === "text" ? String((p as { text?: unknown }).text ?? "") : ""))
      .join("");
  }
  return "";
}

function seedOf(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** The canonical answer for a prompt key, as tokens (each token is a word with its leading space). */
export function canonicalTokens(key: string): string[] {
  const seed = seedOf(key);
  const length = 20 + (seed[0]! % 20);
  const tokens: string[] = [];
  for (let i = 0; i < length; i++) {
    const word = VOCABULARY[(seed[(i + 1) % seed.length]! + i * 7 + seed[(i * 3) % seed.length]!) % VOCABULARY.length]!;
    const w = i === 0 ? word[0]!.toUpperCase() + word.slice(1) : word;
    tokens.push(i === 0 ? w : ` ${w}`);
  }
  tokens[tokens.length - 1] += ".";
  return tokens;
}

/** The key a chat conversation is answered by: its messages, roles included. */
export function chatKey(messages: readonly ChatMessage[]): string {
  return messages.map((m) => `${m.role}\u0000${contentText(m.content)}`).join("\u0001");
}

/** Rough token count of a text: words and punctuation runs. */
export function countTokens(text: string): number {
  const m = text.match(/[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu);
  return m ? m.length : 0;
}

export function promptTokensOfChat(messages: readonly ChatMessage[]): number {
  return messages.reduce((n, m) => n + 4 + countTokens(contentText(m.content)), 2);
}

export interface PlannedAnswer {
  /** Tokens to send, in order. */
  readonly tokens: readonly string[];
  readonly finishReason: "stop" | "length";
}

/**
 * What to generate: the canonical tokens after `prefill` (an assistant message
 * being continued), at most `maxTokens` of them.
 */
export function planAnswer(key: string, maxTokens: number | undefined, prefill = ""): PlannedAnswer {
  const all = canonicalTokens(key);
  let rest: string[];
  if (prefill === "") rest = all;
  else {
    const full = all.join("");
    if (full.startsWith(prefill)) {
      // Continue exactly where the prefill stops, even inside a token.
      let offset = 0;
      let i = 0;
      while (i < all.length && offset + all[i]!.length <= prefill.length) offset += all[i++]!.length;
      rest = all.slice(i);
      if (offset < prefill.length && rest.length > 0) rest[0] = rest[0]!.slice(prefill.length - offset);
    } else {
      rest = all.slice(Math.min(all.length, countTokens(prefill)));
    }
  }
  if (maxTokens !== undefined && maxTokens < rest.length) return { tokens: rest.slice(0, Math.max(0, maxTokens)), finishReason: "length" };
  return { tokens: rest, finishReason: "stop" };
}

/**
 * A user turn that asks to go on with the assistant's previous (cut-off) turn, as a router sends when a
 * model cannot continue an assistant message itself. The simulated model follows it exactly: the rest
 * of the canonical answer, nothing repeated.
 */
export function asksToContinue(text: string): boolean {
  return /\bcontinue\b/i.test(text) && /\b(stopped|left off|cut off|broke off)\b/i.test(text);
}

/** The canonical tool call for a prompt key: the first tool's name, and JSON arguments in pieces (the streamed "tokens"). */
export function canonicalToolCall(key: string, tools: readonly unknown[]): { readonly name: string; readonly pieces: string[] } {
  const first = tools[0] as { function?: { name?: unknown } } | undefined;
  const name = typeof first?.function?.name === "string" ? first.function.name : "tool";
  const words = canonicalTokens(key).slice(0, 12).map((w) => w.replace(/[^\p{L}\p{N} ]/gu, ""));
  return { name, pieces: ['{"query": "', ...words, '"}'] };
}

/** A deterministic unit-length embedding of `dims` floats for a text. */
export function embeddingOf(text: string, dims = 16): number[] {
  const seed = seedOf(text);
  const v = Array.from({ length: dims }, (_, i) => (seed[i % seed.length]! - 127.5) / 127.5 + i / (dims * 10));
  const norm = Math.sqrt(v.reduce((a, x) => a + x * x, 0)) || 1;
  return v.map((x) => Math.fround(x / norm));
}

/** Float32 little-endian, base64: OpenAI's `encoding_format: "base64"`. */
export function embeddingBase64(v: readonly number[]): string {
  const buf = Buffer.alloc(v.length * 4);
  v.forEach((x, i) => buf.writeFloatLE(x, i * 4));
  return buf.toString("base64");
}
