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

/** The longest event (its text before the blank line) a reader holds: 1 MiB of characters, far above any real chunk. */
export const MAX_SSE_EVENT = 1024 * 1024;

/** Ends an event: a line end (CRLF, lone CR or LF, the SSE grammar) and a blank line. */
const BOUNDARY = /(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r|\n)/g;
/** How far before the end of the text held a boundary that new text completes can begin (a boundary is at most four characters). */
const REACH = 3;

interface Boundary {
  readonly index: number;
  readonly sep: string;
  /** It ends in a CR at the very end of the text: that CR may be the first half of a CRLF still on its way. */
  readonly waiting: boolean;
}

export class SseReader {
  /** The unfinished event, in the pieces it came in: joined once, when it is finished. */
  private pieces: string[] = [];
  private heldLength = 0;
  /** Its last REACH characters, where a boundary that the next text completes can begin. */
  private tail = "";
  /** A CR was seen: every line end is possible from now on (LF-only streams take the fast path). */
  private cr = false;
  /** An event grew past the limit: the stream is broken and nothing more is read. */
  private over = false;
  /** Keeps a character whose bytes are split between two reads whole. */
  private readonly decoder = new StringDecoder("utf8");
  private readonly maxEvent: number;

  /** `maxEvent`: the longest event, in characters; a longer one is a malformed item and the end of reading. */
  constructor(maxEvent = MAX_SSE_EVENT) {
    this.maxEvent = maxEvent;
  }

  /** Feeds bytes as read from the network (a character may be split between two reads). */
  pushBytes(bytes: Uint8Array): SseItem[] {
    return this.over ? [] : this.push(this.decoder.write(bytes));
  }

  /**
   * Feeds bytes (as text); returns the complete events they finish. Each character is searched for
   * a boundary once (a slow trickle of a long event costs no rescans), and at most `maxEvent`
   * characters are held: an event longer than that, finished or not, comes out as one malformed item
   * saying so, after which the reader reads nothing more. Which events come out never depends on how
   * the text was cut.
   */
  push(text: string): SseItem[] {
    if (this.over || text === "") return [];
    if (!this.cr && text.includes("\r")) this.cr = true;
    // Only the new text, and the few characters held before it, can hold a boundary not yet seen.
    const from = this.heldLength - this.tail.length;
    const window = this.tail + text;
    const first = this.boundary(window, 0);
    if (!first || first.waiting) {
      this.pieces.push(text);
      this.heldLength += text.length;
      this.tail = window.slice(-REACH);
      return this.heldLength > this.maxEvent + REACH ? this.overflow([]) : [];
    }
    // An event ends in this text: what is held is joined, once, and read on from where the window began.
    const buffer = this.pieces.join("") + text;
    const out: SseItem[] = [];
    let at = 0;
    for (let b = this.boundary(buffer, from); b && !b.waiting; b = this.boundary(buffer, at)) {
      if (b.index - at > this.maxEvent) return this.overflow(out);
      const block = buffer.slice(at, b.index);
      const item = parseEvent(block, block + b.sep);
      if (item) out.push(item);
      at = b.index + b.sep.length;
    }
    const rest = buffer.slice(at);
    this.pieces = rest === "" ? [] : [rest];
    this.heldLength = rest.length;
    this.tail = rest.slice(-REACH);
    // The unfinished event is at least its length less a partial boundary (three characters) long.
    return this.heldLength > this.maxEvent + REACH ? this.overflow(out) : out;
  }

  /** The first boundary in `s` at or after `from`. */
  private boundary(s: string, from: number): Boundary | undefined {
    if (!this.cr) {
      // What every server sends in practice: LF line ends, "\n\n" between events.
      const index = s.indexOf("\n\n", from);
      return index < 0 ? undefined : { index, sep: "\n\n", waiting: false };
    }
    BOUNDARY.lastIndex = from;
    const m = BOUNDARY.exec(s);
    return m ? { index: m.index, sep: m[0], waiting: m[0].endsWith("\r") && m.index + m[0].length === s.length } : undefined;
  }

  private overflow(out: SseItem[]): SseItem[] {
    this.over = true;
    this.pieces = [];
    this.heldLength = 0;
    this.tail = "";
    out.push({ type: "malformed", raw: "", error: `an event longer than ${this.maxEvent} characters; llmsup reads at most ${this.maxEvent}` });
    return out;
  }

  /** Characters held: the unfinished event (never more than `maxEvent` and a partial boundary). */
  get held(): number {
    return this.heldLength;
  }

  /** What is left unterminated when the stream ends ("" after an overlong event). */
  rest(): string {
    return this.over ? "" : this.pieces.join("") + this.decoder.end();
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
