/**
 * An OpenAI chat (or completion) request as an Anthropic Messages request. Pure.
 *
 * - system and developer messages → `system` (joined, in order);
 * - user turns → text and image blocks (a data: URL becomes a base64 source, an http(s) URL a url source);
 * - assistant turns → text and tool_use blocks (the call's JSON arguments as `input`);
 * - tool messages → tool_result blocks in a user turn;
 * - consecutive turns of one role merged into one (tool results first, as the API wants them);
 * - a final assistant turn (a prefill) without trailing whitespace, which the API refuses;
 * - tools, tool_choice ("auto" / "none" / "required" / a named function), parallel_tool_calls;
 * - stop → stop_sequences, temperature (capped at the API's 1) and top_p, user → metadata.user_id;
 * - max_tokens always set: max_completion_tokens, else max_tokens, else the default given.
 * A completion request's prompt is one user turn.
 */

type Json = Record<string, unknown>;

/** What a tier asks of Anthropic when a request names no max_tokens (the tier's own max_tokens wins, adjust.ts). */
export const DEFAULT_MAX_TOKENS = 4096;

export type Translated = { readonly ok: true; readonly body: Json } | { readonly ok: false; readonly problem: string };

type Block = Json;
interface Turn {
  role: "user" | "assistant";
  blocks: Block[];
}

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** The text of an OpenAI message's content: a string, or its text parts. */
function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content.map((p) => (isObject(p) && p.type === "text" && typeof p.text === "string" ? p.text : "")).join("");
}

