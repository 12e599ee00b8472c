/** OpenAI requests as Anthropic Messages requests, and Messages answers, streams and errors back as OpenAI's: the pure translation of an Anthropic tier. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { imageBlock, toMessagesRequest, DEFAULT_MAX_TOKENS } from "../../src/router/anthropic/request.ts";
import { finishReason, toOpenAiAnswer, toOpenAiError, usageOf } from "../../src/router/anthropic/response.ts";
import { MessagesStreamTranslator, type StreamTarget } from "../../src/router/anthropic/stream.ts";
import { messagesExchange } from "../../src/router/anthropic/wire.ts";
import { classifyHttp } from "../../src/router/classify.ts";
import { isPrefillRejection } from "../../src/router/continuation.ts";
import { SseReader } from "../../src/router/sse.ts";
import { authHeaders } from "../../src/health/api-key.ts";

const ok = (r: ReturnType<typeof toMessagesRequest>) => {
  assert.ok(r.ok, r.ok ? "" : r.problem);
  return r.body;
};

test("system and developer messages become the system prompt; multi-turn keeps its order; max_tokens comes from max_completion_tokens, max_tokens or the default", () => {
  const b = ok(
    toMessagesRequest(
      {
        model: "claude-sonnet-4-5",
        messages: [
          { role: "system", content: "be brief" },
          { role: "developer", content: [{ type: "text", text: "answer in English" }] },
          { role: "user", content: "hi" },
          { role: "assistant", content: "hello" },
          { role: "user", content: "more" },
        ],
        max_completion_tokens: 77,
        max_tokens: 5,
      },
      "chat",
    ),
  );
  assert.deepEqual(b, {
    model: "claude-sonnet-4-5",
    max_tokens: 77,
    system: "be brief\n\nanswer in English",
    messages: [
      { role: "user", content: "hi" },
      { role: "assistant", content: "hello" },
      { role: "user", content: "more" },
    ],
  });
  assert.equal(ok(toMessagesRequest({ model: "m", messages: [{ role: "user", content: "x" }], max_tokens: 9 }, "chat")).max_tokens, 9);
  assert.equal(ok(toMessagesRequest({ model: "m", messages: [{ role: "user", content: "x" }] }, "chat")).max_tokens, DEFAULT_MAX_TOKENS);
  assert.equal(ok(toMessagesRequest({ model: "m", messages: [{ role: "user", content: "x" }] }, "chat", 300)).max_tokens, 300);
});

test("tools, tool_choice (auto, none, required, named, no parallel calls), tool calls and tool results", () => {
  const tools = [{ type: "function", function: { name: "lookup", description: "find", parameters: { type: "object", properties: { q: { type: "string" } } } } }];
  const base = { model: "m", messages: [{ role: "user", content: "x" }], tools };
  const choice = (tool_choice: unknown, extra = {}) => ok(toMessagesRequest({ ...base, tool_choice, ...extra }, "chat")).tool_choice;
  assert.deepEqual(ok(toMessagesRequest(base, "chat")).tools, [{ name: "lookup", description: "find", input_schema: { type: "object", properties: { q: { type: "string" } } } }]);
  assert.deepEqual(choice("auto"), { type: "auto" });
  assert.deepEqual(choice("none"), { type: "none" });
  assert.deepEqual(choice("required"), { type: "any" });
  assert.deepEqual(choice({ type: "function", function: { name: "lookup" } }), { type: "tool", name: "lookup" });
  assert.deepEqual(choice("required", { parallel_tool_calls: false }), { type: "any", disable_parallel_tool_use: true });
  assert.deepEqual(choice(undefined, { parallel_tool_calls: false }), { type: "auto", disable_parallel_tool_use: true });
  assert.equal(choice(undefined), undefined);
  assert.equal(toMessagesRequest({ ...base, tool_choice: "sometimes" }, "chat").ok, false);

  const b = ok(
    toMessagesRequest(
      {
        model: "m",
        tools,
        messages: [
          { role: "user", content: "find two" },
          { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "lookup", arguments: '{"q":"a"}' } }, { id: "call_2", type: "function", function: { name: "lookup", arguments: '{"q":"b"}' } }] },
          { role: "tool", tool_call_id: "call_1", content: "A" },
          { role: "tool", tool_call_id: "call_2", content: [{ type: "text", text: "B" }] },
          { role: "user", content: "thanks" },
        ],
      },
      "chat",
    ),
  );
  assert.deepEqual(b.messages, [
    { role: "user", content: "find two" },
    { role: "assistant", content: [{ type: "tool_use", id: "call_1", name: "lookup", input: { q: "a" } }, { type: "tool_use", id: "call_2", name: "lookup", input: { q: "b" } }] },
    {
      role: "user",
      content: [
        { type: "tool_result", tool_use_id: "call_1", content: "A" },
        { type: "tool_result", tool_use_id: "call_2", content: "B" },
        { type: "text", text: "thanks" },
      ],
    },
  ]);
  const badArgs = toMessagesRequest({ model: "m", messages: [{ role: "assistant", tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "[1" } }] }] }, "chat");
  assert.equal(badArgs.ok, false);
});

test("image_url parts: a data URL becomes a base64 source, an http URL a url source, anything else is refused", () => {
  assert.deepEqual(imageBlock("data:image/png;base64,iVBORw0KGgo="), { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } });
  assert.deepEqual(imageBlock("https://example.com/cat.jpg"), { type: "image", source: { type: "url", url: "https://example.com/cat.jpg" } });
  assert.ok("problem" in imageBlock("ftp://example.com/cat.jpg"));
  const b = ok(toMessagesRequest({ model: "m", messages: [{ role: "user", content: [{ type: "text", text: "what is it?" }, { type: "image_url", image_url: { url: "https://example.com/cat.jpg", detail: "high" } }] }] }, "chat"));
  assert.deepEqual(b.messages, [{ role: "user", content: [{ type: "text", text: "what is it?" }, { type: "image", source: { type: "url", url: "https://example.com/cat.jpg" } }] }]);
  assert.equal(toMessagesRequest({ model: "m", messages: [{ role: "user", content: [{ type: "input_audio", input_audio: {} }] }] }, "chat").ok, false);
});

test("stop becomes stop_sequences (whitespace-only ones dropped), temperature is capped at 1, top_p, stream and user are carried; a prefill loses its trailing whitespace; a completion's prompt is one user turn", () => {
  const b = ok(toMessagesRequest({ model: "m", messages: [{ role: "user", content: "x" }, { role: "assistant", content: "The answer is  \n" }], stop: ["END", " "], temperature: 1.7, top_p: 0.5, stream: true, user: "u-1" }, "chat"));
  assert.deepEqual(b.stop_sequences, ["END"]);
  assert.equal(b.temperature, 1);
  assert.equal(b.top_p, 0.5);
  assert.equal(b.stream, true);
  assert.deepEqual(b.metadata, { user_id: "u-1" });
  assert.deepEqual((b.messages as unknown[])[1], { role: "assistant", content: "The answer is" });
  assert.deepEqual(ok(toMessagesRequest({ model: "m", messages: [{ role: "user", content: "x" }], stop: "STOP" }, "chat")).stop_sequences, ["STOP"]);
  assert.deepEqual(ok(toMessagesRequest({ model: "m", prompt: "Once upon", max_tokens: 3 }, "completion")).messages, [{ role: "user", content: "Once upon" }]);
  assert.equal(toMessagesRequest({ model: "m", messages: [{ role: "user", content: "x" }], n: 2 }, "chat").ok, false);
});

test("a whole answer: text, tool calls with JSON arguments, finish reasons and usage in OpenAI's shape", () => {
  const a = toOpenAiAnswer(
    { id: "msg_1", type: "message", role: "assistant", model: "claude-sonnet-4-5", content: [{ type: "text", text: "Hello" }], stop_reason: "end_turn", usage: { input_tokens: 10, cache_read_input_tokens: 5, output_tokens: 3 } },
    "chat",
    1000,
  );
  assert.deepEqual(a, {
    id: "msg_1",
    object: "chat.completion",
    created: 1000,
    model: "claude-sonnet-4-5",
    choices: [{ index: 0, message: { role: "assistant", content: "Hello" }, logprobs: null, finish_reason: "stop" }],
    usage: { prompt_tokens: 15, completion_tokens: 3, total_tokens: 18 },
  });
  const t = toOpenAiAnswer({ id: "msg_2", model: "m", content: [{ type: "tool_use", id: "toolu_1", name: "lookup", input: { q: "a" } }], stop_reason: "tool_use", usage: {} }, "chat", 1);
  assert.deepEqual((t.choices as { message: unknown; finish_reason: string }[])[0], { index: 0, message: { role: "assistant", content: null, tool_calls: [{ id: "toolu_1", type: "function", function: { name: "lookup", arguments: '{"q":"a"}' } }] }, logprobs: null, finish_reason: "tool_calls" });
  assert.deepEqual(toOpenAiAnswer({ id: "x", model: "m", content: [{ type: "text", text: "Once" }], stop_reason: "max_tokens" }, "completion", 1).choices, [{ index: 0, text: "Once", logprobs: null, finish_reason: "length" }]);
  assert.deepEqual(["end_turn", "stop_sequence", "max_tokens", "tool_use", "refusal", "pause_turn"].map(finishReason), ["stop", "stop", "length", "tool_calls", "content_filter", "stop"]);
  assert.deepEqual(usageOf({ input_tokens: 2, output_tokens: 9 }, 4), { prompt_tokens: 2, completion_tokens: 4, total_tokens: 6 });
});

test("errors keep the API's words in OpenAI's shape, and classify as every tier's do: 529 and 500 retry then fall over, 429 cools down by retry-after, prompt too long is the context class, a prefill refusal is recognised", () => {
  const overloaded = toOpenAiError('{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}');
  assert.deepEqual(JSON.parse(overloaded), { error: { message: "Overloaded", type: "server_overloaded", param: null, code: "overloaded_error" } });
  assert.deepEqual(JSON.parse(toOpenAiError("<html>bad gateway</html>")).error.message, "<html>bad gateway</html>");
  const opts = { now: 0, retryAfterMax: 300_000, defaultCooldown: 30_000, retried: false };
  assert.equal(classifyHttp({ status: 529, body: overloaded }, opts).action.kind, "retry_same_tier");
  assert.equal(classifyHttp({ status: 529, body: overloaded }, { ...opts, retried: true }).action.kind, "next_tier");
  assert.equal(classifyHttp({ status: 500, body: toOpenAiError('{"type":"error","error":{"type":"api_error","message":"Internal server error"}}') }, opts).class, "server_error");
  const limited = classifyHttp({ status: 429, body: toOpenAiError('{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'), retryAfter: "7" }, opts);
  assert.deepEqual([limited.class, limited.action], ["rate_limited", { kind: "cooldown", ms: 7_000 }]);
  const long = toOpenAiError('{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}');
  assert.equal(classifyHttp({ status: 400, body: long }, opts).class, "context_length");
  const prefill = toOpenAiError('{"type":"error","error":{"type":"invalid_request_error","message":"This model does not support assistant message prefill. The conversation must end with a user message."}}');
  assert.equal(isPrefillRejection(400, prefill), true);
  assert.equal(classifyHttp({ status: 400, body: toOpenAiError('{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}') }, opts).class, "client_error");
  assert.equal(classifyHttp({ status: 401, body: toOpenAiError('{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}') }, opts).class, "misconfigured");
});

/** Feeds Anthropic SSE text through a translator, cut at `cut`, and returns the OpenAI data payloads. */
function translate(sse: string, target: StreamTarget = { endpoint: "chat", includeUsage: true, created: 5 }, cut = 7): string[] {
  const reader = new SseReader();
  const tr = new MessagesStreamTranslator(target);
  let out = "";
  for (let i = 0; i < sse.length; i += cut) for (const item of reader.push(sse.slice(i, i + cut))) out += tr.push(item);
  return out
    .split("\n\n")
    .filter((l) => l !== "")
    .map((l) => l.replace(/^data: /, ""));
}

