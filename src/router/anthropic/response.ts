/**
 * Anthropic Messages answers as OpenAI ones: a message as a chat.completion
 * (or text_completion), stop reasons as finish reasons, usage as OpenAI's,
 * and an error body as OpenAI's {"error": {message, type, code}} with the
 * API's words kept (the router's classification reads them). Pure.
 */

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** An Anthropic stop_reason as an OpenAI finish_reason. */
export function finishReason(stop: unknown): string {
  switch (stop) {
    case "max_tokens":
    case "model_context_window_exceeded":
      return "length";
    case "tool_use":
      return "tool_calls";
    case "refusal":
      return "content_filter";
    default:
      // end_turn, stop_sequence, pause_turn.
      return "stop";
  }
}

export interface OpenAiUsage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
}

/** Anthropic usage as OpenAI's: prompt tokens count the cached ones too. */
export function usageOf(u: unknown, outputTokens?: number): OpenAiUsage {
  const x = isObject(u) ? u : {};
  const n = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
  const prompt = n(x.input_tokens) + n(x.cache_creation_input_tokens) + n(x.cache_read_input_tokens);
  const completion = outputTokens ?? n(x.output_tokens);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** A whole Messages answer as an OpenAI chat.completion (`endpoint` "chat") or text_completion ("completion"). */
export function toOpenAiAnswer(msg: Json, endpoint: "chat" | "completion", created: number): Json {
  const blocks = Array.isArray(msg.content) ? msg.content.filter(isObject) : [];
  const text = blocks.filter((b) => b.type === "text").map((b) => String(b.text ?? "")).join("");
  const reasoning = blocks.filter((b) => b.type === "thinking").map((b) => String(b.thinking ?? "")).join("");
  const calls = blocks
    .filter((b) => b.type === "tool_use")
    .map((b) => ({ id: String(b.id), type: "function", function: { name: String(b.name), arguments: JSON.stringify(b.input ?? {}) } }));
  const finish = finishReason(msg.stop_reason);
  const common = { id: String(msg.id ?? ""), created, model: String(msg.model ?? "") };
  if (endpoint === "completion") {
    return { ...common, object: "text_completion", choices: [{ index: 0, text, logprobs: null, finish_reason: finish }], usage: usageOf(msg.usage) };
  }
  const message: Json = { role: "assistant", content: text === "" && calls.length > 0 ? null : text };
  if (calls.length > 0) message.tool_calls = calls;
  if (reasoning !== "") message.reasoning_content = reasoning;
  return { ...common, object: "chat.completion", choices: [{ index: 0, message, logprobs: null, finish_reason: finish }], usage: usageOf(msg.usage) };
}

/** An Anthropic error type as the type word of OpenAI's error body. */
const ERROR_TYPES: Readonly<Record<string, string>> = {
  invalid_request_error: "invalid_request_error",
  authentication_error: "authentication_error",
  permission_error: "permission_error",
  not_found_error: "not_found_error",
  request_too_large: "invalid_request_error",
  rate_limit_error: "rate_limit_exceeded",
  api_error: "server_error",
  overloaded_error: "server_overloaded",
  timeout_error: "timeout",
};

/**
 * An Anthropic error body as OpenAI's, keeping the API's message (the context-length and prefill
 * words the router reads) and its type as the code; a body that is not the API's JSON is kept as the message.
 */
export function toOpenAiError(text: string): string {
  let type = "upstream_error";
  let message = text;
  try {
    const j = JSON.parse(text) as unknown;
    if (isObject(j) && isObject(j.error)) {
      if (typeof j.error.type === "string") type = j.error.type;
      if (typeof j.error.message === "string") message = j.error.message;
    }
  } catch {
    // Not JSON: the text itself is the message.
  }
  return JSON.stringify({ error: { message, type: ERROR_TYPES[type] ?? type, param: null, code: type } });
}