/** An image_url part as an image block: base64 from a data: URL, else a url source. */
export function imageBlock(url: string): Block | { problem: string } {
  const data = /^data:(image\/[a-z0-9.+-]+);base64,(.*)$/is.exec(url);
  if (data) return { type: "image", source: { type: "base64", media_type: data[1]!.toLowerCase(), data: data[2]! } };
  if (/^https?:\/\//i.test(url)) return { type: "image", source: { type: "url", url } };
  return { problem: "an image_url must be a data: URL with base64 image data or an http(s) URL" };
}

/** A user message's content as blocks. */
function userBlocks(content: unknown, at: number): Block[] | { problem: string } {
  if (typeof content === "string") return content === "" ? [] : [{ type: "text", text: content }];
  if (!Array.isArray(content)) return { problem: `messages[${at}].content: expected a string or an array of content parts` };
  const out: Block[] = [];
  for (const p of content) {
    if (!isObject(p)) return { problem: `messages[${at}].content: expected content parts` };
    if (p.type === "text") {
      if (typeof p.text === "string" && p.text !== "") out.push({ type: "text", text: p.text });
    } else if (p.type === "image_url") {
      const url = isObject(p.image_url) ? p.image_url.url : p.image_url;
      if (typeof url !== "string") return { problem: `messages[${at}].content: an image_url part without a url` };
      const b = imageBlock(url);
      if ("problem" in b) return { problem: `messages[${at}].content: ${String(b.problem)}` };
      out.push(b);
    } else return { problem: `messages[${at}].content: a ${String(p.type)} part cannot be sent to an Anthropic model` };
  }
  return out;
}

/** A tool call's JSON arguments as the tool_use block's input object. */
function toolInput(args: unknown): Json | undefined {
  if (isObject(args)) return args;
  if (typeof args !== "string" || args.trim() === "") return {};
  try {
    const v = JSON.parse(args) as unknown;
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function assistantBlocks(m: Json, at: number): Block[] | { problem: string } {
  const text = textOf(m.content);
  const out: Block[] = text !== "" ? [{ type: "text", text }] : [];
  if (Array.isArray(m.tool_calls)) {
    for (const c of m.tool_calls) {
      if (!isObject(c) || !isObject(c.function) || typeof c.function.name !== "string") return { problem: `messages[${at}].tool_calls: expected function calls with a name` };
      const input = toolInput(c.function.arguments);
      if (!input) return { problem: `messages[${at}].tool_calls: the arguments of ${c.function.name} are not a JSON object` };
      out.push({ type: "tool_use", id: typeof c.id === "string" ? c.id : `call_${at}_${out.length}`, name: c.function.name, input });
    }
  }
  return out;
}

/** Turns of one role in a row made one; in a user turn, tool results come before anything else. */
function merge(turns: readonly Turn[]): Turn[] {
  const out: Turn[] = [];
  for (const t of turns) {
    const prev = out[out.length - 1];
    if (prev && prev.role === t.role) prev.blocks.push(...t.blocks);
    else out.push({ role: t.role, blocks: [...t.blocks] });
  }
  for (const t of out) {
    if (t.role === "user") t.blocks = [...t.blocks.filter((b) => b.type === "tool_result"), ...t.blocks.filter((b) => b.type !== "tool_result")];
  }
  return out;
}

/** A turn's content: a string when it is text alone (the usual shape), else its blocks. */
function content(t: Turn): unknown {
  return t.blocks.length === 1 && t.blocks[0]!.type === "text" ? t.blocks[0]!.text : t.blocks;
}

function toolsOf(tools: unknown): Json[] | { problem: string } {
  if (!Array.isArray(tools)) return { problem: "tools: expected an array" };
  const out: Json[] = [];
  for (const t of tools) {
    if (!isObject(t) || t.type !== "function" || !isObject(t.function) || typeof t.function.name !== "string") return { problem: "tools: only function tools can be sent to an Anthropic model" };
    const f = t.function;
    out.push({ name: f.name, ...(typeof f.description === "string" ? { description: f.description } : {}), input_schema: isObject(f.parameters) ? f.parameters : { type: "object", properties: {} } });
  }
  return out;
}

function toolChoiceOf(choice: unknown, parallel: unknown): Json | undefined | { problem: string } {
  const single = parallel === false ? { disable_parallel_tool_use: true } : {};
  if (choice === undefined || choice === null) return parallel === false ? { type: "auto", ...single } : undefined;
  if (choice === "auto") return { type: "auto", ...single };
  if (choice === "none") return { type: "none" };
  if (choice === "required") return { type: "any", ...single };
  if (isObject(choice) && isObject(choice.function) && typeof choice.function.name === "string") return { type: "tool", name: choice.function.name, ...single };
  return { problem: 'tool_choice: expected "auto", "none", "required" or a named function' };
}

/** The Messages request for an OpenAI chat request (`endpoint` "chat") or completion request ("completion"). */
export function toMessagesRequest(body: Json, endpoint: "chat" | "completion", defaultMaxTokens = DEFAULT_MAX_TOKENS): Translated {
  if (typeof body.n === "number" && body.n > 1) return { ok: false, problem: `n = ${body.n}: an Anthropic model gives one answer per request` };
  const system: string[] = [];
  const turns: Turn[] = [];
  if (endpoint === "completion") {
    const prompt = Array.isArray(body.prompt) ? body.prompt.map(String).join("\n") : String(body.prompt ?? "");
    turns.push({ role: "user", blocks: [{ type: "text", text: prompt }] });
  } else {
    if (!Array.isArray(body.messages)) return { ok: false, problem: "messages: expected an array" };
    for (const [i, raw] of body.messages.entries()) {
      if (!isObject(raw)) return { ok: false, problem: `messages[${i}]: expected an object` };
      const m = raw;
      switch (m.role) {
        case "system":
        case "developer": {
          const t = textOf(m.content);
          if (t !== "") system.push(t);
          break;
        }
        case "user": {
          const b = userBlocks(m.content, i);
          if ("problem" in b) return { ok: false, problem: b.problem };
          if (b.length > 0) turns.push({ role: "user", blocks: b });
          break;
        }
        case "assistant": {
          const b = assistantBlocks(m, i);
          if ("problem" in b) return { ok: false, problem: b.problem };
          if (b.length > 0) turns.push({ role: "assistant", blocks: b });
          break;
        }
        case "tool":
          if (typeof m.tool_call_id !== "string") return { ok: false, problem: `messages[${i}]: a tool message needs its tool_call_id` };
          turns.push({ role: "user", blocks: [{ type: "tool_result", tool_use_id: m.tool_call_id, content: textOf(m.content) }] });
          break;
        default:
          return { ok: false, problem: `messages[${i}].role: ${JSON.stringify(m.role)} cannot be sent to an Anthropic model` };
      }
    }
  }
  const merged = merge(turns);
  // A prefill: the API refuses a final assistant turn that ends in whitespace.
  const last = merged[merged.length - 1];
  if (last?.role === "assistant") {
    const b = last.blocks[last.blocks.length - 1]!;
    if (b.type === "text") {
      b.text = String(b.text).trimEnd();
      if (b.text === "") last.blocks.pop();
      if (last.blocks.length === 0) merged.pop();
    }
  }
  if (merged.length === 0) return { ok: false, problem: "messages: nothing to send but a system prompt" };

  const out: Json = {
    model: body.model,
    max_tokens: typeof body.max_completion_tokens === "number" ? body.max_completion_tokens : typeof body.max_tokens === "number" ? body.max_tokens : defaultMaxTokens,
    messages: merged.map((t) => ({ role: t.role, content: content(t) })),
  };
  if (system.length > 0) out.system = system.join("\n\n");
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    const tools = toolsOf(body.tools);
    if ("problem" in tools) return { ok: false, problem: tools.problem };
    out.tools = tools;
  }
  const choice = toolChoiceOf(body.tool_choice, body.parallel_tool_calls);
  if (choice && "problem" in choice) return { ok: false, problem: String(choice.problem) };
  if (choice && out.tools) out.tool_choice = choice;
  const stop = typeof body.stop === "string" ? [body.stop] : Array.isArray(body.stop) ? body.stop.filter((s): s is string => typeof s === "string") : [];
  const stops = stop.filter((s) => s.trim() !== "");
  if (stops.length > 0) out.stop_sequences = stops;
  if (typeof body.temperature === "number") out.temperature = Math.min(1, Math.max(0, body.temperature));
  if (typeof body.top_p === "number") out.top_p = body.top_p;
  if (typeof body.user === "string" && body.user !== "") out.metadata = { user_id: body.user };
  if (body.stream === true) out.stream = true;
  return { ok: true, body: out };
}

/** Whether the client asked for a final usage chunk in its stream. */
export function wantsStreamUsage(body: Json): boolean {
  return isObject(body.stream_options) && body.stream_options.include_usage === true;
}