const ev = (type: string, data: Record<string, unknown> = {}) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;

test("a text stream: the role chunk, one content chunk per text_delta, the finish chunk, the usage chunk when asked, [DONE]; ping is dropped", () => {
  const sse =
    ev("message_start", { message: { id: "msg_9", model: "claude-sonnet-4-5", usage: { input_tokens: 12, output_tokens: 1 } } }) +
    ev("content_block_start", { index: 0, content_block: { type: "text", text: "" } }) +
    ev("ping") +
    ev("content_block_delta", { index: 0, delta: { type: "text_delta", text: "Hel" } }) +
    ev("content_block_delta", { index: 0, delta: { type: "text_delta", text: "lo" } }) +
    ev("content_block_stop", { index: 0 }) +
    ev("message_delta", { delta: { stop_reason: "max_tokens", stop_sequence: null }, usage: { output_tokens: 2 } }) +
    ev("message_stop");
  const out = translate(sse);
  assert.equal(out[out.length - 1], "[DONE]");
  const chunks = out.slice(0, -1).map((c) => JSON.parse(c) as { id: string; object: string; model: string; choices: { delta?: Record<string, unknown>; finish_reason: string | null }[]; usage?: unknown });
  assert.deepEqual(
    chunks.map((c) => [c.choices[0]?.delta, c.choices[0]?.finish_reason ?? null]),
    [
      [{ role: "assistant", content: "" }, null],
      [{ content: "Hel" }, null],
      [{ content: "lo" }, null],
      [{}, "length"],
      [undefined, null],
    ],
  );
  assert.deepEqual(chunks[4]!.usage, { prompt_tokens: 12, completion_tokens: 2, total_tokens: 14 });
  assert.ok(chunks.every((c) => c.id === "msg_9" && c.object === "chat.completion.chunk" && c.model === "claude-sonnet-4-5"));
  assert.equal(translate(sse, { endpoint: "chat", includeUsage: false, created: 5 }).filter((c) => c.includes('"usage"')).length, 0, "no usage chunk unless asked");
  const completion = translate(sse, { endpoint: "completion", includeUsage: false, created: 5 }).slice(0, -1).map((c) => JSON.parse(c) as { object: string; choices: { text: string }[] });
  assert.deepEqual(completion.map((c) => [c.object, c.choices[0]!.text]), [["text_completion", "Hel"], ["text_completion", "lo"], ["text_completion", ""]]);
});

