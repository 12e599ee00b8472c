/**
 * Model failures are tier failures, through a real router, simulators as child processes and the
 * official openai client: a looping, empty, garbled or (where the route says so) refusing answer falls
 * over to the next tier before anything reached the client; a stream that degenerates after its first
 * tokens ends with an explicit stream_interrupted error, never a clean [DONE]; each detection is an
 * event and a metric, and three within the window mark the (backend, model) DEGRADED.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { APIError } from "openai";
import { canonicalTokens, chatKey } from "../../src/sim/backend/answer.ts";
import { REFUSAL_TEXT } from "../../src/sim/backend/generate.ts";
import type { RouterEvent } from "../../src/router/router.ts";
import { startSim, type SimProcess } from "../helpers/sim.ts";
import { backend, startRouter, type RouterHarness } from "../helpers/router.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";

const Q = "Why do answers degenerate?";
const FULL = canonicalTokens(chatKey([{ role: "user", content: Q }])).join("");
const messages = [{ role: "user" as const, content: Q }];

const cleanups: (() => void | Promise<void>)[] = [];
const shared = { after: (fn: () => void | Promise<void>) => void cleanups.push(fn) };
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

let h: RouterHarness;
const sims = new Map<string, SimProcess>();

/** The primaries, each told its model failure through POST /_sim/fault, and the fallback. */
const FAULTS = { loop: { loop_after: 5 }, empty: { empty: true }, garbage: { garbage: true }, refuse: { refuse: true }, cut: { cut_after: 5 } } as const;

