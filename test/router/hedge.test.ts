/**
 * Hedged first token: a primary that is wedged or slow to its first token
 * delays the client by hedge_after, not by ttft_timeout — the next tier runs
 * alongside, the first to produce a token answers, the other is cancelled
 * (the backend sees its request end) and is not held against its tier. The
 * auto delay follows the tier's recent first-token times and leaves a healthy
 * tier alone.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { readFileSync } from "node:fs";
import { AUTO_HEDGE, autoHedgeAfter, hedgeDelay, percentile, TtftWindow } from "../../src/router/hedge-policy.ts";
import { startSim, type SimProcess } from "../helpers/sim.ts";
import { backend, startRouter, type RouterHarness } from "../helpers/router.ts";
import { waitUntil } from "../helpers/wait.ts";

const ask = (model = "llama") => ({ model, messages: [{ role: "user" as const, content: "Why do GPUs wedge?" }] });
const route = (tiers: string, model = "llama") => `[[route]]\nmodel = "${model}"\ntiers = [\n${tiers}\n]\n`;
const twoTiers = route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`);

/** One request to a simulator on a connection of its own that closes after it: the test's own requests never count as open connections. */
function once(url: string, method = "GET", body?: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false, headers: { connection: "close", "content-type": "application/json" } }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (d: string) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

interface Sim extends SimProcess {
  fault(f: unknown): Promise<void>;
}

async function sim(t: Parameters<typeof startSim>[0], kind = "llamacpp"): Promise<Sim> {
  const s = await startSim(t, ["--kind", kind, "--port", "0", "--load-time", "0s"]);
  await waitUntil(`${s.url}/health to answer 200`, async () => (await once(`${s.url}/health`).catch(() => undefined))?.status === 200);
  return Object.assign(s, {
    async fault(f: unknown) {
      const r = await once(`${s.url}/_sim/fault`, "POST", f);
      assert.equal(r.status, 200, r.text);
    },
  });
}

async function simState(s: SimProcess): Promise<{ running: number; requests: number }> {
  return JSON.parse((await once(`${s.url}/_sim/state`)).text) as { running: number; requests: number };
}

/** Established TCP connections the simulator holds on its port, read from the kernel (Linux): what the backend sees of a cancel. */
function openConnections(s: SimProcess): number {
  const port = s.port.toString(16).toUpperCase().padStart(4, "0");
  let n = 0;
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is f[1] ("IP:PORT"), st is f[3]; 01 = ESTABLISHED.
      if (f.length > 3 && f[1]!.endsWith(`:${port}`) && f[3] === "01") n++;
    }
  }
  return n;
}

async function hedgeCounts(h: RouterHarness): Promise<Record<string, number>> {
  const m = await h.metrics.registry.getSingleMetric("llmsup_hedges_total")!.get();
  const out: Record<string, number> = {};
  for (const v of m.values) out[String(v.labels.outcome)] = (out[String(v.labels.outcome)] ?? 0) + v.value;
  return out;
}

