/**
 * A backend that goes down under requests in flight (a GPU fault) has them moved off at once
 * (Router.evacuate), through the official openai client: streams past their first tokens are finished
 * on the next tier as one complete answer with a marked seam that says why; requests not answered yet
 * go to the next tier unseen; a stream whose answer cannot be carried over ends with an explicit
 * stream_interrupted error; none goes back to the backend it was moved off.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { APIError } from "openai";
import { canonicalTokens, chatKey } from "../../src/sim/backend/answer.ts";
import { InFlight } from "../../src/router/inflight.ts";
import { startSim, type SimProcess } from "../helpers/sim.ts";
import { consume, recordingClient } from "../helpers/recording-client.ts";
import { backend, startRouter, type RouterHarness } from "../helpers/router.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";

const REASON = "GPU 0: XID 79: GPU has fallen off the bus";
const question = (i: number) => `Request ${i}: what happens to a stream when its GPU falls off the bus?`;
const tokensOf = (q: string) => canonicalTokens(chatKey([{ role: "user", content: q }]));
const ask = (q: string, model = "llama") => ({ model, messages: [{ role: "user" as const, content: q }] });

async function sim(t: Parameters<typeof startSim>[0], args: string[]): Promise<SimProcess> {
  const s = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", ...args]);
  await waitUntil(`${s.url}/health to answer 200`, () => answers200(`${s.url}/health`));
  return s;
}

const running = async (s: SimProcess) => ((await (await fetch(`${s.url}/_sim/state`)).json()) as { running: number }).running;

/** An openai client on the router that also keeps each response's raw body (SSE comments included, which the client drops), by the request's question. */
const routerRecordingClient = (h: RouterHarness) => recordingClient((url, init) => h.fetch(new URL(url).pathname, init as never));

