/** Invalid client requests are refused with 400 naming the field, before any tier is tried, and never count against one. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { canonicalTokens, chatKey } from "../../src/sim/backend/answer.ts";
import { MAX_DEPTH, validateRequest } from "../../src/router/validate.ts";
import type { Endpoint } from "../../src/router/types.ts";
import { startSim } from "../helpers/sim.ts";
import { backend, startRouter } from "../helpers/router.ts";

const user = { role: "user", content: "hi" };
const chat = (extra: Record<string, unknown>) => ({ model: "m", messages: [user], ...extra });

/** A value nested `levels` deep: [[[…1…]]]. */
function nested(levels: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}

const GOOD: [string, Endpoint, Record<string, unknown>][] = [
  ["a plain chat", "chat", chat({})],
  ["a chat without a model (the default route)", "chat", { messages: [user] }],
  ["stream true, false and null, with stream_options", "chat", chat({ stream: true, stream_options: { include_usage: true } })],
  ["stream false", "chat", chat({ stream: false, stream_options: null })],
  ["null sampling parameters", "chat", chat({ stream: null, max_tokens: null, n: null, temperature: null, top_p: null })],
  ["numeric sampling parameters", "chat", chat({ max_tokens: 1, max_completion_tokens: 200, n: 2, temperature: 0, top_p: 0.9 })],
  ["content parts", "chat", chat({ messages: [{ role: "user", content: [{ type: "text", text: "hi" }, { type: "image_url", image_url: { url: "data:," } }] }] })],
  [
    "a tool call (no content) and a tool answer with null content",
    "chat",
    chat({
      messages: [user, { role: "assistant", tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }] }, { role: "tool", tool_call_id: "c1", content: null }],
    }),
  ],
  ["a legacy function_call without content", "chat", chat({ messages: [user, { role: "assistant", function_call: { name: "f", arguments: "{}" } }] })],
  ["a role llmsup does not know (servers differ)", "chat", chat({ messages: [{ role: "ipython", content: "x" }] })],
  ["a tool schema nested close to the limit", "chat", chat({ tools: [{ type: "function", function: { name: "f", parameters: nested(MAX_DEPTH - 4) } }] })],
  ["a string prompt", "completion", { model: "m", prompt: "Once" }],
  ["an empty prompt", "completion", { model: "m", prompt: "" }],
  ["several prompts", "completion", { model: "m", prompt: ["a", "b"] }],
  ["a token-id prompt", "completion", { model: "m", prompt: [1, 2, 3], stream: true }],
  ["several token-id prompts", "completion", { model: "m", prompt: [[1, 2], [3]] }],
  ["a string input", "embedding", { model: "m", input: "x" }],
  ["several inputs", "embedding", { model: "m", input: ["x", "y"] }],
  ["a token-id input", "embedding", { model: "m", input: [5, 6] }],
  ["several token-id inputs", "embedding", { model: "m", input: [[5], [6, 7]] }],
];

for (const [name, endpoint, body] of GOOD) {
  test(`valid: ${name} (${endpoint}) passes`, () => assert.deepEqual(validateRequest(endpoint, body), { ok: true }));
}