/** Streams one answer; when its first token came (ms after the call), its text, finish reason and the llmsup headers. */
async function streamOne(h: RouterHarness) {
  const started = Date.now();
  const { data, response } = await h.client.chat.completions.create({ ...ask(), stream: true }).withResponse();
  let firstTokenMs: number | undefined;
  let text = "";
  let finish: string | null | undefined;
  for await (const c of data) {
    const piece = c.choices[0]?.delta?.content ?? "";
    if (piece !== "" && firstTokenMs === undefined) firstTokenMs = Date.now() - started;
    text += piece;
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  return { firstTokenMs: firstTokenMs ?? Infinity, text, finish, tier: response.headers.get("x-llmsup-tier"), attempts: response.headers.get("x-llmsup-attempts") };
}

// ---------------------------------------------------------------------------- the policy, pure

test("auto hedge_after: 3 × the p95 of the tier's recent first-token times, between 1 s and 10 s, and 10 s while there is no history", () => {
  assert.equal(percentile([5, 1, 4, 2, 3], 0.95), 5);
  assert.equal(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 0.95), 95);
  assert.equal(percentile([], 0.95), undefined);

  assert.equal(autoHedgeAfter([]), 10_000, "no history: the ceiling");
  assert.equal(autoHedgeAfter(Array(AUTO_HEDGE.minSamples - 1).fill(50)), 10_000, "too few samples to know: the ceiling");
  const steady = [...Array(95).fill(500), ...Array(5).fill(800)];
  assert.equal(autoHedgeAfter(steady), 1_500, "p95 500 ms → 1.5 s");
  assert.equal(autoHedgeAfter(Array(50).fill(40)), 1_000, "a fast tier: the floor, 1 s");
  assert.equal(autoHedgeAfter(Array(50).fill(6_000)), 10_000, "a slow tier: the ceiling, 10 s");
  assert.equal(autoHedgeAfter([...Array(96).fill(100), 30_000, 30_000, 30_000, 30_000]), 1_000, "a few outliers beyond the p95 do not move it");

  assert.equal(hedgeDelay("off", () => steady), undefined, "off: never");
  assert.equal(hedgeDelay(750, () => steady), 750, "a duration is used as is");
  assert.equal(hedgeDelay("auto", () => steady), 1_500);
});

test("the first-token window forgets samples older than five minutes and keeps only the latest ones", () => {
  const w = new TtftWindow(AUTO_HEDGE, 64, 1);
  for (let i = 0; i < 30; i++) w.record(0, 3_000);
  assert.equal(w.autoDelay(1_000), 9_000);
  assert.equal(w.autoDelay(AUTO_HEDGE.windowMs + 1), 10_000, "five minutes later the samples are gone: the ceiling again");
  for (let i = 0; i < 100; i++) w.record(AUTO_HEDGE.windowMs + 2, 100);
  assert.equal(w.samples(AUTO_HEDGE.windowMs + 2).length, 64, "a fixed ring");
  assert.equal(w.autoDelay(AUTO_HEDGE.windowMs + 2), 1_000);
});

// ---------------------------------------------------------------------------- on the wire

test("a wedged primary (stream headers, then nothing) with hedge_after 500ms: the first token comes from the next tier within 500 ms + its own first token + a margin, the answer is whole, and the primary's connection is closed", async (t) => {
  const a = await sim(t);
  const b = await sim(t);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + twoTiers, `hedge_after = "500ms"`);
  await a.fault({ wedge: true });
  const pending = streamOne(h);
  await waitUntil("the primary to have the request", async () => (await simState(a)).requests >= 1);
  assert.ok(openConnections(a) >= 1, "the wedged request holds a connection on the primary");
  const r = await pending;
  assert.ok(r.firstTokenMs <= 500 + 20 + 700, `first token after ${r.firstTokenMs} ms`);
  assert.ok(r.firstTokenMs >= 450, `not before hedge_after (${r.firstTokenMs} ms)`);
  assert.equal(r.finish, "stop");
  assert.ok(r.text.length > 0);
  assert.deepEqual([r.tier, r.attempts], ["1", "2"], "answered by tier 1; both attempts counted");
  await waitUntil("the primary to see its connection closed", () => openConnections(a) === 0, { timeoutMs: 1_000 });
  assert.deepEqual(await hedgeCounts(h), { won: 1 });
  const tier0 = h.config.routes[0]!.tiers[0]!;
  assert.equal(h.router.breaker(tier0).state, "closed");
  assert.equal(h.router.unavailable(tier0), undefined, "the cancelled primary is not held against its tier");
});