test("a tool-use stream: text, then each tool call's head and its arguments piece by piece, finish_reason tool_calls", () => {
  const sse =
    ev("message_start", { message: { id: "msg_t", model: "m", usage: { input_tokens: 3 } } }) +
    ev("content_block_start", { index: 0, content_block: { type: "text", text: "" } }) +
    ev("content_block_delta", { index: 0, delta: { type: "text_delta", text: "Looking." } }) +
    ev("content_block_stop", { index: 0 }) +
    ev("content_block_start", { index: 1, content_block: { type: "tool_use", id: "toolu_1", name: "lookup", input: {} } }) +
    ev("content_block_delta", { index: 1, delta: { type: "input_json_delta", partial_json: "" } }) +
    ev("content_block_delta", { index: 1, delta: { type: "input_json_delta", partial_json: '{"q": ' } }) +
    ev("content_block_delta", { index: 1, delta: { type: "input_json_delta", partial_json: '"a"}' } }) +
    ev("content_block_stop", { index: 1 }) +
    ev("content_block_start", { index: 2, content_block: { type: "tool_use", id: "toolu_2", name: "other", input: {} } }) +
    ev("content_block_delta", { index: 2, delta: { type: "input_json_delta", partial_json: "{}" } }) +
    ev("content_block_stop", { index: 2 }) +
    ev("message_delta", { delta: { stop_reason: "tool_use" }, usage: { output_tokens: 20 } }) +
    ev("message_stop");
  const deltas = translate(sse, { endpoint: "chat", includeUsage: false, created: 1 })
    .slice(0, -1)
    .map((c) => JSON.parse(c) as { choices: { delta: Record<string, unknown>; finish_reason: string | null }[] })
    .map((c) => [c.choices[0]!.delta, c.choices[0]!.finish_reason]);
  assert.deepEqual(deltas, [
    [{ role: "assistant", content: "" }, null],
    [{ content: "Looking." }, null],
    [{ tool_calls: [{ index: 0, id: "toolu_1", type: "function", function: { name: "lookup", arguments: "" } }] }, null],
    [{ tool_calls: [{ index: 0, function: { arguments: '{"q": ' } }] }, null],
    [{ tool_calls: [{ index: 0, function: { arguments: '"a"}' } }] }, null],
    [{ tool_calls: [{ index: 1, id: "toolu_2", type: "function", function: { name: "other", arguments: "" } }] }, null],
    [{ tool_calls: [{ index: 1, function: { arguments: "{}" } }] }, null],
    [{}, "tool_calls"],
  ]);
});