before(async () => {
  const names = [...Object.keys(FAULTS), "fb"];
  await Promise.all(
    names.map(async (name) => {
      const s = await startSim(shared, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", "--token-rate", "2000"]);
      await waitUntil(`${s.url} to answer`, () => answers200(`${s.url}/health`));
      if (name in FAULTS) await s.setFault(FAULTS[name as keyof typeof FAULTS]);
      sims.set(name, s);
    }),
  );
  let toml = "";
  for (const [name, s] of sims) toml += backend(name, "llamacpp", s.port);
  const route = (model: string, primary: string, primaryModel: string, extra = "") =>
    `[[route]]\nmodel = "${model}"\n${extra}\ntiers = [\n{ backend = "${primary}", model = "${primaryModel}" },\n{ backend = "fb", model = "fb" },\n]\n`;
  toml += route("loop-whole", "loop", "p-whole");
  toml += route("loop-stream", "loop", "p-stream");
  toml += route("empty", "empty", "p");
  toml += route("empty-stream", "empty", "p-stream");
  toml += route("garbage", "garbage", "p");
  toml += route("refuse-on", "refuse", "p-on", `quality = { refusal_patterns = ["^I can't help"] }`);
  toml += route("refuse-on-stream", "refuse", "p-on-stream", `quality = { refusal_patterns = ["^I can't help"] }`);
  toml += route("refuse-off", "refuse", "p-off");
  toml += route("loop-off", "loop", "p-off", "quality = { loop = false }");
  toml += route("thrice", "empty", "p-thrice");
  toml += `[[route]]\nmodel = "cont-loop"\ntiers = [\n{ backend = "cut", model = "c" },\n{ backend = "loop", model = "p-cont" },\n{ backend = "fb", model = "fb" },\n]\n`;
  h = await startRouter(shared, toml);
});

const qualityEvents = (route: string) => h.events.filter((e): e is Extract<RouterEvent, { event: "router.quality" }> => e.event === "router.quality" && e.route === route);
const failovers = (route: string) => h.events.filter((e): e is Extract<RouterEvent, { event: "router.failover" }> => e.event === "router.failover" && e.route === route);

test("a looping answer (non-streaming) is a tier failure: the fallback's answer comes back, the failover's class is quality", async () => {
  const r = await h.client.chat.completions.create({ model: "loop-whole", messages, max_tokens: 200 });
  assert.equal(r.choices[0]!.message.content, FULL, "the fallback's whole answer, nothing of the loop");
  assert.equal(r.model, "fb");
  const [q] = qualityEvents("loop-whole");
  assert.equal(q?.detector, "loop");
  assert.equal(q?.backend, "loop");
  assert.match(q!.detail, /^repetition loop: '.+' repeated \d+ times$/);
  const [f] = failovers("loop-whole");
  assert.equal(f?.reason, "quality");
  assert.equal(f?.to?.backend, "fb");
  const metrics = await h.metrics.registry.metrics();
  assert.match(metrics, /llmsup_quality_failures_total\{backend="loop",model="p-whole",detector="loop"\} 1/);
});

test("a stream that loops after its first tokens ends with a stream_interrupted error saying it degenerated, never [DONE]", async () => {
  const stream = await h.client.chat.completions.create({ model: "loop-stream", messages, max_tokens: 400, stream: true });
  let text = "";
  let finish: string | null | undefined;
  const err = await (async () => {
    try {
      for await (const c of stream) {
        text += c.choices[0]?.delta?.content ?? "";
        finish = c.choices[0]?.finish_reason ?? finish;
      }
      return undefined;
    } catch (e) {
      return e;
    }
  })();
  assert.ok(err instanceof APIError, `an error, not a clean end (got ${String(err)})`);
  assert.match(err.message, /degenerated and was stopped: repetition loop/);
  assert.equal(finish, undefined, "no finish_reason reached the client");
  assert.ok(text.startsWith(FULL.split(" ").slice(0, 5).join(" ")), "the start of the answer went out");
  assert.ok(text.length < 400 * 4, "the rest of the loop was not relayed");
  const [q] = qualityEvents("loop-stream");
  assert.equal(q?.detector, "loop");
});

test("the stream's raw end is the error event and no [DONE]", async () => {
  const r = await h.fetch("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "loop-stream", messages, max_tokens: 400, stream: true }) });
  const raw = await r.text();
  assert.match(raw, /"code":"stream_interrupted"/);
  assert.doesNotMatch(raw, /data: \[DONE\]/);
});

test("an empty answer falls over to the next tier, streamed or not", async () => {
  const r = await h.client.chat.completions.create({ model: "empty", messages });
  assert.equal(r.choices[0]!.message.content, FULL);
  assert.equal(qualityEvents("empty")[0]?.detector, "empty");
  const stream = await h.client.chat.completions.create({ model: "empty-stream", messages, stream: true });
  let text = "";
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
  assert.equal(text, FULL, "the empty stream was never committed: the fallback answered it whole");
  assert.equal(failovers("empty-stream")[0]?.reason, "quality");
});

test("an answer of replacement characters falls over to the next tier", async () => {
  const r = await h.client.chat.completions.create({ model: "garbage", messages });
  assert.equal(r.choices[0]!.message.content, FULL);
  const [q] = qualityEvents("garbage");
  assert.equal(q?.detector, "garbage");
  assert.match(q!.detail, /replacement or control characters/);
});

test("a refusal falls over where the route has refusal patterns, streamed or not, and passes through where it has none", async () => {
  const on = await h.client.chat.completions.create({ model: "refuse-on", messages });
  assert.equal(on.choices[0]!.message.content, FULL);
  assert.equal(qualityEvents("refuse-on")[0]?.detector, "refusal");
  const stream = await h.client.chat.completions.create({ model: "refuse-on-stream", messages, stream: true });
  let text = "";
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
  assert.equal(text, FULL, "the refusal's start was held, never sent, and the fallback answered");
  const off = await h.client.chat.completions.create({ model: "refuse-off", messages });
  assert.equal(off.choices[0]!.message.content, REFUSAL_TEXT);
  assert.deepEqual(qualityEvents("refuse-off"), []);
});

test("with the loop detector off for a route, its looping answer is passed through", async () => {
  const r = await h.client.chat.completions.create({ model: "loop-off", messages, max_tokens: 60 });
  assert.equal(r.choices[0]!.finish_reason, "length");
  assert.notEqual(r.choices[0]!.message.content, FULL);
  assert.deepEqual(qualityEvents("loop-off"), []);
});

test("three model failures within the window mark the (backend, model) DEGRADED in the router's snapshot, with an event", async () => {
  const tierOf = () => h.router.snapshot().routes.find((r) => r.model === "thrice")!.tiers[0]!;
  assert.equal(tierOf().quality, undefined, "nothing held against it yet");
  for (let i = 1; i <= 3; i++) {
    const r = await h.client.chat.completions.create({ model: "thrice", messages });
    assert.equal(r.choices[0]!.message.content, FULL);
    assert.equal(tierOf().quality?.detections, i);
    assert.equal(tierOf().quality?.state, i < 3 ? "ok" : "degraded");
  }
  const marked = h.events.filter((e) => e.event === "router.tier.quality" && e.model === "p-thrice");
  assert.deepEqual(
    marked.map((e) => (e.event === "router.tier.quality" ? { backend: e.backend, degraded: e.degraded, detections: e.detections } : undefined)),
    [{ backend: "empty", degraded: true, detections: 3 }],
  );
  assert.equal(h.router.snapshot().routes.find((r) => r.model === "thrice")!.tiers[1]!.quality, undefined, "the fallback is not held to it");
});

test("a continuation that loops is the continuing tier's failure: the next tier finishes the answer and the stream ends cleanly", async () => {
  const stream = await h.client.chat.completions.create({ model: "cont-loop", messages, max_tokens: 400, stream: true });
  let text = "";
  let finish: string | null | undefined;
  for await (const c of stream) {
    text += c.choices[0]?.delta?.content ?? "";
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, "stop", "a finished answer, not an interrupted one");
  assert.ok(text.startsWith(FULL.split(" ").slice(0, 3).join(" ")), "the cut tier's start went out first");
  const [q] = qualityEvents("cont-loop");
  assert.equal(q?.detector, "loop", "the loop in the continuation was caught");
  assert.equal(q?.backend, "loop");
  const path = failovers("cont-loop").map((f) => `${f.from.backend}→${f.to?.backend}`);
  assert.deepEqual(path, ["cut→loop", "loop→fb"], "continued on the looping tier, then moved on from it");
});
