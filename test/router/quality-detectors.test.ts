/** The model-failure detectors, pure: whole answers, streams fed piece by piece, and the rate that marks a tier DEGRADED. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { canonicalTokens, chatKey } from "../../src/sim/backend/answer.ts";
import { degradeAnswer, REFUSAL_TEXT } from "../../src/sim/backend/generate.ts";
import {
  DEFAULT_QUALITY,
  DEGRADE_POLICY,
  detectEmpty,
  detectGarbage,
  detectLoop,
  detectRefusal,
  findLoop,
  judgeAnswer,
  LOOP_WINDOW,
  qualityVerdict,
  QualityWatch,
  refusalMatchers,
  REFUSAL_CHARS,
  type QualityPolicy,
} from "../../src/router/quality.ts";
import { classifyQuality } from "../../src/router/classify.ts";
import { failureEffects } from "../../src/router/outcome.ts";
import { CLOSED } from "../../src/router/breaker.ts";

const CANONICAL = ["Why do streams break?", "Explain hedging.", "What is a tier?", "List three colours."].map((q) => canonicalTokens(chatKey([{ role: "user", content: q }])).join(""));

const LIST = Array.from({ length: 12 }, (_, i) => `${i + 1}. Item number ${i + 1} of the list, with its own words`).join("\n");
const CODE_BELOW_THRESHOLD = [
  "function main() {",
  "  const total = compute(values);",
  "  console.log('processing the next value');",
  "  console.log('processing the next value');",
  "  console.log('processing the next value');",
  "  return total;",
  "}",
].join("\n");
const MARKDOWN_TABLE = `| name | value |\n|${"-".repeat(40)}|${"-".repeat(40)}|\n${"=".repeat(200)}\n| a | 1 |`;

test("no detector fires on the simulator's canonical answers, a numbered list, code with a line repeated three times, or markdown rules", () => {
  for (const text of [...CANONICAL, LIST, CODE_BELOW_THRESHOLD, MARKDOWN_TABLE]) {
    assert.equal(judgeAnswer(DEFAULT_QUALITY, [], text, false, "stop"), undefined, text);
    const w = new QualityWatch(DEFAULT_QUALITY);
    for (let i = 0; i < text.length; i += 3) assert.equal(w.feed(text.slice(i, i + 3)), undefined, text);
    assert.equal(w.finish(false, "stop"), undefined, text);
  }
});

test("a span of twenty or more characters repeated back to back is a loop, named with its span and count", () => {
  const span = "the model answers the same thing ";
  const text = `A normal start of an answer:${span.repeat(6)}`;
  const d = detectLoop(text);
  assert.deepEqual(d, { detector: "loop", detail: `repetition loop: 'the model answers the same thing ' repeated 6 times` });
  assert.equal(findLoop(text)!.loopStart, "A normal start of an answer:".length, "where the repeated text begins");
});

test("a loop that ends mid-span (cut at max_tokens) is still a loop", () => {
  const text = `Intro text here. ${"alpha beta gamma delta ".repeat(8)}alpha be`;
  assert.equal(detectLoop(text)?.detector, "loop");
});

test("three repeats of a long span are below the threshold; four are a loop", () => {
  const span = "a sentence that is long enough to be a span of its own, ";
  assert.equal(detectLoop(`Start. ${span.repeat(3)}`), undefined);
  assert.equal(detectLoop(`Start. ${span.repeat(4)}`)?.detector, "loop");
});

test("a short span repeated is reported by its own period, counted over the whole loop", () => {
  const d = detectLoop(`Well:${"ha ".repeat(60)}`);
  assert.equal(d?.detail, "repetition loop: 'ha ' repeated 60 times");
});

test("a stream fed token by token shows its loop as it forms, with the window bounded", () => {
  const w = new QualityWatch(DEFAULT_QUALITY);
  const tokens = canonicalTokens(chatKey([{ role: "user", content: "loop" }]));
  const looped = degradeAnswer(tokens, "stop", { kind: "loop", after: 5 }, 2000).tokens;
  let fedChars = 0;
  let found;
  for (const t of looped) {
    fedChars += t.length;
    found = w.feed(t);
    if (found) break;
  }
  assert.equal(found?.detector, "loop");
  assert.ok(fedChars < 400, `caught within a few hundred characters (${fedChars})`);
  // A long normal stream (three windows' worth), then a loop: the watch keeps only its window, and still catches the loop.
  const w2 = new QualityWatch(DEFAULT_QUALITY);
  let normal = "";
  for (let i = 0; normal.length < LOOP_WINDOW * 3; i++) normal += `Line ${i} says ${(i * 7919) % 1000} things. `;
  for (let i = 0; i < normal.length; i += 7) assert.equal(w2.feed(normal.slice(i, i + 7)), undefined);
  let late;
  for (let i = 0; i < 20 && !late; i++) late = w2.feed("and so the model says this again, ");
  assert.equal(late?.detector, "loop");
});

test("an answer finished with no text and no tool call is empty; a tool call or text is not", () => {
  assert.equal(detectEmpty("", false, "stop")?.detector, "empty");
  assert.equal(detectEmpty("  \n", false, "length")?.detector, "empty");
  assert.equal(detectEmpty("", true, "tool_calls"), undefined);
  assert.equal(detectEmpty("", true, "stop"), undefined);
  assert.equal(detectEmpty("ok", false, "stop"), undefined);
  const w = new QualityWatch(DEFAULT_QUALITY);
  assert.equal(w.feed(""), undefined);
  assert.equal(w.finish(false, "stop")?.detector, "empty", "a stream that finished with nothing");
});

test("mostly replacement characters is garbage; a few among text, or non-Latin scripts and emoji, are not", () => {
  assert.equal(detectGarbage("\uFFFD\uFFFD\uFFFD \uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD")?.detector, "garbage");
  assert.equal(detectGarbage("a\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008\u000b\u000c\u000e\u000f\u0010\u0011\u0012\u0013\u0014")?.detector, "garbage");
  assert.equal(detectGarbage("The file had one bad byte \uFFFD in it, otherwise fine."), undefined);
  assert.equal(detectGarbage("日本語の文章です。これは正常な答えです。😀👍 Ελληνικά κείμενα"), undefined);
  const w = new QualityWatch(DEFAULT_QUALITY);
  let d;
  for (const piece of Array.from({ length: 10 }, () => "\uFFFD\uFFFD ")) d ??= w.feed(piece);
  assert.equal(d?.detector, "garbage", "caught on a stream as it arrives");
});

test("refusal patterns match the start of an answer only, case-insensitively; no patterns, no check", () => {
  const m = refusalMatchers(["^I can't help", "^as an ai"]);
  assert.match(detectRefusal(`  ${REFUSAL_TEXT}`, m)!.detail, /^refusal: the answer starts 'I can't help with that request\./);
  assert.equal(detectRefusal("As an AI language model, I cannot do that.", m)?.detector, "refusal");
  assert.equal(detectRefusal(`${"x".repeat(REFUSAL_CHARS)} I can't help`, refusalMatchers(["I can't help"])), undefined, "past the first characters");
  assert.equal(detectRefusal("Sure: here is the answer. I can't help noticing it is long.", m), undefined);
  assert.equal(detectRefusal(REFUSAL_TEXT, []), undefined);
  const policy: QualityPolicy = { ...DEFAULT_QUALITY, refusal_patterns: ["^I can't help"] };
  const w = new QualityWatch(policy);
  assert.equal(w.holdChars, REFUSAL_CHARS, "a stream's start is held while refusals are judged");
  assert.equal(new QualityWatch(DEFAULT_QUALITY).holdChars, 0, "without patterns nothing is held");
  for (const t of REFUSAL_TEXT.split(" ")) assert.equal(w.feed(`${t} `), undefined, "short answers are judged at their finish");
  assert.equal(w.finish(false, "stop")?.detector, "refusal");
});

test("switched off, a detector passes what it would catch", () => {
  const off: QualityPolicy = { loop: false, empty: false, garbage: false, refusal_patterns: [] };
  assert.equal(judgeAnswer(off, [], "", false, "stop"), undefined);
  assert.equal(judgeAnswer(off, [], "\uFFFD".repeat(40), false, "stop"), undefined);
  assert.equal(judgeAnswer(off, [], "abc def ghi jkl mno pqr ".repeat(10), false, "length"), undefined);
});

test("a quality failure blames the tier: it counts on the tier's breaker", () => {
  const c = classifyQuality("loop");
  assert.deepEqual(c, { class: "quality", action: { kind: "next_tier" }, blame: "tier", suspect: false, detector: "loop" });
  const e = failureEffects(c, CLOSED, { threshold: 5, openMs: 1000, maxOpenMs: 8000 }, 0, "repetition loop");
  assert.deepEqual(e.breaker, { state: "closed", failures: 1 });
  assert.equal(e.backendDown, undefined);
});

test("three detections within five minutes mark a tier DEGRADED; it clears once they age out of the window", () => {
  const w = DEGRADE_POLICY.windowMs;
  assert.deepEqual(qualityVerdict([1000, 2000], 3000, DEGRADE_POLICY), { degraded: false, count: 2 });
  assert.deepEqual(qualityVerdict([1000, 2000, 3000], 3000, DEGRADE_POLICY), { degraded: true, count: 3, since: 3000 });
  assert.deepEqual(qualityVerdict([1000, 2000, 3000], 1000 + w, DEGRADE_POLICY), { degraded: false, count: 2 });
  assert.deepEqual(qualityVerdict([0, w - 1, w + 10, w + 20], w + 20, DEGRADE_POLICY), { degraded: true, count: 3, since: w + 20 });
});

test("the simulator's model failures: a loop to max_tokens, empty, a refusal, replacement characters; tool calls untouched", () => {
  const tokens = ["A", " b", " c", " d", " e", " f", " g", " h", " i"];
  const loop = degradeAnswer(tokens, "stop", { kind: "loop", after: 2 }, 20);
  assert.equal(loop.finishReason, "length");
  assert.equal(loop.tokens.length, 20);
  assert.equal(loop.tokens.join(""), `A b${" c d e f g h".repeat(3)}`);
  assert.deepEqual(degradeAnswer(tokens, "stop", { kind: "empty" }, undefined), { tokens: [], finishReason: "stop" });
  assert.equal(degradeAnswer(tokens, "stop", { kind: "refuse" }, undefined).tokens.join(""), REFUSAL_TEXT);
  assert.equal(detectGarbage(degradeAnswer(tokens, "stop", { kind: "garbage" }, undefined).tokens.join(""))?.detector, "garbage");
  assert.deepEqual(degradeAnswer(tokens, "tool_calls", { kind: "empty" }, undefined), { tokens, finishReason: "tool_calls" });
});