test("an in-stream error event becomes an OpenAI error chunk (the relay's broken stream); a malformed event stays malformed", () => {
  const out = translate(ev("message_start", { message: { id: "m", model: "m" } }) + ev("content_block_delta", { index: 0, delta: { type: "text_delta", text: "Hi" } }) + ev("error", { error: { type: "overloaded_error", message: "Overloaded" } }));
  assert.deepEqual(JSON.parse(out[2]!), { error: { message: "Overloaded", type: "server_overloaded", param: null, code: "overloaded_error" } });
  const reader = new SseReader();
  const tr = new MessagesStreamTranslator({ endpoint: "chat", includeUsage: false, created: 1 });
  const broken = reader.push('event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":\n\n').map((i) => tr.push(i)).join("");
  assert.deepEqual(new SseReader().push(broken).map((i) => i.type), ["malformed"]);
});

test("the exchange: the request goes as a Messages body; a whole answer, a stream and an error come back as OpenAI bodies readable as streams and whole; embeddings are refused", async () => {
  assert.ok("problem" in messagesExchange("/v1/embeddings", "{}"));
  const x = messagesExchange("/v1/chat/completions", JSON.stringify({ model: "m", messages: [{ role: "user", content: "x" }], stream: true, stream_options: { include_usage: true } }), () => 9_000);
  assert.ok(!("problem" in x));
  assert.deepEqual(JSON.parse(x.body), { model: "m", max_tokens: DEFAULT_MAX_TOKENS, messages: [{ role: "user", content: "x" }], stream: true });
  const whole = x.answer(200, { "content-type": "application/json", "content-length": "99" }, Readable.from([Buffer.from('{"id":"msg_1","model":"m","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}')]));
  assert.equal(whole.headers["content-length"], undefined, "the length changed with the body");
  const json = JSON.parse((await whole.body.whole()).toString("utf8")) as { created: number; choices: { message: { content: string } }[] };
  assert.equal(json.choices[0]!.message.content, "Hi");
  assert.equal(json.created, 9);
  const stream = x.answer(200, { "content-type": "text/event-stream" }, Readable.from([Buffer.from(ev("message_start", { message: { id: "a", model: "m" } }) + ev("message_delta", { delta: { stop_reason: "end_turn" }, usage: { output_tokens: 0 } }) + ev("message_stop"))]));
  const text = (await stream.body.whole()).toString("utf8");
  assert.match(text, /"finish_reason":"stop"/);
  assert.match(text, /data: \[DONE\]\n\n$/);
  const err = x.answer(529, { "content-type": "application/json", "retry-after": "3" }, Readable.from([Buffer.from('{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')]));
  assert.equal(err.headers["retry-after"], "3");
  assert.equal(JSON.parse((await err.body.whole()).toString("utf8")).error.code, "overloaded_error");
  const cut = x.answer(200, { "content-type": "text/event-stream" }, (async function* () {
    yield Buffer.from(ev("message_start", { message: { id: "a", model: "m" } }));
    throw Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" });
  })());
  await assert.rejects(cut.body.whole(), (e: Error & { code?: string }) => e.code === "UND_ERR_SOCKET", "a broken upstream breaks the translated stream with the same error");
});

test("an Anthropic backend is sent its key as x-api-key with anthropic-version 2023-06-01 (even without a key, the version); the others as a Bearer token", () => {
  assert.deepEqual(authHeaders("anthropic", "sk-ant-k"), { "x-api-key": "sk-ant-k", "anthropic-version": "2023-06-01" });
  assert.deepEqual(authHeaders("anthropic", undefined), { "anthropic-version": "2023-06-01" });
  assert.deepEqual(authHeaders("openai", "sk-k"), { authorization: "Bearer sk-k" });
  assert.deepEqual(authHeaders("vllm", undefined), {});
});
