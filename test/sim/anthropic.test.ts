/**
 * The simulated Anthropic Messages API as the official @anthropic-ai/sdk sees it: answers, streams, tool use and errors in the
 * real API's shapes; and the in-stream error fault it brought, on an OpenAI-compatible kind.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { canonicalTokens, chatKey } from "../../src/sim/backend/answer.ts";
import { rejectsPrefill } from "../../src/sim/backend/kinds/anthropic.ts";
import { cutAtStop } from "../../src/sim/backend/anthropic-api.ts";
import { REFUSAL_TEXT } from "../../src/sim/backend/generate.ts";
import { sseData, startSim } from "../helpers/sim.ts";

const KEY = "sk-ant-api03-simulated-test-key-0123456789";
const canonical = (content: string) => canonicalTokens(chatKey([{ role: "user", content }])).join("");

function client(url: string, key = KEY): Anthropic {
  return new Anthropic({ baseURL: url, apiKey: key, maxRetries: 0, timeout: 10_000 });
}

test("models named Claude 4.6 and later take no prefill; earlier ones and other names do", () => {
  assert.equal(rejectsPrefill("claude-opus-4-6"), true);
  assert.equal(rejectsPrefill("claude-sonnet-4-6-20260101"), true);
  assert.equal(rejectsPrefill("claude-haiku-5"), true);
  assert.equal(rejectsPrefill("claude-sonnet-4-5"), false);
  assert.equal(rejectsPrefill("claude-sonnet-4-20250514"), false, "a date is not a minor version");
  assert.equal(rejectsPrefill("claude-3-5-haiku-latest"), false);
});

test("a stop sequence cuts the answer before it, even inside a token", () => {
  assert.deepEqual(cutAtStop(["The", " quick", " model"], [" qu"]), { tokens: ["The"], stop: " qu" });
  assert.deepEqual(cutAtStop(["The", " quick", " model"], ["ick m", "mod"]), { tokens: ["The", " qu"], stop: "ick m" });
  assert.deepEqual(cutAtStop(["The", " quick"], ["zzz"]), { tokens: ["The", " quick"] });
});

test("the simulated Messages API through the official SDK", async (t) => {
  const sim = await startSim(t, ["--kind", "anthropic", "--port", "0", "--model", "claude-sonnet-4-5", "--model", "claude-opus-4-6", "--api-key", KEY, "--ttft", "5ms", "--token-rate", "2000"]);
  const c = client(sim.url);

  await t.test("models.list is the probe: the configured models, no tokens spent", async () => {
    const before = (await (await fetch(`${sim.url}/_sim/state`)).json()) as { requests: number };
    const ids: string[] = [];
    for await (const m of c.models.list()) ids.push(m.id);
    assert.deepEqual(ids, ["claude-sonnet-4-5", "claude-opus-4-6"]);
    const after = (await (await fetch(`${sim.url}/_sim/state`)).json()) as { requests: number };
    assert.equal(after.requests, before.requests, "listing models is no inference request");
  });

  await t.test("messages.create answers with the canonical text, end_turn and usage; system prompts, multi-turn and sampling parameters are accepted", async () => {
    const m = await c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 200, messages: [{ role: "user", content: "hello" }], ...({ temperature: 0.2, top_p: 0.9 } as object) });
    assert.equal(m.type, "message");
    assert.equal(m.role, "assistant");
    assert.equal(m.stop_reason, "end_turn");
    assert.match(m.id, /^msg_/);
    assert.equal(m.content[0]!.type === "text" && m.content[0]!.text, canonical("hello"));
    assert.ok(m.usage.input_tokens > 0 && m.usage.output_tokens > 0);
    const multi = await c.messages.create({
      model: "claude-sonnet-4-5",
      max_tokens: 200,
      system: [{ type: "text", text: "be brief" }],
      messages: [
        { role: "user", content: "first" },
        { role: "assistant", content: "an answer" },
        { role: "user", content: [{ type: "text", text: "and then?" }, { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } }] },
      ],
    });
    const key = chatKey([{ role: "system", content: "be brief" }, { role: "user", content: "first" }, { role: "assistant", content: "an answer" }, { role: "user", content: "and then?" }]);
    assert.equal(multi.content[0]!.type === "text" && multi.content[0]!.text, canonicalTokens(key).join(""));
  });

  await t.test("max_tokens cuts the answer with stop_reason max_tokens; a stop sequence with stop_sequence and the sequence named", async () => {
    const short = await c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 3, messages: [{ role: "user", content: "hello" }] });
    assert.equal(short.stop_reason, "max_tokens");
    assert.equal(short.usage.output_tokens, 3);
    const words = canonical("hello").split(" ");
    const stop = ` ${words[4]}`;
    const stopped = await c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 200, stop_sequences: [stop], messages: [{ role: "user", content: "hello" }] });
    assert.equal(stopped.stop_reason, "stop_sequence");
    assert.equal(stopped.stop_sequence, stop);
    assert.equal(stopped.content[0]!.type === "text" && stopped.content[0]!.text, canonical("hello").slice(0, canonical("hello").indexOf(stop)));
  });

  await t.test("messages.stream delivers the text in deltas and the final message; the raw events come in the API's order", async () => {
    const s = c.messages.stream({ model: "claude-sonnet-4-5", max_tokens: 200, messages: [{ role: "user", content: "stream me" }] });
    let deltas = 0;
    s.on("text", () => deltas++);
    const final = await s.finalMessage();
    assert.equal(final.content[0]!.type === "text" && final.content[0]!.text, canonical("stream me"));
    assert.equal(final.stop_reason, "end_turn");
    assert.ok(deltas > 5, `text came in deltas (${deltas})`);
    assert.ok(final.usage.output_tokens > 5);

    const raw = await c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 200, stream: true, messages: [{ role: "user", content: "stream me" }] });
    const types: string[] = [];
    for await (const e of raw) types.push(e.type);
    const distinct = types.filter((x, i) => x !== types[i - 1]);
    assert.deepEqual(distinct, ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]);
  });

  await t.test("tools: a tool_use block with its input (whole, and streamed as input_json_delta), then a tool_result answered in text", async () => {
    const tools = [{ name: "lookup", description: "look something up", input_schema: { type: "object" as const, properties: { query: { type: "string" } } } }];
    const m = await c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 200, tools, tool_choice: { type: "auto" }, messages: [{ role: "user", content: "find it" }] });
    assert.equal(m.stop_reason, "tool_use");
    const use = m.content.find((b) => b.type === "tool_use");
    assert.ok(use && use.type === "tool_use");
    assert.equal(use.name, "lookup");
    assert.equal(typeof (use.input as { query?: unknown }).query, "string");

    const s = c.messages.stream({ model: "claude-sonnet-4-5", max_tokens: 200, tools, tool_choice: { type: "tool", name: "lookup" }, messages: [{ role: "user", content: "find it" }] });
    let jsonDeltas = 0;
    s.on("inputJson", () => jsonDeltas++);
    const streamed = await s.finalMessage();
    const su = streamed.content.find((b) => b.type === "tool_use");
    assert.ok(su && su.type === "tool_use");
    assert.deepEqual(su.input, use.input, "the streamed input assembles to the same object");
    assert.ok(jsonDeltas > 3, `input came in pieces (${jsonDeltas})`);

    const answered = await c.messages.create({
      model: "claude-sonnet-4-5",
      max_tokens: 200,
      tools,
      messages: [
        { role: "user", content: "find it" },
        { role: "assistant", content: [use] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "found: 42" }] },
      ],
    });
    assert.equal(answered.stop_reason, "end_turn");
    assert.equal(answered.content[0]!.type, "text");

    await assert.rejects(
      c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 200, messages: [{ role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_nope", content: "x" }] }] }),
      (e: unknown) => e instanceof Anthropic.BadRequestError && /tool_use_id/.test(e.message),
    );
    await assert.rejects(
      c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 200, tools, messages: [{ role: "user", content: "find it" }, { role: "assistant", content: [use] }, { role: "user", content: "never mind" }] }),
      (e: unknown) => e instanceof Anthropic.BadRequestError && /without `tool_result` blocks/.test(e.message),
      "a tool use left unanswered is refused",
    );
  });

  await t.test("a prefill is continued on models that take one; Claude 4.6 rejects it with a 400 that says prefill", async () => {
    const full = canonical("go on");
    const head = full.split(" ").slice(0, 5).join(" ");
    const m = await c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 200, messages: [{ role: "user", content: "go on" }, { role: "assistant", content: head }] });
    assert.equal(head + (m.content[0]!.type === "text" ? m.content[0]!.text : ""), full, "only the rest of the answer comes back");
    await assert.rejects(
      c.messages.create({ model: "claude-opus-4-6", max_tokens: 200, messages: [{ role: "user", content: "go on" }, { role: "assistant", content: head }] }),
      (e: unknown) => e instanceof Anthropic.BadRequestError && e.status === 400 && /prefill/i.test(e.message) && (e.error as { error?: { type?: string } }).error?.type === "invalid_request_error",
    );
  });

  await t.test("bad requests are 400 invalid_request_error with a request id: no max_tokens, a bad role, temperature above 1, no anthropic-version", async () => {
    for (const body of [{ messages: [{ role: "user", content: "x" }] }, { max_tokens: 5, messages: [{ role: "system", content: "x" }] }, { max_tokens: 5, temperature: 1.5, messages: [{ role: "user", content: "x" }] }]) {
      await assert.rejects(c.messages.create({ model: "claude-sonnet-4-5", ...body } as never), (e: unknown) => e instanceof Anthropic.BadRequestError && typeof e.requestID === "string" && e.requestID.startsWith("req_"));
    }
    const noVersion = await fetch(`${sim.url}/v1/messages`, { method: "POST", headers: { "x-api-key": KEY }, body: JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 5, messages: [{ role: "user", content: "x" }] }) });
    assert.equal(noVersion.status, 400);
    const j = (await noVersion.json()) as { type: string; error: { type: string; message: string }; request_id: string };
    assert.equal(j.type, "error");
    assert.equal(j.error.type, "invalid_request_error");
    assert.match(j.error.message, /anthropic-version/);
    assert.equal(noVersion.headers.get("request-id"), j.request_id);
  });

  await t.test("a wrong key is 401 AuthenticationError; a Bearer token is accepted in its place", async () => {
    await assert.rejects(client(sim.url, "sk-ant-wrong").messages.create({ model: "claude-sonnet-4-5", max_tokens: 5, messages: [{ role: "user", content: "x" }] }), (e: unknown) => e instanceof Anthropic.AuthenticationError);
    const r = await fetch(`${sim.url}/v1/messages`, { method: "POST", headers: { authorization: `Bearer ${KEY}`, "anthropic-version": "2023-06-01" }, body: JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 5, messages: [{ role: "user", content: "x" }] }) });
    assert.equal(r.status, 200);
  });

  await t.test("an unknown model is 404 NotFoundError", async () => {
    await assert.rejects(c.messages.create({ model: "claude-nothing", max_tokens: 5, messages: [{ role: "user", content: "x" }] }), (e: unknown) => e instanceof Anthropic.NotFoundError);
  });

  await t.test("a prompt longer than the window is 400 'prompt is too long'", async () => {
    await sim.setFault({ context_error: true });
    await assert.rejects(c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 5, messages: [{ role: "user", content: "x" }] }), (e: unknown) => e instanceof Anthropic.BadRequestError && /prompt is too long: \d+ tokens > \d+ maximum/.test(e.message));
    await sim.setFault({});
  });

  await t.test("429 is RateLimitError with retry-after; 529 is OverloadedError (an InternalServerError, status 529); 500 is api_error", async () => {
    await sim.setFault({ rate_limit: { count: 1, retry_after: 7 } });
    await assert.rejects(c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 5, messages: [{ role: "user", content: "x" }] }), (e: unknown) => {
      assert.ok(e instanceof Anthropic.RateLimitError);
      assert.equal(e.headers?.get("retry-after"), "7");
      assert.equal((e.error as { error: { type: string } }).error.type, "rate_limit_error");
      return true;
    });
    await sim.setFault({ status: { code: 529, count: 1 } });
    await assert.rejects(c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 5, messages: [{ role: "user", content: "x" }] }), (e: unknown) => {
      assert.ok(e instanceof Anthropic.InternalServerError);
      assert.ok(e instanceof Anthropic.OverloadedError);
      assert.equal(e.status, 529);
      assert.deepEqual((e.error as { error: unknown }).error, { type: "overloaded_error", message: "Overloaded" });
      return true;
    });
    await sim.setFault({ status: { code: 500, count: 1 } });
    await assert.rejects(c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 5, messages: [{ role: "user", content: "x" }] }), (e: unknown) => e instanceof Anthropic.InternalServerError && e.status === 500 && (e.error as { error: { type: string } }).error.type === "api_error");
    await sim.setFault({});
  });

  await t.test("an in-stream error event ends the stream as an error the SDK raises, after the text so far", async () => {
    await sim.setFault({ error_after: 4 });
    const s = c.messages.stream({ model: "claude-sonnet-4-5", max_tokens: 200, messages: [{ role: "user", content: "stream me" }] });
    let text = "";
    s.on("text", (d) => (text += d));
    await assert.rejects(s.finalMessage(), (e: unknown) => e instanceof Anthropic.APIError && /overloaded/i.test(String(e.message)));
    assert.equal(text, canonical("stream me").split(" ").slice(0, 4).join(" "));
    await sim.setFault({});
  });

  await t.test("model failures keep the API's shape: an empty answer, a refusal, a loop to max_tokens", async () => {
    await sim.setFault({ empty: true });
    const empty = await c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 50, messages: [{ role: "user", content: "x" }] });
    assert.deepEqual(empty.content, []);
    assert.equal(empty.stop_reason, "end_turn");
    await sim.setFault({ refuse: true });
    const refusal = await c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 50, messages: [{ role: "user", content: "x" }] });
    assert.equal(refusal.content[0]!.type === "text" && refusal.content[0]!.text, REFUSAL_TEXT);
    await sim.setFault({ loop_after: 3 });
    const loop = await c.messages.create({ model: "claude-sonnet-4-5", max_tokens: 40, messages: [{ role: "user", content: "x" }] });
    assert.equal(loop.stop_reason, "max_tokens");
    assert.equal(loop.usage.output_tokens, 40);
    await sim.setFault({});
  });
});

test("the in-stream error fault on an OpenAI-compatible kind: N content chunks, then an error chunk, and the stream ends without [DONE]", async (t) => {
  const sim = await startSim(t, ["--kind", "vllm", "--port", "0", "--load-time", "0s", "--error-after", "3", "--ttft", "5ms", "--token-rate", "2000"]);
  const r = await fetch(`${sim.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], stream: true }) });
  const events = sseData(await r.text());
  assert.ok(!events.includes("[DONE]"));
  const parsed = events.map((e) => JSON.parse(e) as { choices?: { delta: { content?: string } }[]; error?: { type: string } });
  assert.deepEqual(parsed[parsed.length - 1], { error: { message: "The server had an error while processing the request", type: "server_error", code: 500 } });
  assert.equal(parsed.filter((p) => (p.choices?.[0]?.delta.content ?? "") !== "").length, 3);
});