test("a primary whose first token takes 20 s, streaming: the next tier answers after hedge_after, and the primary's request is cancelled (running back to 0 within a second)", async (t) => {
  const a = await sim(t);
  const b = await sim(t);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + twoTiers, `hedge_after = "500ms"`);
  await a.fault({ ttft_ms: 20_000 });
  const pending = streamOne(h);
  await waitUntil("the primary to be generating", async () => (await simState(a)).running === 1);
  const r = await pending;
  assert.ok(r.firstTokenMs <= 500 + 20 + 700, `first token after ${r.firstTokenMs} ms`);
  assert.equal(r.finish, "stop");
  assert.equal(r.tier, "1");
  await waitUntil("the primary's request to be cancelled", async () => (await simState(a)).running === 0, { timeoutMs: 1_000 });
  assert.deepEqual(await hedgeCounts(h), { won: 1 });
  assert.equal(h.router.breaker(h.config.routes[0]!.tiers[0]!).state, "closed");
});

test("not streaming, a primary 20 s from its answer: the next tier's whole answer is sent after hedge_after and the primary's request is cancelled", async (t) => {
  const a = await sim(t);
  const b = await sim(t);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + twoTiers, `hedge_after = "500ms"`);
  await a.fault({ ttft_ms: 20_000 });
  const started = Date.now();
  const r = await h.client.chat.completions.create(ask()).withResponse();
  const took = Date.now() - started;
  assert.ok(took <= 500 + 1_000, `answered after ${took} ms`);
  assert.equal(r.data.choices[0]?.finish_reason, "stop");
  assert.deepEqual([r.response.headers.get("x-llmsup-tier"), r.response.headers.get("x-llmsup-attempts")], ["1", "2"]);
  await waitUntil("the primary's request to be cancelled", async () => (await simState(a)).running === 0, { timeoutMs: 1_000 });
  assert.deepEqual(await hedgeCounts(h), { won: 1 });
});

test("a hedge that fails first leaves the slow primary running, and the primary's answer is the one sent", async (t) => {
  const a = await sim(t);
  const b = await sim(t);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + twoTiers, `hedge_after = "300ms"\nretry_base_delay = "10ms"`);
  await a.fault({ ttft_ms: 1_500 });
  await b.fault({ status: { code: 500 } });
  const started = Date.now();
  const r = await h.client.chat.completions.create(ask()).withResponse();
  assert.ok(Date.now() - started >= 1_400, "the primary's own answer, when it came");
  assert.equal(r.response.headers.get("x-llmsup-tier"), "0");
  assert.equal(r.data.choices[0]?.finish_reason, "stop");
  assert.deepEqual(await hedgeCounts(h), { failed: 1 });
  assert.equal(h.router.breaker(h.config.routes[0]!.tiers[0]!).state, "closed");
});

test("hedge_after = \"off\": a slow primary is waited for, with no second request", async (t) => {
  const a = await sim(t);
  const b = await sim(t);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + twoTiers, `hedge_after = "off"`);
  await a.fault({ ttft_ms: 700 });
  const r = await h.client.chat.completions.create(ask()).withResponse();
  assert.equal(r.response.headers.get("x-llmsup-tier"), "0");
  assert.equal((await simState(b)).requests, 0);
  assert.deepEqual(await hedgeCounts(h), {});
});

test("200 requests to a healthy primary with hedge_after \"auto\": at most 5 % are hedged", async (t) => {
  const a = await sim(t);
  const b = await sim(t);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + twoTiers);
  assert.equal(h.config.router.hedge_after, "auto", "the default");
  let hedgedByHeader = 0;
  for (let batch = 0; batch < 25; batch++) {
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        const r = await h.client.chat.completions.create({ ...ask(), max_tokens: 4 }).withResponse();
        if (r.response.headers.get("x-llmsup-attempts") !== "1") hedgedByHeader++;
      }),
    );
  }
  const counts = await hedgeCounts(h);
  const hedged = Object.values(counts).reduce((x, y) => x + y, 0);
  assert.ok(hedged <= 10, `hedged ${hedged} of 200`);
  assert.ok(hedgedByHeader <= 10);
  const delay = h.router.hedges.delay(h.config.routes[0]!.tiers[0]!, "auto", Date.now())!;
  assert.ok(delay >= 1_000 && delay < 10_000, `the delay adapted from the 10 s ceiling to the primary's own first-token times (${delay} ms)`);
});