test("streams mid-answer on a backend that went down are finished on the next tier at once, one complete answer each with the seam saying why; requests not answered yet go to the next tier; a json_object stream ends with stream_interrupted", async (t) => {
  // The GPU tier paces its tokens (20–39 per answer at 8/s): every request is mid-flight when its backend goes down. Slots for all seven at once.
  const gpu = await sim(t, ["--model", "big", "--token-rate", "8", "--parallel", "8"]);
  const cpu = await sim(t, ["--model", "small", "--parallel", "8"]);
  const h = await startRouter(t, backend("gpu", "llamacpp", gpu.port) + backend("cpu", "llamacpp", cpu.port) + `[[route]]\nmodel = "llama"\ntiers = [{ backend = "gpu", model = "big" }, { backend = "cpu", model = "small" }]\n`, `hedge_after = "off"`);
  const { client, raw } = routerRecordingClient(h);

  const streamQs = [0, 1, 2, 3].map(question);
  const wholeQs = [4, 5].map(question);
  const jsonQ = question(6);
  const streams = await Promise.all(streamQs.map(async (q) => consume(await client.chat.completions.create({ ...ask(q), stream: true, stream_options: { include_usage: true } }))));
  const wholes = wholeQs.map((q) => client.chat.completions.create(ask(q)).withResponse());
  const json = consume(await client.chat.completions.create({ ...ask(jsonQ), stream: true, response_format: { type: "json_object" } }));
  await waitUntil("every stream past its first tokens and every request on gpu", () => [...streams, json].every((s) => s.read.chunks >= 2) && h.router.inFlight("gpu") === 7);
  const before = streams.map((s) => s.read.text);

  // What the daemon does when a GPU fault takes the backend down: health first, then the move.
  h.health.set("gpu", "gpu", "down", REASON);
  assert.equal(h.router.evacuate("gpu", REASON), 7, "every request in flight on gpu was moved");

  await Promise.all(streams.map((s) => s.done));
  streamQs.forEach((q, i) => {
    const s = streams[i]!.read;
    const tokens = tokensOf(q);
    assert.equal(s.error, undefined, `stream ${i}: no client error`);
    assert.ok(s.text.startsWith(before[i]!) && before[i] !== "", `stream ${i}: the answer had begun on gpu`);
    assert.equal(s.text, tokens.join(""), `stream ${i}: one complete answer, continuous across the seam, nothing repeated`);
    assert.equal(s.finish, "stop");
    assert.equal(s.lastModel, "small", "the final chunks name the model that finished the answer");
    assert.equal(s.usage?.completion_tokens, tokens.length, "usage adds up both tiers' output");
  });
  for (const q of streamQs) {
    const body = await raw.get(q)!;
    assert.equal(body.match(/^: llmsup: /gm)?.length, 1, "one seam");
    assert.match(body, /^: llmsup: the answer continues on tier 1 \(cpu\), moved off tier 0: gpu went down: GPU 0: XID 79: GPU has fallen off the bus$/m, "the seam says where and why");
    assert.equal(body.match(/^data: \[DONE\]$/gm)?.length, 1);
    assert.equal(body.match(/"role":"assistant"/g)?.length, 1, "one role chunk: the continuation's is not relayed");
  }

  for (const [i, w] of (await Promise.all(wholes)).entries()) {
    assert.equal(w.data.choices[0]!.message.content, tokensOf(wholeQs[i]!).join(""), "answered whole by the next tier");
    assert.equal(w.data.model, "small");
    assert.deepEqual([w.response.headers.get("x-llmsup-tier"), w.response.headers.get("x-llmsup-backend"), w.response.headers.get("x-llmsup-attempts")], ["1", "cpu", "2"]);
  }

  await json.done;
  assert.ok(json.read.chunks >= 2, "the json_object answer had begun");
  assert.ok(json.read.error instanceof APIError, "the json_object stream ends with an error, not as a success");
  assert.match((json.read.error as APIError).message, /could not be completed: gpu went down: GPU 0: XID 79.*; not continued: the request uses guided decoding \(response_format json_object\)/);
  const jsonRaw = await raw.get(jsonQ)!;
  assert.match(jsonRaw, /"code":"stream_interrupted"/);
  assert.doesNotMatch(jsonRaw, /\[DONE\]|: llmsup: the answer continues/);

  await waitUntil("gpu to stop generating: every upstream request on it was aborted", async () => (await running(gpu)) === 0, { timeoutMs: 2_000 });
  assert.equal(h.router.inFlight("gpu"), 0);
  const evacuated = h.events.filter((e) => e.event === "router.evacuated");
  assert.deepEqual(evacuated.map((e) => (e.event === "router.evacuated" ? [e.backend, e.route, e.requests, e.reason] : [])), [["gpu", "llama", 7, REASON]]);
  const moves = h.events.filter((e) => e.event === "router.failover" && e.reason === "evacuated");
  assert.equal(moves.length, 6, "four streams continued and two whole requests went on (the json_object stream did not)");
  assert.ok(moves.every((e) => e.event === "router.failover" && e.from.backend === "gpu" && e.to?.backend === "cpu"));
  assert.equal(h.router.breaker(h.config.routes[0]!.tiers[0]!).state, "closed", "a move is no verdict on the tier: its breaker counts nothing");
});

