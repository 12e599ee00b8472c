/**
 * Requests in flight per backend (what `llmsup drain` reports and waits on):
 * a stream counts until its last byte; a client that leaves, a failed
 * attempt, a hedged loser and a stream broken after its commit point give
 * their backend back; the count never goes negative and is on /metrics.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { InFlight } from "../../src/router/inflight.ts";
import { startSim, type SimProcess } from "../helpers/sim.ts";
import { backend, startRouter, type RouterHarness } from "../helpers/router.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";

const route = `[[route]]\nmodel = "llama"\ntiers = [{ backend = "a", model = "m" }, { backend = "b", model = "m" }]\n`;
const ask = { model: "llama", messages: [{ role: "user" as const, content: "Why do GPUs wedge?" }] };

async function sim(t: Parameters<typeof startSim>[0], args: string[] = []): Promise<SimProcess> {
  const s = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", ...args]);
  await waitUntil(`${s.url}/health to answer 200`, () => answers200(`${s.url}/health`));
  return s;
}

const counts = (h: RouterHarness) => ({ a: h.router.inFlight("a"), b: h.router.inFlight("b") });

async function gauge(h: RouterHarness): Promise<Record<string, number>> {
  const m = await h.metrics.registry.getSingleMetric("llmsup_backend_inflight_requests")!.get();
  return Object.fromEntries(m.values.map((v) => [String(v.labels.backend), v.value]));
}

test("the counter: one per hold, each release once, never below zero", () => {
  const f = new InFlight();
  assert.equal(f.get("a"), 0);
  const r1 = f.hold("a");
  const r2 = f.hold("a");
  const r3 = f.hold("b");
  assert.deepEqual([f.get("a"), f.get("b")], [2, 1]);
  r1();
  r1();
  r1();
  assert.equal(f.get("a"), 1, "a second release of the same hold does nothing");
  r2();
  r2();
  assert.equal(f.get("a"), 0);
  r3();
  assert.equal(f.get("b"), 0);
  assert.equal(f.get("c"), 0, "a backend never held");
});

test("a stream on tier 0 counts on its backend until its last byte; a client that leaves mid-stream and a failed attempt give it back; /metrics shows it", async (t) => {
  const a = await sim(t, ["--token-rate", "20"]);
  const b = await sim(t);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route, `hedge_after = "off"\nretry_base_delay = "10ms"`);
  assert.deepEqual(counts(h), { a: 0, b: 0 });

  // A whole stream: counted while it runs, given back once it ended.
  const stream = await h.client.chat.completions.create({ ...ask, stream: true });
  let text = "";
  let finish: string | null | undefined;
  let seen: { a: number; b: number } | undefined;
  let during: Record<string, number> | undefined;
  for await (const c of stream) {
    text += c.choices[0]?.delta?.content ?? "";
    finish = c.choices[0]?.finish_reason ?? finish;
    if (!seen && text !== "") {
      seen = counts(h);
      during = await gauge(h);
    }
  }
  assert.deepEqual(seen, { a: 1, b: 0 }, "the stream is on a while it runs");
  assert.deepEqual(during, { a: 1, b: 0 }, "llmsup_backend_inflight_requests{backend} says so, every configured backend listed");
  assert.equal(finish, "stop");
  await waitUntil("a's count back to 0 after the stream", () => h.router.inFlight("a") === 0, { timeoutMs: 1_000 });
  assert.deepEqual(await gauge(h), { a: 0, b: 0 });

  // A client that leaves mid-stream.
  const ctl = new AbortController();
  const gone = await h.client.chat.completions.create({ ...ask, stream: true }, { signal: ctl.signal });
  for await (const c of gone) {
    if ((c.choices[0]?.delta?.content ?? "") !== "") break;
  }
  ctl.abort();
  await waitUntil("a's count back to 0 after the client left", () => h.router.inFlight("a") === 0, { timeoutMs: 2_000 });

  // A failing tier 0 (500, retried once, then the next tier): nothing left counted anywhere.
  await a.setFault({ status: { code: 500 } });
  const r = await h.client.chat.completions.create(ask).withResponse();
  assert.equal(r.response.headers.get("x-llmsup-tier"), "1");
  await waitUntil("both counts back to 0 after a failover", () => counts(h).a === 0 && counts(h).b === 0, { timeoutMs: 1_000 });
});

test("hedged: the loser's backend is given back once its abort landed, while the winner's stream still counts", async (t) => {
  const a = await sim(t);
  const b = await sim(t, ["--token-rate", "15"]);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route, `hedge_after = "300ms"`);

  // a takes 20 s to its first token: b is started alongside after 300 ms and answers; a is aborted.
  await a.setFault({ ttft_ms: 20_000 });
  const hedged = await h.client.chat.completions.create({ ...ask, stream: true }).withResponse();
  assert.equal(hedged.response.headers.get("x-llmsup-tier"), "1");
  let checked = false;
  for await (const c of hedged.data) {
    if (!checked && (c.choices[0]?.delta?.content ?? "") !== "") {
      await waitUntil("the hedged loser's backend given back", () => h.router.inFlight("a") === 0, { timeoutMs: 1_000 });
      assert.equal(h.router.inFlight("b"), 1, "the winner's stream still runs");
      checked = true;
    }
  }
  assert.ok(checked);
  await waitUntil("both back to 0", () => counts(h).a === 0 && counts(h).b === 0, { timeoutMs: 1_000 });
});

test("a stream broken after its first tokens is counted on the tier that continues it, no longer on the one that broke", async (t) => {
  const a = await sim(t, ["--cut-after", "3"]);
  const b = await sim(t, ["--token-rate", "15"]);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route, `hedge_after = "off"`);
  const broken = await h.client.chat.completions.create({ ...ask, stream: true });
  let onB: { a: number; b: number } | undefined;
  let finish: string | null | undefined;
  for await (const c of broken) {
    finish = c.choices[0]?.finish_reason ?? finish;
    if (!onB && h.router.inFlight("b") === 1) onB = counts(h);
  }
  assert.deepEqual(onB, { a: 0, b: 1 }, "the continuation is counted on b, the broken stream no longer on a");
  assert.equal(finish, "stop");
  await waitUntil("both back to 0", () => counts(h).a === 0 && counts(h).b === 0, { timeoutMs: 1_000 });
});

test("hedging and continuation together: a stream that claimed the answer and broke after hedge_after ran out is still continued whole", async (t) => {
  // a: 3 tokens at 5/s (past hedge_after 300 ms), then the connection is cut.
  const a = await sim(t, ["--cut-after", "3", "--token-rate", "5"]);
  const b = await sim(t, ["--token-rate", "50"]);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route, `hedge_after = "300ms"`);
  const stream = await h.client.chat.completions.create({ ...ask, stream: true });
  let text = "";
  let finish: string | null | undefined;
  for await (const c of stream) {
    text += c.choices[0]?.delta?.content ?? "";
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, "stop", "finished, not cut");
  assert.ok(text.length > 0);
  await waitUntil("both back to 0", () => counts(h).a === 0 && counts(h).b === 0, { timeoutMs: 1_000 });
});
