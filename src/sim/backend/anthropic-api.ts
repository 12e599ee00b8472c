/**
 * POST /v1/messages of the simulated Anthropic API: the request checked as the
 * real API checks it (key, version, max_tokens, roles, blocks, tools,
 * tool_choice, sampling ranges, tool results that answer a tool use), the
 * server's fault gate, then the deterministic answer (answer.ts) — text or a
 * tool use — whole or as the API's SSE events: message_start, ping,
 * content_block_start / _delta (text_delta, input_json_delta) / _stop,
 * message_delta (stop_reason, usage), message_stop, and an in-stream `error`
 * event (the error_after fault).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import { asksToContinue, canonicalToolCall, chatKey, countTokens, planAnswer, type ChatMessage } from "./answer.ts";
import { echoAuthMessage } from "./fault-gate.ts";
import { degradeAnswer, writeStream, writeWhole, type Generation, type StreamFormat } from "./generate.ts";
import { errorJson, readBody } from "./http.ts";
import type { InferenceHost } from "./inference.ts";
import { PREFILL_REJECTED_MESSAGE } from "./kinds/common.ts";
import { anthropicError, anthropicRequestId, checkHeaders, rejectsPrefill } from "./kinds/anthropic.ts";
import type { Route } from "./kinds/kind.ts";

type Json = Record<string, unknown>;

export type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use";

/** A request the API accepts, as the simulation reads it. */
export interface MessagesRequest {
  readonly model: string;
  readonly maxTokens: number;
  readonly stream: boolean;
  /** The conversation as plain turns (the system prompt first, as a "system" turn), for the canonical answer. */
  readonly conversation: readonly ChatMessage[];
  /** Text of the final assistant turn (a prefill), if the conversation ends with one. */
  readonly prefill?: string;
  /** The last user turn carries tool results (the model then answers in text). */
  readonly answersTool: boolean;
  readonly tools: readonly { readonly name: string }[];
  readonly toolChoice: { readonly type: "auto" | "any" | "tool" | "none"; readonly name?: string };
  readonly stopSequences: readonly string[];
}

const BLOCK_TYPES = new Set(["text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"]);

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** Text of a message's content: a string, or its text blocks. */
function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content.map((b) => (isObject(b) && b.type === "text" && typeof b.text === "string" ? b.text : "")).join("");
}

/** Checks one content block at `where`; returns the problem in the API's words. */
function blockProblem(b: unknown, where: string, role: string): string | undefined {
  if (!isObject(b) || typeof b.type !== "string") return `${where}.type: Field required`;
  if (!BLOCK_TYPES.has(b.type)) return `${where}.type: Input tag '${b.type}' found using 'type' does not match any of the expected tags`;
  switch (b.type) {
    case "text":
      return typeof b.text === "string" ? undefined : `${where}.text: Field required`;
    case "image": {
      const s = b.source;
      if (!isObject(s)) return `${where}.source: Field required`;
      if (s.type === "base64") {
        if (!/^image\/(jpeg|png|gif|webp)$/.test(String(s.media_type))) return `${where}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'`;
        return typeof s.data === "string" && s.data !== "" ? undefined : `${where}.source.base64.data: Field required`;
      }
      if (s.type === "url") return typeof s.url === "string" && /^https?:\/\//.test(s.url) ? undefined : `${where}.source.url.url: Field required`;
      return `${where}.source.type: Input tag '${String(s.type)}' found using 'type' does not match any of the expected tags: 'base64', 'url'`;
    }
    case "tool_use":
      if (role !== "assistant") return `${where}: tool_use blocks can only be in assistant messages`;
      if (typeof b.id !== "string" || typeof b.name !== "string") return `${where}.id: Field required`;
      return isObject(b.input) ? undefined : `${where}.input: Input should be a valid dictionary`;
    case "tool_result":
      if (role !== "user") return `${where}: tool_result blocks can only be in user messages`;
      return typeof b.tool_use_id === "string" ? undefined : `${where}.tool_use_id: Field required`;
    default:
      return undefined;
  }
}

