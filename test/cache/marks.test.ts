/** How a cached answer is marked, streamed, and what is worth storing; which entries are evicted. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { answerFromStream, cacheNotice, isAnswer, markedAnswerAsSse, markHit } from "../../src/cache/marks.ts";
import { chooseEvictions, excess, expiryCutoff } from "../../src/cache/eviction.ts";

const AT = Date.UTC(2025, 5, 1, 12, 0, 0);
const ANSWER = {
  id: "chatcmpl-1",
  object: "chat.completion",
  created: 1,
  model: "llama-a",
  choices: [{ index: 0, message: { role: "assistant", content: "GPUs fail by overheating." }, finish_reason: "stop" }],
  usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 },
};

test("a hit carries the marks, the notice, and no usage it did not incur", () => {
  const hit = { similarity: 0.91234, cachedAt: AT };
  const notice = cacheNotice("llama", hit);
  assert.match(notice, /emergency cache/);
  assert.match(notice, /similar question \(similarity 0\.912\)/);
  assert.match(notice, /2025-06-01T12:00:00\.000Z/);
  const body = markHit(ANSWER, hit, notice, true);
  assert.equal(body._from_cache, true);
  assert.equal(body._cache_similarity, 0.912);
  assert.equal(body._cached_at, "2025-06-01T12:00:00.000Z");
  assert.equal(body._notice, notice);
  assert.equal(body._degraded, true);
  assert.equal(body._backend, "emergency-cache");
  assert.deepEqual(body.usage, { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 });
  assert.deepEqual(body.choices, ANSWER.choices);
  assert.equal(markHit(ANSWER, hit, notice, false)._degraded, undefined, "degraded_fields = false leaves those two out");
  assert.match(cacheNotice("llama", { similarity: 1, cachedAt: AT }), /the same question/);
});

test("a hit for a streaming caller is a valid SSE stream with the marks on every chunk", () => {
  const body = markHit(ANSWER, { similarity: 1, cachedAt: AT }, "n", true);
  const sse = markedAnswerAsSse(body, true);
  const events = sse.split("\n\n").filter(Boolean).map((e) => e.replace(/^data: /, ""));
  assert.equal(events.at(-1), "[DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as Record<string, unknown> & { choices: { delta?: { content?: string }; finish_reason?: string | null }[] });
  assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""), "GPUs fail by overheating.");
  assert.equal(chunks[1]!.choices[0]!.finish_reason, "stop");
  assert.deepEqual(chunks[2]!.choices, [], "the usage chunk when stream_options.include_usage");
  for (const c of chunks) {
    assert.equal(c._from_cache, true);
    assert.equal(c.object, "chat.completion.chunk");
  }
  assert.equal(markedAnswerAsSse(body, false).split("\n\n").filter(Boolean).length, 3);
  const text = markedAnswerAsSse(markHit(answerFromStream("completion", "Once upon", "m", AT), { similarity: 1, cachedAt: AT }, "n", false), false);
  assert.match(text, /"object":"text_completion".*"text":"Once upon"/);
});

test("a finished stream is stored as the answer its text makes", () => {
  const a = answerFromStream("chat", "Hello.", "llama-a", AT) as { object: string; model: string; created: number; choices: { message: { content: string } }[] };
  assert.equal(a.object, "chat.completion");
  assert.equal(a.model, "llama-a");
  assert.equal(a.created, AT / 1000);
  assert.equal(a.choices[0]!.message.content, "Hello.");
  assert.ok(isAnswer(a));
});

test("only answers that say something are worth storing", () => {
  assert.ok(isAnswer(ANSWER));
  assert.ok(isAnswer({ choices: [{ message: { content: null, tool_calls: [{ id: "1" }] } }] }));
  assert.ok(isAnswer({ choices: [{ text: "x" }] }));
  for (const bad of [null, [], "x", {}, { choices: [] }, { choices: [{ message: { content: "" } }] }, { choices: [{}] }, { choices: [null] }, { data: [{ embedding: [1] }] }]) assert.equal(isAnswer(bad), false, JSON.stringify(bad));
});

test("eviction takes the least recently used prefix that covers both the entry and the byte excess", () => {
  const lru = [
    { id: 1, bytes: 100 },
    { id: 2, bytes: 5_000 },
    { id: 3, bytes: 100 },
    { id: 4, bytes: 100 },
  ];
  assert.deepEqual(excess({ entries: 10, bytes: 1_000 }, { maxEntries: 10, maxBytes: 1_000 }), { entries: 0, bytes: 0 });
  assert.deepEqual(excess({ entries: 10, bytes: 1_000 }, { maxEntries: 10, maxBytes: 1_000 }, { entries: 1, bytes: 10 }), { entries: 1, bytes: 10 });
  assert.deepEqual(chooseEvictions(lru, { entries: 1, bytes: 0 }).ids, [1]);
  assert.deepEqual(chooseEvictions(lru, { entries: 1, bytes: 200 }).ids, [1, 2], "bytes need the second, larger entry");
  assert.deepEqual(chooseEvictions(lru, { entries: 3, bytes: 0 }).ids, [1, 2, 3]);
  assert.deepEqual(chooseEvictions(lru, { entries: 0, bytes: 0 }).ids, []);
  assert.deepEqual(chooseEvictions(lru, { entries: 9, bytes: 0 }).freed, { entries: 4, bytes: 5_300 }, "a short batch is used up; the shell reads the next");
  assert.equal(expiryCutoff(AT, { ttlMs: 1_000 }), AT - 1_000);
});