const BAD: [Endpoint, Record<string, unknown>, string, RegExp][] = [
  ["chat", chat({ stream: "true" }), "stream", /stream must be a boolean or null; found the string "true"/],
  ["chat", chat({ stream: 1 }), "stream", /found the number 1/],
  ["completion", { prompt: "x", stream: "yes" }, "stream", /boolean/],
  ["embedding", { input: "x", stream: 0 }, "stream", /boolean/],
  ["chat", chat({ stream_options: "usage" }), "stream_options", /an object or null/],
  ["chat", chat({ stream: true, stream_options: { include_usage: "true" } }), "stream_options.include_usage", /a boolean/],
  ["chat", chat({ model: 7 }), "model", /model must be a string; found the number 7/],
  ["chat", chat({ model: null }), "model", /found null/],
  ["chat", chat({ max_tokens: "100" }), "max_tokens", /an integer ≥ 1 or null/],
  ["chat", chat({ max_tokens: 0 }), "max_tokens", /found the number 0/],
  ["chat", chat({ max_completion_tokens: 1.5 }), "max_completion_tokens", /integer/],
  ["chat", chat({ n: 0 }), "n", /integer ≥ 1/],
  ["chat", chat({ temperature: "0.7" }), "temperature", /a finite number or null/],
  ["chat", chat({ top_p: [1] }), "top_p", /found an array of 1/],
  ["chat", { model: "m" }, "messages", /non-empty array of messages; found nothing/],
  ["chat", chat({ messages: [] }), "messages", /found an empty array/],
  ["chat", chat({ messages: "hi" }), "messages", /found the string "hi"/],
  ["chat", chat({ messages: [user, "hi"] }), "messages[1]", /an object/],
  ["chat", chat({ messages: [user, { content: "x" }] }), "messages[1].role", /a string; found nothing/],
  ["chat", chat({ messages: [user, user, { role: "user", content: 3 }] }), "messages[2].content", /string, null or an array of content parts/],
  ["chat", chat({ messages: [{ role: "user" }] }), "messages[0].content", /absent only beside tool_calls/],
  ["chat", chat({ messages: [{ role: "user", content: [{ type: "text", text: "a" }, "b"] }] }), "messages[0].content[1]", /a content part/],
  ["completion", { model: "m" }, "prompt", /found nothing/],
  ["completion", { prompt: [] }, "prompt", /found an empty array/],
  ["completion", { prompt: { text: "x" } }, "prompt", /found an object/],
  ["completion", { prompt: ["a", 1] }, "prompt[1]", /a string, like prompt\[0\]/],
  ["completion", { prompt: [1, -2] }, "prompt[1]", /token id/],
  ["completion", { prompt: [[1], []] }, "prompt[1]", /non-empty array of token ids/],
  ["completion", { prompt: [true] }, "prompt[0]", /found the boolean true/],
  ["embedding", { model: "m" }, "input", /found nothing/],
  ["embedding", { input: "" }, "input", /a non-empty string/],
  ["embedding", { input: [] }, "input", /found an empty array/],
  ["embedding", { input: [[1, 2], "x"] }, "input[1]", /non-empty array of token ids/],
  ["chat", chat({ tools: [{ type: "function", function: { name: "f", parameters: nested(MAX_DEPTH) } }] }), "tools", new RegExp(`more than ${MAX_DEPTH} levels deep`)],
];

for (const [endpoint, body, param, message] of BAD) {
  test(`invalid (${endpoint}): ${JSON.stringify(body).slice(0, 90)} is refused naming ${param}`, () => {
    const v = validateRequest(endpoint, body);
    assert.ok(!v.ok, "refused");
    assert.equal(v.param, param);
    assert.match(v.message, message);
  });
}

test("a value is described, never echoed whole: a long string is cut to 40 characters", () => {
  const v = validateRequest("chat", chat({ stream: "x".repeat(100_000) }));
  assert.ok(!v.ok);
  assert.ok(v.message.length < 120, v.message);
  assert.match(v.message, /"x{40}…"/);
});

test("a sampling number JSON reads as Infinity (1e400) is refused, not sent on as null", () => {
  const v = validateRequest("chat", JSON.parse('{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1e400}') as Record<string, unknown>);
  assert.deepEqual(v, { ok: false, param: "temperature", message: "temperature must be a finite number or null; found the number Infinity" });
  assert.equal(validateRequest("chat", chat({ top_p: -Infinity })).ok, false);
  assert.equal(validateRequest("chat", chat({ temperature: 1e308 })).ok, true);
});

test("a top-level key that is no field name is quoted and cut in `param`: \"\" and a 100,000-character key nested too deep", () => {
  const empty = validateRequest("chat", chat({ "": nested(MAX_DEPTH) }));
  assert.ok(!empty.ok);
  assert.equal(empty.param, '""');
  assert.match(empty.message, /^"" nests objects and arrays more than 64 levels deep/);
  const long = validateRequest("chat", chat({ ["k".repeat(100_000)]: nested(MAX_DEPTH) }));
  assert.ok(!long.ok);
  assert.equal(long.param, JSON.stringify(`${"k".repeat(40)}…`));
  assert.ok(long.message.length < 200, `${long.message.length} characters`);
});

test("a value cut to 40 characters never ends in half of a surrogate pair", () => {
  const w = validateRequest("chat", chat({ stream: `${"a".repeat(39)}🌍🌍` }));
  assert.ok(!w.ok);
  assert.equal(w.message, `stream must be a boolean or null; found the string "${"a".repeat(39)}…"`);
});