/** Reads and checks a request body as the API does; a problem is a 400 invalid_request_error. */
export function readMessagesRequest(body: Json): MessagesRequest | { readonly problem: string } {
  if (typeof body.model !== "string" || body.model === "") return { problem: "model: Field required" };
  if (body.max_tokens === undefined) return { problem: "max_tokens: Field required" };
  if (!Number.isInteger(body.max_tokens) || (body.max_tokens as number) < 1) return { problem: "max_tokens: Input should be greater than or equal to 1" };
  if (!Array.isArray(body.messages)) return { problem: "messages: Field required" };
  if (body.messages.length === 0) return { problem: "messages: at least one message is required" };
  for (const k of ["temperature", "top_p"] as const) {
    const v = body[k];
    if (v !== undefined && (typeof v !== "number" || v < 0 || v > 1)) return { problem: `${k}: Input should be less than or equal to 1` };
  }
  if (body.top_k !== undefined && (!Number.isInteger(body.top_k) || (body.top_k as number) < 0)) return { problem: "top_k: Input should be a valid integer" };
  let stopSequences: string[] = [];
  if (body.stop_sequences !== undefined) {
    if (!Array.isArray(body.stop_sequences) || !body.stop_sequences.every((s) => typeof s === "string")) return { problem: "stop_sequences: Input should be a valid list of strings" };
    if (body.stop_sequences.some((s) => (s as string).trim() === "")) return { problem: "stop_sequences: each stop sequence must contain non-whitespace" };
    stopSequences = body.stop_sequences as string[];
  }
  let system = "";
  if (typeof body.system === "string") system = body.system;
  else if (Array.isArray(body.system)) {
    for (const [i, b] of body.system.entries()) {
      if (!isObject(b) || b.type !== "text" || typeof b.text !== "string") return { problem: `system.${i}: Input should be a text block` };
    }
    system = textOf(body.system);
  } else if (body.system !== undefined) return { problem: "system: Input should be a valid string or a list of text blocks" };

  // The tool uses of the message before, which a user turn's tool results answer.
  let toolUses = new Set<string>();
  for (const [i, m] of body.messages.entries()) {
    if (!isObject(m)) return { problem: `messages.${i}: Input should be a valid dictionary` };
    if (m.role !== "user" && m.role !== "assistant") return { problem: `messages.${i}.role: Input should be 'user' or 'assistant'` };
    const uses = new Set<string>();
    // Every tool use of the message before is answered by a tool result here.
    const results = new Set(Array.isArray(m.content) ? m.content.filter((b) => isObject(b) && b.type === "tool_result").map((b) => String((b as Json).tool_use_id)) : []);
    const unanswered = [...toolUses].filter((id) => !results.has(id));
    if (unanswered.length > 0) {
      return { problem: `messages.${i}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${unanswered.join(", ")}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.` };
    }
    if (typeof m.content === "string") {
      toolUses = uses;
      continue;
    }
    if (!Array.isArray(m.content)) return { problem: `messages.${i}.content: Input should be a valid string or a list of content blocks` };
    const last = i === body.messages.length - 1;
    if (m.content.length === 0 && !(last && m.role === "assistant")) return { problem: `messages.${i}: all messages must have non-empty content except for the optional final assistant message` };
    for (const [j, b] of m.content.entries()) {
      const p = blockProblem(b, `messages.${i}.content.${j}`, m.role);
      if (p) return { problem: p };
      const block = b as Json;
      if (block.type === "tool_use") uses.add(block.id as string);
      if (block.type === "tool_result" && !toolUses.has(block.tool_use_id as string)) {
        return { problem: `messages.${i}.content.${j}: unexpected \`tool_use_id\` found in \`tool_result\` blocks: ${String(block.tool_use_id)}. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.` };
      }
    }
    toolUses = uses;
  }
  const messages = body.messages as Json[];
  const last = messages[messages.length - 1]!;
  if (last.role === "assistant" && /\s$/.test(textOf(last.content))) return { problem: "messages: final assistant content cannot end with trailing whitespace" };

  const tools: { name: string }[] = [];
  if (body.tools !== undefined) {
    if (!Array.isArray(body.tools)) return { problem: "tools: Input should be a valid list" };
    for (const [i, t] of body.tools.entries()) {
      if (!isObject(t) || typeof t.name !== "string" || !/^[a-zA-Z0-9_-]{1,128}$/.test(t.name)) return { problem: `tools.${i}.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'` };
      if (!isObject(t.input_schema)) return { problem: `tools.${i}.input_schema: Field required` };
      tools.push({ name: t.name });
    }
  }
  let toolChoice: MessagesRequest["toolChoice"] = { type: "auto" };
  if (body.tool_choice !== undefined) {
    const c = body.tool_choice;
    if (!isObject(c) || !["auto", "any", "tool", "none"].includes(String(c.type))) return { problem: "tool_choice: Input tag found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'" };
    if (c.type === "tool" && (typeof c.name !== "string" || !tools.some((t) => t.name === c.name))) return { problem: `tool_choice.name: tool '${String(c.name)}' is not among the tools` };
    if ((c.type === "any" || c.type === "tool") && tools.length === 0) return { problem: "tool_choice: may only be specified while providing tools" };
    toolChoice = { type: c.type as MessagesRequest["toolChoice"]["type"], ...(typeof c.name === "string" ? { name: c.name } : {}) };
  }

  const turns: ChatMessage[] = [...(system !== "" ? [{ role: "system", content: system }] : []), ...messages.map((m) => ({ role: m.role as string, content: textOf(m.content) }))];
  const lastUser = [...messages].reverse().find((m) => m.role === "user");
  const answersTool = Array.isArray(lastUser?.content) && lastUser.content.some((b) => isObject(b) && b.type === "tool_result");
  return {
    model: body.model,
    maxTokens: body.max_tokens as number,
    stream: body.stream === true,
    conversation: turns,
    ...(last.role === "assistant" ? { prefill: textOf(last.content) } : {}),
    answersTool,
    tools,
    toolChoice,
    stopSequences,
  };
}

