import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_SSE_EVENT, SseReader, chunkContent, chunkFinish, chunkHasOutput, type SseItem } from "../../src/router/sse.ts";

const kinds = (items: SseItem[]) => items.map((i) => (i.type === "data" ? `data:${chunkContent(i.json)}` : i.type));
const ev = (content: string) => `data: ${JSON.stringify({ choices: [{ delta: { content } }] })}`;

test("sse: events end at a blank line with LF, CRLF or lone-CR line ends alike", () => {
  for (const nl of ["\n", "\r\n", "\r"]) {
    const r = new SseReader();
    const out = r.push(`${ev("a")}${nl}${nl}${ev("b")}${nl}${nl}data: [DONE]${nl}${nl}`);
    // A lone CR at the very end could still become a CRLF: that event waits for the next byte.
    if (nl === "\r") out.push(...r.push(": next\n\n"));
    assert.deepEqual(kinds(out).slice(0, 3), ["data:a", "data:b", "done"], JSON.stringify(nl));
  }
});

test("sse: a CRLF split across two reads is one line end, not a blank line", () => {
  const r = new SseReader();
  assert.deepEqual(r.push(`${ev("a")}\r`), []);
  assert.deepEqual(r.push("\n"), [], "CR LF is one line end");
  assert.deepEqual(kinds(r.push("\r\n")), ["data:a"]);
  const r2 = new SseReader();
  assert.deepEqual(r2.push(`${ev("x")}\r\n\r`), [], "a trailing CR may be half of a CRLF");
  assert.deepEqual(kinds(r2.push("\n")), ["data:x"]);
});

test("sse: an event split anywhere across reads comes out whole, once", () => {
  const text = `${ev("hello")}\n\n${ev("world")}\n\n`;
  for (let cut = 1; cut < text.length; cut++) {
    const r = new SseReader();
    const out = [...r.push(text.slice(0, cut)), ...r.push(text.slice(cut))];
    assert.deepEqual(kinds(out), ["data:hello", "data:world"], `cut at ${cut}`);
  }
});

test("sse: multi-line data joins, comments and other fields pass as 'other', broken JSON is 'malformed'", () => {
  const r = new SseReader();
  const out = r.push(`: keep-alive\n\nevent: ping\n\ndata: {"choices":\ndata: [{"delta":{"content":"x"}}]}\n\ndata: {oops\n\ndata: 3\n\n`);
  assert.deepEqual(out.map((i) => i.type), ["other", "other", "data", "malformed", "malformed"]);
  assert.equal(chunkContent((out[2] as Extract<SseItem, { type: "data" }>).json), "x");
});

test("sse: output, finish reasons and tool calls are told apart from role and usage chunks", () => {
  assert.equal(chunkHasOutput({ choices: [{ delta: { role: "assistant" } }] }), false);
  assert.equal(chunkHasOutput({ choices: [{ delta: { content: "" } }] }), false);
  assert.equal(chunkHasOutput({ choices: [{ delta: { tool_calls: [{ index: 0 }] } as never }] }), true);
  assert.equal(chunkHasOutput({ choices: [{ delta: { reasoning_content: "hm" } as never }] }), true);
  assert.equal(chunkHasOutput({ choices: [{ text: "t" }] }), true);
  assert.equal(chunkFinish({ choices: [{ finish_reason: "stop" }] }), "stop");
  assert.equal(chunkFinish({ choices: [], usage: {} }), undefined);
});

test("sse: a character whose bytes are split between two network reads arrives whole (no U+FFFD in the answer)", () => {
  const r = new SseReader();
  const bytes = Buffer.from(`data: {"choices":[{"delta":{"content":"héllo 🌍 世界"}}]}\n\n`, "utf8");
  const cut = bytes.indexOf(Buffer.from("🌍", "utf8")) + 2; // inside the emoji's four bytes
  const items = [...r.pushBytes(bytes.subarray(0, cut)), ...r.pushBytes(bytes.subarray(cut))];
  assert.equal(items.length, 1);
  assert.equal(chunkContent((items[0] as Extract<SseItem, { type: "data" }>).json), "héllo 🌍 世界");
  assert.equal(r.rest(), "");
});

test("sse: LF-only streams (the fast path) and mixed line ends read the same events", () => {
  const text = `data: {"a":1}\n\n: comment\n\ndata: [DONE]\n\n`;
  const lf = new SseReader().push(text);
  const crlf = new SseReader().push(text.replace(/\n/g, "\r\n"));
  assert.deepEqual(lf.map((i) => i.type), ["data", "other", "done"]);
  assert.deepEqual(crlf.map((i) => i.type), lf.map((i) => i.type));
  const split = new SseReader();
  assert.deepEqual([...split.push(`data: {"a":1}\n`), ...split.push(`\r\ndata: [DONE]\n\n`)].map((i) => i.type), ["data", "done"], "an LF then a CRLF is a blank line too");
});

test("sse: an event growing past 1 MiB without a blank line is one malformed item saying so, the reader holds no more than that, and reads nothing after", () => {
  const r = new SseReader();
  const out: SseItem[] = [...r.push(`${ev("before")}\n\ndata: `)];
  const piece = "x".repeat(64 * 1024);
  for (let i = 0; i < 40 && out.length < 2; i++) {
    out.push(...r.push(piece));
    assert.ok(r.held <= MAX_SSE_EVENT + 3, `holds ${r.held} characters`);
  }
  assert.deepEqual(kinds(out), ["data:before", "malformed"]);
  assert.deepEqual(out[1], { type: "malformed", raw: "", error: `an event longer than ${MAX_SSE_EVENT} characters; llmsup reads at most ${MAX_SSE_EVENT}` });
  assert.equal(r.held, 0);
  assert.deepEqual(r.push(`\n\n${ev("after")}\n\n`), [], "nothing more is read");
  assert.equal(r.rest(), "");
  // The same event arriving whole, blank line and all, is refused the same way.
  assert.deepEqual(kinds(new SseReader().push(`data: ${"x".repeat(MAX_SSE_EVENT)}\n\n`)), ["malformed"]);
  assert.deepEqual(kinds(new SseReader().push(`:${"x".repeat(MAX_SSE_EVENT - 1)}\n\n`)), ["other"], "an event of exactly the limit is read");
  assert.deepEqual(kinds(new SseReader().push(`:${"x".repeat(MAX_SSE_EVENT)}\n\n`)), ["malformed"], "one character more is not");
});

test("sse: an event trickled in one character at a time is read in linear time, with LF and with CRLF line ends", () => {
  for (const nl of ["\n", "\r\n"]) {
    const text = `data: ${JSON.stringify({ choices: [{ delta: { content: "y".repeat(200_000) } }] })}${nl}${nl}`;
    const r = new SseReader();
    const out: SseItem[] = [];
    const started = performance.now();
    for (const c of text) out.push(...r.push(c));
    // Searching the whole buffer again on every read took minutes for this.
    assert.ok(performance.now() - started < 2_000, `${JSON.stringify(nl)}: well under two seconds`);
    assert.deepEqual(kinds(out), [`data:${"y".repeat(200_000)}`]);
  }
});