test("a stream moved off before its first token is answered by the next tier unseen: no seam, the headers name the tier that answered", async (t) => {
  const gpu = await sim(t, ["--model", "big", "--ttft", "20s"]);
  const cpu = await sim(t, ["--model", "small"]);
  const h = await startRouter(t, backend("gpu", "llamacpp", gpu.port) + backend("cpu", "llamacpp", cpu.port) + `[[route]]\nmodel = "llama"\ntiers = [{ backend = "gpu", model = "big", ttft_timeout = "30s" }, { backend = "cpu", model = "small" }]\n`, `hedge_after = "off"`);
  const { client, raw } = routerRecordingClient(h);
  const q = question(7);
  const pending = client.chat.completions.create({ ...ask(q), stream: true }).withResponse();
  await waitUntil("the stream waiting on gpu for its first token", async () => h.router.inFlight("gpu") === 1 && (await running(gpu)) === 1);
  h.health.set("gpu", "gpu", "down", REASON);
  assert.equal(h.router.evacuate("gpu", REASON), 1);
  const r = await pending;
  const read = consume(r.data);
  await read.done;
  assert.equal(read.read.error, undefined);
  assert.equal(read.read.text, tokensOf(q).join(""));
  assert.deepEqual([r.response.headers.get("x-llmsup-tier"), r.response.headers.get("x-llmsup-attempts")], ["1", "2"]);
  assert.doesNotMatch(await raw.get(q)!, /^: llmsup/m, "nothing of gpu's attempt reached the client");
  await waitUntil("gpu's request aborted", async () => (await running(gpu)) === 0, { timeoutMs: 2_000 });
});

test("a request moved off a backend goes back to none of its tiers, even while the backend's health still reads up; new requests are admission's business and still go there", async (t) => {
  const gpu = await sim(t, ["--model", "big", "--model", "big-long", "--token-rate", "8"]);
  const cpu = await sim(t, ["--model", "small"]);
  const h = await startRouter(
    t,
    backend("gpu", "llamacpp", gpu.port) + backend("cpu", "llamacpp", cpu.port) + `[[route]]\nmodel = "llama"\ntiers = [{ backend = "gpu", model = "big" }, { backend = "gpu", model = "big-long" }, { backend = "cpu", model = "small" }]\n`,
    `hedge_after = "off"`,
  );
  const { client, raw } = routerRecordingClient(h);
  const q = question(8);
  const s = consume(await client.chat.completions.create({ ...ask(q), stream: true }));
  await waitUntil("the stream past its first tokens", () => s.read.chunks >= 2);
  assert.equal(h.router.evacuate("gpu", "an operator drill"), 1);
  await s.done;
  assert.equal(s.read.error, undefined);
  assert.equal(s.read.text, tokensOf(q).join(""));
  assert.equal(s.read.lastModel, "small", "finished on cpu, tier 2: tier 1 is on the backend it was moved off");
  assert.match(await raw.get(q)!, /^: llmsup: the answer continues on tier 2 \(cpu\), moved off tier 0: gpu went down: an operator drill$/m);
  assert.equal(h.health.get("gpu").state, "healthy");
  const next = await client.chat.completions.create({ ...ask(question(9)), max_tokens: 2 }).withResponse();
  assert.equal(next.response.headers.get("x-llmsup-tier"), "0");
});

test("InFlight.evacuate: every hold with a mover on the backend is moved, each request counted once per route; released holds and other backends are left alone", () => {
  const f = new InFlight();
  const moved: string[] = [];
  const mover = (request: object, route: string, name: string) => ({ request, route, move: (why: string) => void moved.push(`${name}: ${why}`) });
  const r1 = {};
  const r2 = {};
  const r3 = {};
  f.hold("gpu", mover(r1, "llama", "r1 tier 0"));
  // One request on two tiers of the same backend (a hedged race): moved twice, counted once.
  f.hold("gpu", mover(r1, "llama", "r1 tier 1"));
  f.hold("gpu", mover(r2, "qwen", "r2"));
  const gone = f.hold("gpu", mover(r3, "llama", "r3"));
  f.hold("cpu", mover({}, "llama", "on cpu"));
  f.hold("gpu");
  gone();
  assert.deepEqual([...f.evacuate("gpu", "GPU 0 lost")], [["llama", 1], ["qwen", 1]]);
  assert.deepEqual(moved, ["r1 tier 0: GPU 0 lost", "r1 tier 1: GPU 0 lost", "r2: GPU 0 lost"]);
  assert.equal(f.get("gpu"), 4, "moving is not releasing: each hold is given back when its attempt ends");
  assert.deepEqual([...f.evacuate("none", "x")], []);
});