/** The planned tokens cut at the first stop sequence they contain: the tokens before it, and which one matched. */
export function cutAtStop(tokens: readonly string[], stops: readonly string[]): { tokens: string[]; stop?: string } {
  const text = tokens.join("");
  let at = -1;
  let hit: string | undefined;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) [at, hit] = [i, s];
  }
  if (hit === undefined) return { tokens: [...tokens] };
  const out: string[] = [];
  let offset = 0;
  for (const t of tokens) {
    if (offset + t.length <= at) out.push(t);
    else {
      if (offset < at) out.push(t.slice(0, at - offset));
      break;
    }
    offset += t.length;
  }
  return { tokens: out, stop: hit };
}

const usageOf = (input: number, output: number) => ({ input_tokens: input, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: output, service_tier: "standard" });

const event = (type: string, data: Json) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;

/** The API's SSE events for one answer; with `toolUse`, the tokens are pieces of its input JSON. */
export function messagesSse(id: string, model: string, inputTokens: number, stop: () => { reason: StopReason; sequence: string | null }, toolUse?: { id: string; name: string }): StreamFormat {
  let sent = 0;
  return {
    contentType: "text/event-stream; charset=utf-8",
    first: () =>
      event("message_start", { message: { id, type: "message", role: "assistant", model, content: [], stop_reason: null, stop_sequence: null, usage: usageOf(inputTokens, 1) } }) +
      event("content_block_start", { index: 0, content_block: toolUse ? { type: "tool_use", id: toolUse.id, name: toolUse.name, input: {} } : { type: "text", text: "" } }) +
      event("ping", {}),
    token: (text) => {
      sent++;
      return event("content_block_delta", { index: 0, delta: toolUse ? { type: "input_json_delta", partial_json: text } : { type: "text_delta", text } });
    },
    finish: () => {
      const s = stop();
      return event("content_block_stop", { index: 0 }) + event("message_delta", { delta: { stop_reason: s.reason, stop_sequence: s.sequence }, usage: { output_tokens: sent } });
    },
    done: () => event("message_stop", {}),
    malformed: () => `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":\n\n`,
    error: () => event("error", { error: { type: "overloaded_error", message: "Overloaded" } }),
  };
}

const newId = (prefix: string) => `${prefix}_01${randomBytes(12).toString("base64url").replace(/[-_]/g, "x")}`;

