/** What the emergency cache keys a request by, and what it refuses to key. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { canonicalJson, numbersOf, optedOut, prepareKey, similarityText, type Preparation, type PreparedKey } from "../../src/cache/key.ts";

const user = (content: unknown) => ({ role: "user", content });
const chat = (messages: unknown[], extra: Record<string, unknown> = {}) => ({ model: "llama", messages, ...extra });
const single = { multiTurn: false };
const multi = { multiTurn: true };

function ok(p: Preparation): PreparedKey {
  assert.ok(p.ok, `expected a key, got ${JSON.stringify(p)}`);
  return p.value;
}
function reason(p: Preparation): string {
  assert.ok(!p.ok, `expected a refusal, got ${JSON.stringify(p)}`);
  return p.reason;
}

test("whitespace and Unicode compatibility forms do not change the exact key; case and words do", () => {
  const a = ok(prepareKey("llama", "chat", chat([user("How do  GPUs\nfail?")]), single));
  const b = ok(prepareKey("llama", "chat", chat([user("  How do GPUs fail?  ")]), single));
  const c = ok(prepareKey("llama", "chat", chat([user("How do ＧＰＵs fail?")]), single)); // full-width letters, NFKC
  const d = ok(prepareKey("llama", "chat", chat([user("how do gpus fail?")]), single));
  const e = ok(prepareKey("llama", "chat", chat([user("How do CPUs fail?")]), single));
  assert.equal(a.key, b.key);
  assert.equal(a.key, c.key);
  assert.notEqual(a.key, d.key, "case is kept in the exact key (similarity folds it)");
  assert.equal(a.text, d.text, "…and the similarity text is the same");
  assert.notEqual(a.key, e.key);
  assert.match(a.key, /^[0-9a-f]{32}$/);
});

test("text content parts count as text; images, audio and files make a request uncacheable", () => {
  const parts = ok(prepareKey("llama", "chat", chat([user([{ type: "text", text: "How do " }, { type: "text", text: "GPUs fail?" }])]), single));
  const plain = ok(prepareKey("llama", "chat", chat([user("How do GPUs fail?")]), single));
  assert.equal(parts.key, plain.key);
  assert.equal(reason(prepareKey("llama", "chat", chat([user([{ type: "image_url", image_url: { url: "data:..." } }, { type: "text", text: "what is this" }])]), single)), "non_text");
});

test("sampling parameters are in the exact key but not the scope; shape parameters and unknown ones are in both", () => {
  const base = ok(prepareKey("llama", "chat", chat([user("Explain RAID levels")]), single));
  const warm = ok(prepareKey("llama", "chat", chat([user("Explain RAID levels")], { temperature: 0.9, max_tokens: 100 }), single));
  const json = ok(prepareKey("llama", "chat", chat([user("Explain RAID levels")], { response_format: { type: "json_object" } }), single));
  const vendor = ok(prepareKey("llama", "chat", chat([user("Explain RAID levels")], { guided_regex: "[a-z]+" }), single));
  const streamed = ok(prepareKey("llama", "chat", chat([user("Explain RAID levels")], { stream: true, stream_options: { include_usage: true }, user: "u-1" }), single));
  assert.notEqual(base.key, warm.key);
  assert.equal(base.scope, warm.scope, "a near-duplicate may differ in temperature or max_tokens");
  assert.notEqual(base.scope, json.scope, "JSON mode is another kind of answer");
  assert.notEqual(base.scope, vendor.scope, "parameters llmsup does not know are assumed to shape the answer");
  assert.equal(base.key, streamed.key, "stream, stream_options and user never change the answer");
});

test("parameter order does not matter: objects are keyed in canonical form", () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } }), '{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}');
  const a = ok(prepareKey("llama", "chat", { messages: [user("Hi there")], model: "llama", response_format: { type: "json_schema", json_schema: { name: "x", strict: true } } }, single));
  const b = ok(prepareKey("llama", "chat", { model: "llama", response_format: { json_schema: { strict: true, name: "x" }, type: "json_schema" }, messages: [user("Hi there")] }, single));
  assert.equal(a.key, b.key);
});

test("the route, the model asked for, the endpoint and the system prompt separate scopes", () => {
  const q = [user("Summarise the incident")];
  const base = ok(prepareKey("llama", "chat", chat(q), single));
  assert.notEqual(base.scope, ok(prepareKey("other", "chat", chat(q), single)).scope);
  assert.notEqual(base.scope, ok(prepareKey("llama", "chat", { ...chat(q), model: "gpt-4" }, single)).scope, "a default route serves many model names");
  assert.notEqual(base.scope, ok(prepareKey("llama", "completion", { model: "llama", prompt: "Summarise the incident" }, single)).scope);
  const sys = ok(prepareKey("llama", "chat", chat([{ role: "system", content: "Answer in French." }, ...q]), single));
  const sys2 = ok(prepareKey("llama", "chat", chat([{ role: "system", content: "Answer  in French." }, ...q]), single));
  assert.notEqual(base.scope, sys.scope, "a system prompt changes the answer however short it is");
  assert.equal(sys.scope, sys2.scope, "…normalised like the prompt");
  assert.equal(sys.text, base.text, "similarity compares the question only");
});

test("single-turn by default: a second user turn, an assistant turn or tools are not cached", () => {
  assert.equal(reason(prepareKey("llama", "chat", chat([user("a"), { role: "assistant", content: "b" }, user("c")]), single)), "multi_turn");
  assert.equal(reason(prepareKey("llama", "chat", chat([user("a"), user("c")]), single)), "multi_turn");
  assert.equal(reason(prepareKey("llama", "chat", chat([user("weather in Oslo?")], { tools: [{ type: "function", function: { name: "weather" } }] }), single)), "tools");
  assert.equal(reason(prepareKey("llama", "chat", chat([user("a"), { role: "tool", tool_call_id: "1", content: "12C" }]), single)), "tools");
  assert.equal(reason(prepareKey("llama", "chat", chat([user("Write a poem"), { role: "assistant", content: "Roses" }]), single)), "multi_turn");
  assert.equal(reason(prepareKey("llama", "chat", chat([{ role: "system", content: "be brief" }]), single)), "prefill");
  ok(prepareKey("llama", "chat", chat([{ role: "system", content: "be brief" }, { role: "developer", content: "no markdown" }, user("hello")]), single));
});

test("with multi_turn the conversation so far is part of the scope and the last message is the prompt", () => {
  const convo = (history: string) => chat([user(history), { role: "assistant", content: "Sure." }, user("And the second one?")]);
  const a = ok(prepareKey("llama", "chat", convo("List two GPU faults"), multi));
  const b = ok(prepareKey("llama", "chat", convo("List two disk faults"), multi));
  assert.notEqual(a.scope, b.scope, "the same follow-up in another conversation is another question");
  assert.equal(a.text, "and the second one");
  ok(prepareKey("llama", "chat", chat([user("weather?")], { tools: [{ type: "function", function: { name: "w" } }] }), multi));
  assert.equal(reason(prepareKey("llama", "chat", chat([user("Write a poem"), { role: "assistant", content: "Roses" }]), multi)), "prefill");
  const single1 = ok(prepareKey("llama", "chat", chat([user("hello")]), single));
  const single2 = ok(prepareKey("llama", "chat", chat([user("hello")]), multi));
  assert.equal(single1.key, single2.key, "switching multi_turn on keeps single-turn keys");
});

test("completions: one prompt string is cached; batches and token arrays are not", () => {
  ok(prepareKey("llama", "completion", { model: "llama", prompt: "Once upon a time" }, single));
  ok(prepareKey("llama", "completion", { model: "llama", prompt: ["Once upon a time"] }, single));
  assert.equal(reason(prepareKey("llama", "completion", { model: "llama", prompt: ["a", "b"] }, single)), "batch");
  assert.equal(reason(prepareKey("llama", "completion", { model: "llama", prompt: [1, 2, 3] }, single)), "non_text");
  assert.equal(reason(prepareKey("llama", "embedding", { model: "llama", input: "x" }, single)), "endpoint");
});

test("bad input is refused with a reason, never thrown", () => {
  for (const body of [null, 42, "text", [], {}, { messages: "hi" }, { messages: [] }, { messages: [null] }, { messages: [{ content: "no role" }] }, { messages: [{ role: "user", content: 7 }] }, { prompt: {} }]) {
    for (const endpoint of ["chat", "completion"] as const) {
      const p = prepareKey("llama", endpoint, body, single);
      assert.equal(p.ok, false, `${endpoint} ${JSON.stringify(body)}`);
    }
  }
  assert.equal(reason(prepareKey("llama", "chat", chat([user("   ")]), single)), "empty");
  assert.equal(reason(prepareKey("llama", "chat", chat([user("hi")], { stream: true, n: 2 }), { multiTurn: false, forStore: true })), "stream_n");
});

test("similarity text folds case, accents and punctuation; numbers are kept apart", () => {
  assert.equal(similarityText("  Qu'est-ce qu'un GPU?  Café!"), "qu est ce qu un gpu cafe");
  assert.equal(numbersOf("Is 2.5 bigger than 10,000 or 3?"), "10000 2.5 3");
  assert.equal(numbersOf("no digits"), "");
});

test("opting out: x-llmsup-cache: no-store or cache-control: no-store, in any case, in a list", () => {
  assert.equal(optedOut({ "x-llmsup-cache": "no-store" }), true);
  assert.equal(optedOut({ "x-llmsup-cache": "No-Store" }), true);
  assert.equal(optedOut({ "cache-control": "private, no-store" }), true);
  assert.equal(optedOut({ "x-llmsup-cache": ["x", "no-store"] }), true);
  assert.equal(optedOut({ "cache-control": "no-cache" }), false);
  assert.equal(optedOut({ "x-llmsup-cache": "no-storeX" }), false);
  assert.equal(optedOut({}), false);
  assert.equal(optedOut(undefined), false);
});
