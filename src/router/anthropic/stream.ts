/**
 * An Anthropic Messages event stream as OpenAI chat.completion.chunk (or
 * text_completion) SSE, event by event. Pure: state in the object, the
 * events in, OpenAI SSE text out.
 *
 * message_start → the role chunk; text_delta → content; a tool_use block →
 * a tool call's head (id, name), its input_json_delta pieces → the call's
 * arguments, piece by piece; thinking_delta → reasoning_content;
 * message_delta → the finish chunk (and, when asked, the usage chunk);
 * message_stop → [DONE]; ping and block stops → nothing. An `error` event is
 * passed on as an OpenAI error chunk, which the relay takes as the stream
 * breaking. A malformed event is passed on as it came, malformed.
 */
import type { SseItem } from "../sse.ts";
import { finishReason, toOpenAiError, usageOf } from "./response.ts";

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

export interface StreamTarget {
  readonly endpoint: "chat" | "completion";
  /** stream_options.include_usage: a usage chunk (no choices) after the finish chunk. */
  readonly includeUsage: boolean;
  /** Seconds, for the chunks' `created`. */
  readonly created: number;
}

export class MessagesStreamTranslator {
  private readonly t: StreamTarget;
  private id = "";
  private model = "";
  private startUsage: unknown = {};
  /** Anthropic content block index → the OpenAI tool_calls index of the call it carries. */
  private readonly calls = new Map<number, number>();

  constructor(target: StreamTarget) {
    this.t = target;
  }

  private chunk(delta: Json | undefined, finish: string | null, text?: string): string {
    const base = { id: this.id, object: this.t.endpoint === "chat" ? "chat.completion.chunk" : "text_completion", created: this.t.created, model: this.model };
    const choice = this.t.endpoint === "chat" ? { index: 0, delta: delta ?? {}, logprobs: null, finish_reason: finish } : { index: 0, text: text ?? "", logprobs: null, finish_reason: finish };
    return `data: ${JSON.stringify({ ...base, choices: [choice] })}\n\n`;
  }

  private content(text: string): string {
    return this.t.endpoint === "chat" ? this.chunk({ content: text }, null) : this.chunk(undefined, null, text);
  }

  /** The OpenAI SSE text for one item of the upstream's stream ("" when it carries nothing for the client). */
  push(item: SseItem): string {
    if (item.type === "malformed") return item.raw.endsWith("\n\n") ? item.raw : `${item.raw}\n\n`;
    if (item.type !== "data") return "";
    const e = item.json as Json;
    switch (e.type) {
      case "message_start": {
        const m = isObject(e.message) ? e.message : {};
        this.id = String(m.id ?? "");
        this.model = String(m.model ?? "");
        this.startUsage = m.usage;
        return this.t.endpoint === "chat" ? this.chunk({ role: "assistant", content: "" }, null) : "";
      }
      case "content_block_start": {
        const b = isObject(e.content_block) ? e.content_block : {};
        const index = Number(e.index);
        if (b.type === "tool_use" && this.t.endpoint === "chat") {
          const k = this.calls.size;
          this.calls.set(index, k);
          return this.chunk({ tool_calls: [{ index: k, id: String(b.id), type: "function", function: { name: String(b.name), arguments: "" } }] }, null);
        }
        if (b.type === "text" && typeof b.text === "string" && b.text !== "") return this.content(b.text);
        return "";
      }
      case "content_block_delta": {
        const d = isObject(e.delta) ? e.delta : {};
        if (d.type === "text_delta" && typeof d.text === "string" && d.text !== "") return this.content(d.text);
        if (d.type === "input_json_delta" && typeof d.partial_json === "string" && d.partial_json !== "") {
          const k = this.calls.get(Number(e.index));
          return k === undefined ? "" : this.chunk({ tool_calls: [{ index: k, function: { arguments: d.partial_json } }] }, null);
        }
        if (d.type === "thinking_delta" && typeof d.thinking === "string" && d.thinking !== "" && this.t.endpoint === "chat") return this.chunk({ reasoning_content: d.thinking }, null);
        return "";
      }
      case "message_delta": {
        const d = isObject(e.delta) ? e.delta : {};
        if (d.stop_reason === undefined || d.stop_reason === null) return "";
        let out = this.chunk({}, finishReason(d.stop_reason));
        if (this.t.includeUsage) {
          const late = isObject(e.usage) ? e.usage : {};
          const usage = usageOf({ ...(isObject(this.startUsage) ? this.startUsage : {}), ...Object.fromEntries(Object.entries(late).filter(([k]) => k !== "output_tokens")) }, typeof late.output_tokens === "number" ? late.output_tokens : undefined);
          out += `data: ${JSON.stringify({ id: this.id, object: this.t.endpoint === "chat" ? "chat.completion.chunk" : "text_completion", created: this.t.created, model: this.model, choices: [], usage })}\n\n`;
        }
        return out;
      }
      case "message_stop":
        return "data: [DONE]\n\n";
      case "error":
        return `data: ${toOpenAiError(JSON.stringify({ error: e.error }))}\n\n`;
      default:
        // ping, content_block_stop, and event types this router has no use for.
        return "";
    }
  }
}