async function serveMessages(h: InferenceHost, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let raw: Buffer;
  try {
    raw = await readBody(req);
  } catch {
    return errorJson(res, anthropicError(413, "Request exceeds the maximum allowed number of bytes."));
  }
  const bad = checkHeaders(req, h.options.apiKey);
  if (bad) return errorJson(res, bad);
  let body: Json;
  try {
    body = JSON.parse(raw.toString("utf8")) as Json;
    if (!isObject(body)) throw new Error("not an object");
  } catch {
    return errorJson(res, anthropicError(400, "There was an issue with the format of the request body: it is not valid JSON"));
  }
  h.stats.requests++;
  h.stats.lastRequest = body;
  const r = readMessagesRequest(body);
  if ("problem" in r) return errorJson(res, anthropicError(400, r.problem));
  if (!h.options.models.includes(r.model)) return errorJson(res, h.spec.unknownModel(r.model)!);

  const admitted = h.gate({ at: "admit", stream: r.stream });
  switch (admitted.act) {
    case "wedge":
      if (admitted.streamHeaders) {
        res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "request-id": anthropicRequestId() });
        res.flushHeaders();
      }
      return;
    case "rate_limit":
      return errorJson(res, anthropicError(429, "This request would exceed the rate limit for your organization of 50 requests per minute. Please reduce the prompt length or the maximum tokens requested, or try again later.", admitted.retryAfter === null ? {} : { "retry-after": String(admitted.retryAfter) }));
    case "status":
      return errorJson(res, h.spec.apiError(admitted.code, admitted.echoAuth ? echoAuthMessage(admitted.message, (req.headers["x-api-key"] as string | undefined) ?? req.headers.authorization) : admitted.message));
    case "oom":
      return h.runtime.runtimeOom(res);
  }

  // A prefill continues the final assistant turn; a user turn asking to go on with a cut-off answer is followed as asked.
  const turns = r.conversation;
  const lastTurn = turns[turns.length - 1];
  const before = turns[turns.length - 2];
  const asked = r.prefill === undefined && lastTurn?.role === "user" && before?.role === "assistant" && asksToContinue(String(lastTurn.content));
  const conversation = r.prefill !== undefined ? turns.slice(0, -1) : asked ? turns.slice(0, -2) : turns;
  const partial = r.prefill ?? (asked ? String(before!.content) : "");
  const key = chatKey(conversation);
  const promptTokens = turns.reduce((n, m) => n + 4 + countTokens(String(m.content)), 2) + r.tools.length * 40;

  const decision = h.gate({ at: "generate", finalAssistant: r.prefill !== undefined });
  if (decision.act === "reject_prefill" || (r.prefill !== undefined && rejectsPrefill(r.model))) return errorJson(res, anthropicError(400, PREFILL_REJECTED_MESSAGE));
  const context = h.options.contextTokens;
  if (decision.act !== "answer" || promptTokens > context) return errorJson(res, h.spec.contextLengthError(promptTokens, r.maxTokens, context));
  if (promptTokens + r.maxTokens > context) {
    return errorJson(res, anthropicError(400, `input length and \`max_tokens\` exceed context limit: ${promptTokens} + ${r.maxTokens} > ${context}, decrease input length or \`max_tokens\` and try again`));
  }

  const toolName = r.toolChoice.type === "none" || r.tools.length === 0 || (r.answersTool && r.toolChoice.type === "auto") ? undefined : (r.toolChoice.name ?? r.tools[0]!.name);
  const call = toolName !== undefined ? canonicalToolCall(key, [{ function: { name: toolName } }]) : undefined;
  let tokens: readonly string[];
  let reason: StopReason;
  let sequence: string | null = null;
  if (call) {
    tokens = call.pieces;
    reason = "tool_use";
  } else {
    const planned = planAnswer(key, r.maxTokens, partial);
    const degraded = degradeAnswer(planned.tokens, planned.finishReason, decision.shape.degrade, r.maxTokens);
    const cut = cutAtStop(degraded.tokens, r.stopSequences);
    tokens = cut.tokens;
    reason = cut.stop !== undefined ? "stop_sequence" : degraded.finishReason === "length" ? "max_tokens" : "end_turn";
    sequence = cut.stop ?? null;
  }
  const g: Generation = {
    tokens,
    finishReason: reason === "tool_use" ? "tool_calls" : reason === "max_tokens" ? "length" : "stop",
    promptTokens,
    ttftMs: h.options.ttftMs,
    intervalMs: 1000 / h.options.tokenRate,
    shape: decision.shape,
  };
  const id = newId("msg");
  const toolUse = call ? { id: newId("toolu"), name: call.name } : undefined;
  const headers = { "request-id": anthropicRequestId() };
  h.stats.running++;
  const abort = new AbortController();
  res.on("close", () => abort.abort());
  try {
    if (r.stream) await writeStream(res, g, messagesSse(id, r.model, promptTokens, () => ({ reason, sequence }), toolUse), abort.signal, headers);
    else {
      await writeWhole(
        res,
        g,
        () => {
          const text = tokens.join("");
          const content = toolUse ? [{ type: "tool_use", id: toolUse.id, name: toolUse.name, input: JSON.parse(text) as unknown }] : text === "" ? [] : [{ type: "text", text }];
          return { id, type: "message", role: "assistant", model: r.model, content, stop_reason: reason, stop_sequence: sequence, usage: usageOf(promptTokens, tokens.length) };
        },
        abort.signal,
        headers,
      );
    }
  } finally {
    h.stats.running--;
  }
  if (!res.destroyed && res.writableFinished !== false) {
    h.stats.promptTokensTotal += promptTokens;
    h.stats.generationTokensTotal += tokens.length;
    h.stats.requestsOk++;
  }
}

export const messagesRoute: Route = { method: "POST", path: "/v1/messages", serve: serveMessages };