test("the nesting limit is exact: the body itself is level one", () => {
  // The body is level 1; metadata's n arrays are levels 2 … n + 1.
  assert.deepEqual(validateRequest("chat", chat({ metadata: nested(MAX_DEPTH - 1) })), { ok: true });
  const over = validateRequest("chat", chat({ metadata: nested(MAX_DEPTH) }));
  assert.ok(!over.ok);
  assert.equal(over.param, "metadata");
});

test("a 10,000-deep body survives JSON.parse and is refused quickly without throwing", () => {
  const text = `{"model":"m","messages":[{"role":"user","content":${"[".repeat(10_000)}${"]".repeat(10_000)}}]}`;
  const started = performance.now();
  const body = JSON.parse(text) as Record<string, unknown>;
  const v = validateRequest("chat", body);
  assert.ok(!v.ok);
  assert.equal(v.param, "messages");
  assert.match(v.message, /more than 64 levels deep; llmsup accepts at most 64/);
  assert.ok(performance.now() - started < 500, "refused in well under a second");
  // What the check protects against: serialising such a body for a backend blows the stack.
  assert.throws(() => JSON.stringify(body), RangeError);
});

// ------------------------------------------------------------------ through the routing socket

const Q = "How do GPUs fail?";

test("why the router must refuse it: vLLM (simulated) streams on \"stream\": \"true\", an answer a non-streaming request cannot read", async (t) => {
  const sim = await startSim(t, ["--kind", "vllm", "--port", "0", "--load-time", "0s", "--model", "m0"]);
  const r = await fetch(`${sim.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ model: "m0", messages: [{ role: "user", content: Q }], stream: "true" }) });
  assert.match(r.headers.get("content-type") ?? "", /^text\/event-stream/);
  assert.match(await r.text(), /^data: /);
});

test("100 string-stream and 100 deeply nested requests get 400 naming the field, reach no backend, open no breaker; tier 0 still answers", async (t) => {
  const a = await startSim(t, ["--kind", "vllm", "--port", "0", "--load-time", "0s", "--model", "m0"]);
  const b = await startSim(t, ["--kind", "vllm", "--port", "0", "--load-time", "0s", "--model", "m1"]);
  const h = await startRouter(
    t,
    backend("a", "vllm", a.port) + backend("b", "vllm", b.port) + `[[route]]\nmodel = "llama"\ntiers = [{ backend = "a", model = "m0" }, { backend = "b", model = "m1" }]\n`,
  );
  const post = async (body: string, path = "/v1/chat/completions") => {
    const r = await h.fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body });
    return { status: r.status, body: (await r.json()) as { error: Record<string, unknown> } };
  };
  const stringStream = JSON.stringify({ model: "llama", messages: [{ role: "user", content: Q }], stream: "true" });
  const deep = `{"model":"llama","messages":[{"role":"user","content":${"[".repeat(10_000)}${"]".repeat(10_000)}}]}`;
  for (let i = 0; i < 100; i++) {
    const r = await post(stringStream);
    assert.equal(r.status, 400);
    assert.deepEqual(r.body.error, { message: 'stream must be a boolean or null; found the string "true"', type: "invalid_request_error", param: "stream", code: "invalid_request" });
  }
  for (let i = 0; i < 100; i++) {
    const r = await post(deep);
    assert.equal(r.status, 400);
    assert.equal(r.body.error.param, "messages");
    assert.equal(r.body.error.code, "invalid_request");
    assert.match(String(r.body.error.message), /more than 64 levels deep/);
  }
  const tokenIds = await post(JSON.stringify({ model: "llama", input: [[1], ["x"]] }), "/v1/embeddings");
  assert.deepEqual([tokenIds.status, tokenIds.body.error.param], [400, "input[1]"]);

  for (const sim of [a, b]) {
    const state = (await (await fetch(`${sim.url}/_sim/state`)).json()) as { requests: number };
    assert.equal(state.requests, 0, "no invalid request reached a backend");
  }
  for (const route of h.router.snapshot().routes) for (const tier of route.tiers) assert.equal(tier.breaker, "closed", `${tier.backend}/${tier.model}`);
  assert.deepEqual(h.events.filter((e) => e.event === "router.failover" || e.event === "router.breaker"), []);

  const ok = await h.client.chat.completions.create({ model: "llama", messages: [{ role: "user", content: Q }] }).withResponse();
  assert.equal(ok.response.status, 200);
  assert.equal(ok.response.headers.get("x-llmsup-tier"), "0");
  assert.equal(ok.data.choices[0]!.message.content, canonicalTokens(chatKey([{ role: "user", content: Q }])).join(""));
});
