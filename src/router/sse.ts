/**
 * An incremental reader of OpenAI-style SSE: splits the byte stream into
 * events, and tells content deltas, finish reasons, [DONE] and malformed
 * chunks apart without re-serialising anything. Pure (state in the object).
 */
import { StringDecoder } from "node:string_decoder";

export type SseItem =
  | { readonly type: "data"; readonly raw: string; readonly json: SseChunk }
  | { readonly type: "done"; readonly raw: string }
  | { readonly type: "malformed"; readonly raw: string; readonly error: string }
  | { readonly type: "other"; readonly raw: string };

export interface SseChunk {
  readonly choices?: readonly { readonly delta?: { readonly content?: unknown; readonly role?: unknown }; readonly text?: unknown; readonly finish_reason?: unknown }[];
  readonly usage?: unknown;
  readonly error?: unknown;
  readonly [k: string]: unknown;
}

export class SseReader {
  private buffer = "";
  /** Keeps a character whose bytes are split between two reads whole. */
  private readonly decoder = new StringDecoder("utf8");

  /** Feeds bytes as read from the network (a character may be split between two reads). */
  pushBytes(bytes: Uint8Array): SseItem[] {
    return this.push(this.decoder.write(bytes));
  }

  /** Feeds bytes (as text); returns the complete events they finish. */
  push(text: string): SseItem[] {
    this.buffer += text;
    const out: SseItem[] = [];
    // What every server sends in practice: LF line ends, "\n\n" between events.
    if (!this.buffer.includes("\r")) {
      let at = 0;
      for (let end = this.buffer.indexOf("\n\n"); end >= 0; end = this.buffer.indexOf("\n\n", at)) {
        const item = parseEvent(this.buffer.slice(at, end), this.buffer.slice(at, end + 2));
        if (item) out.push(item);
        at = end + 2;
      }
      this.buffer = this.buffer.slice(at);
      return out;
    }
    for (;;) {
      // Lines end in CRLF, LF or a lone CR (the SSE grammar); a blank line ends an event.
      const m = /(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r|\n)/.exec(this.buffer);
      if (!m) break;
      // A CR at the very end may be the first half of a CRLF still on its way.
      if (m[0].endsWith("\r") && m.index + m[0].length === this.buffer.length) break;
      const block = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      const item = parseEvent(block, block + m[0]);
      if (item) out.push(item);
    }
    return out;
  }

  /** What is left unterminated when the stream ends. */
  rest(): string {
    return this.buffer + this.decoder.end();
  }
}

function parseEvent(block: string, raw: string): SseItem | undefined {
  let payload: string;
  if (block.startsWith("data:") && !block.includes("\n") && !block.includes("\r")) {
    // One data line: the usual event.
    payload = block.slice(block.startsWith("data: ") ? 6 : 5);
  } else {
    const lines = block.split(/\r\n|\r|\n/);
    const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(l.startsWith("data: ") ? 6 : 5));
    if (data.length === 0) return block.trim() === "" ? undefined : { type: "other", raw };
    payload = data.join("\n");
  }
  if (payload === "[DONE]" || (payload.length < 16 && payload.trim() === "[DONE]")) return { type: "done", raw };
  try {
    const json = JSON.parse(payload) as unknown;
    if (!json || typeof json !== "object") return { type: "malformed", raw, error: "not a JSON object" };
    return { type: "data", raw, json: json as SseChunk };
  } catch (e) {
    return { type: "malformed", raw, error: (e as Error).message };
  }
}

/** The content text a chunk carries (chat delta or completion text), "" if none. */
export function chunkContent(c: SseChunk): string {
  const choice = c.choices?.[0];
  if (!choice) return "";
  const d = choice.delta?.content;
  if (typeof d === "string") return d;
  return typeof choice.text === "string" ? choice.text : "";
}

/** Whether a chunk carries output of any kind: content, a tool call or reasoning. */
export function chunkHasOutput(c: SseChunk): boolean {
  const choice = c.choices?.[0];
  if (!choice) return false;
  const d = choice.delta as Record<string, unknown> | undefined;
  if (d) {
    if (typeof d.content === "string" && d.content !== "") return true;
    if (Array.isArray(d.tool_calls) && d.tool_calls.length > 0) return true;
    if (typeof d.reasoning_content === "string" && d.reasoning_content !== "") return true;
    if (typeof d.reasoning === "string" && d.reasoning !== "") return true;
  }
  return typeof choice.text === "string" && choice.text !== "";
}

/** Whether a chunk carries a piece of a tool call (its head or its arguments). */
export function chunkHasToolCall(c: SseChunk): boolean {
  const d = c.choices?.[0]?.delta as Record<string, unknown> | undefined;
  return !!d && ((Array.isArray(d.tool_calls) && d.tool_calls.length > 0) || (d.function_call != null && typeof d.function_call === "object"));
}

export function chunkFinish(c: SseChunk): string | undefined {
  const f = c.choices?.[0]?.finish_reason;
  return typeof f === "string" ? f : undefined;
}
