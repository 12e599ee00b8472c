/**
 * The router's word can be trusted: one outage is one fallback and one
 * recovery, a healed primary is back within probe_interval + 1 s without user
 * requests spent on it, evidence about one model never takes a whole backend
 * out, unknown context windows are not "too small", and requests that end for
 * their own reasons leave no breaker slot taken.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ContextWindows } from "../../src/health/context.ts";
import { ManualClock } from "../helpers/clock.ts";
import { freePort, startSim, type SimProcess } from "../helpers/sim.ts";
import { backend, startRouter } from "../helpers/router.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";

const Q = "How do GPUs fail?";
const ask = (model = "llama") => ({ model, messages: [{ role: "user" as const, content: Q }] });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function sim(t: Parameters<typeof startSim>[0], kind: string, args: string[] = []): Promise<SimProcess> {
  const s = await startSim(t, ["--kind", kind, "--port", "0", "--load-time", "0s", ...args]);
  const health = kind === "ollama" ? "/" : "/health";
  await waitUntil(`${s.url}${health} to answer 200`, () => answers200(`${s.url}${health}`));
  return s;
}

const route = (tiers: string, model = "llama") => `[[route]]\nmodel = "${model}"\ntiers = [\n${tiers}\n]\n`;
const requestsSeen = async (s: SimProcess) => ((await (await fetch(`${s.url}/_sim/state`)).json()) as { requests: number }).requests;

test("a primary failing with 503 and then healing: the fallback answers meanwhile, the primary is back within probe_interval + 1 s, and no user request is spent on it while it fails", async (t) => {
  const a = await sim(t, "llamacpp");
  const b = await sim(t, "llamacpp");
  const h = await startRouter(
    t,
    `[health]\nprobe_interval = "1s"\n` + backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`),
    `retry_base_delay = "10ms"\n[router.breaker]\nfailure_threshold = 2\nopen_interval = "30s"`,
  );
  await a.setFault({ status: { code: 503 } });
  const answers: { tier: string; attempts: number; at: number }[] = [];
  const one = async () => {
    const r = await h.client.chat.completions.create(ask()).withResponse();
    answers.push({ tier: r.response.headers.get("x-llmsup-tier")!, attempts: Number(r.response.headers.get("x-llmsup-attempts")), at: Date.now() });
  };
  for (let i = 0; i < 12; i++) {
    await one();
    await sleep(250);
  }
  assert.ok(answers.every((x) => x.tier === "1"), "every request answered by the fallback while the primary fails");
  assert.equal(answers[0]!.attempts, 3, "the first request tried the primary twice (503, retry 503), which opened its breaker");
  const spentAfterOpen = answers.slice(1).filter((x) => x.attempts > 1).length;
  assert.ok(spentAfterOpen <= 1, `at most one user request went to the failing primary after its breaker opened (saw ${spentAfterOpen})`);
  const primaryBefore = await requestsSeen(a);

  const healedAt = Date.now();
  await fetch(`${a.url}/_sim/fault`, { method: "DELETE" });
  let backAt: number | undefined;
  while (Date.now() - healedAt < 5_000 && backAt === undefined) {
    await one();
    if (answers.at(-1)!.tier === "0") backAt = answers.at(-1)!.at;
    else await sleep(100);
  }
  assert.ok(backAt !== undefined, "the healed primary serves again");
  assert.ok(backAt - healedAt <= 1_000 + 1_000, `back on the primary ${backAt - healedAt} ms after it healed (probe_interval 1 s + 1 s)`);
  const healed = h.events.find((e) => e.event === "router.tier.healed");
  assert.ok(healed, "a background probe closed the breaker, not a user request");
  assert.ok((await requestsSeen(a)) >= primaryBefore + 1);
  await sleep(1_200); // the recovery hold
  const routeEvents = h.events.filter((e) => e.event.startsWith("router.route.")).map((e) => e.event);
  assert.deepEqual(routeEvents, ["router.route.fallback", "router.route.recovered"], "one outage: one fallback, one recovery");
});

test("a connection reset in the middle of one model's answer counts against that model only: the backend's other model keeps being served by it", async (t) => {
  const a = await sim(t, "llamacpp", ["--model", "A", "--model", "B"]);
  const b = await sim(t, "llamacpp", ["--model", "A", "--model", "B"]);
  const h = await startRouter(
    t,
    backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route(`{ backend = "a", model = "A" },\n{ backend = "b", model = "A" }`, "ra") + route(`{ backend = "a", model = "B" },\n{ backend = "b", model = "B" }`, "rb"),
    `[router.breaker]\nfailure_threshold = 1`,
  );
  await a.setFault({ cut_after: 2 });
  const stream = await h.client.chat.completions.create({ ...ask("ra"), stream: true });
  let text = "";
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
  assert.ok(text.length > 0, "the cut answer was continued elsewhere");
  await fetch(`${a.url}/_sim/fault`, { method: "DELETE" });
  const [tA, tB] = h.config.routes.map((r) => r.tiers[0]!);
  assert.equal(h.router.breaker(tA!).state, "open", "model A's breaker counted the reset");
  await sleep(300); // the immediate shallow probe the reset triggered has answered
  assert.equal(h.health.get("a").state, "healthy", "a reset is a suspicion, checked by a probe, not a verdict on the backend");
  assert.equal(h.router.breaker(tB!).state, "closed");
  const r = await h.client.chat.completions.create(ask("rb")).withResponse();
  assert.equal(r.response.headers.get("x-llmsup-tier"), "0", "model B still served by backend a");
});

test("a backend that refuses connections is DOWN until a shallow probe passes, then serves again by itself", async (t) => {
  const port = await freePort();
  const b = await sim(t, "llamacpp");
  const h = await startRouter(t, `[health]\nprobe_interval = "300ms"\n` + backend("a", "llamacpp", port) + backend("b", "llamacpp", b.port) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`), `recovery_hold = "0s"`);
  const first = await h.client.chat.completions.create(ask()).withResponse();
  assert.equal(first.response.headers.get("x-llmsup-tier"), "1");
  assert.equal(h.health.get("a").state, "down");
  await startSim(t, ["--kind", "llamacpp", "--port", String(port), "--load-time", "0s"]);
  await waitUntil("the checks to find backend a listening again", () => h.health.get("a").state === "healthy", { timeoutMs: 5_000 });
  const again = await h.client.chat.completions.create(ask()).withResponse();
  assert.equal(again.response.headers.get("x-llmsup-tier"), "0");
  assert.deepEqual(h.events.filter((e) => e.event.startsWith("router.route.")).map((e) => e.event), ["router.route.fallback", "router.route.recovered"]);
});

test("no context configured anywhere: after a context-length error the next tier (window unknown) answers", async (t) => {
  const a = await sim(t, "llamacpp");
  const b = await sim(t, "llamacpp");
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "openai", b.port) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`));
  await a.setFault({ context_error: true });
  const r = await h.client.chat.completions.create(ask()).withResponse();
  assert.equal(r.response.headers.get("x-llmsup-tier"), "1");
});

test("discovered windows: a tier known to be no larger is skipped without a request, and when every tier left is too small the caller gets a clean 400 context_length_exceeded", async (t) => {
  const a = await sim(t, "llamacpp", ["--ctx-size", "4096", "--parallel", "1"]);
  const b = await sim(t, "vllm", ["--max-model-len", "2048", "--model", "m"]);
  const windows = new ContextWindows({ clock: new ManualClock() });
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "vllm", b.port) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`), "", { contextWindow: (be, m) => windows.get(be, m) });
  for (const be of h.config.backends) await windows.refresh(be, ["m"]);
  assert.deepEqual([windows.get("a", "m"), windows.get("b", "m")], [4096, 2048], "read from /props and /v1/models");
  await a.setFault({ context_error: true });
  const before = await requestsSeen(b);
  const r = await h.fetch("/v1/chat/completions", { method: "POST", body: JSON.stringify(ask()) });
  assert.equal(r.status, 400);
  const body = (await r.json()) as { error: { code: string; message: string } };
  assert.equal(body.error.code, "context_length_exceeded");
  assert.match(body.error.message, /No tier has a context large enough/);
  assert.equal(await requestsSeen(b), before, "the smaller tier got no request");
  const tA = h.config.routes[0]!.tiers[0]!;
  assert.equal(h.router.breaker(tA).state, "closed", "a prompt too long is not the tier's fault");
});

test("100 requests the client aborts while one of them holds the half-open check: the slot is given back each time and no breaker doubles", async (t) => {
  const a = await sim(t, "llamacpp");
  const b = await sim(t, "llamacpp");
  const h = await startRouter(
    t,
    `[health]\nprobe_interval = "0s"\n` + backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`),
    `[router.breaker]\nfailure_threshold = 1\nopen_interval = "100ms"`,
  );
  const tier0 = h.config.routes[0]!.tiers[0]!;
  await a.setFault({ status: { code: 500 } });
  await h.client.chat.completions.create(ask());
  assert.equal(h.router.breaker(tier0).state, "open");
  await a.setFault({ ttft_ms: 10_000 });
  await sleep(150);
  for (let batch = 0; batch < 10; batch++) {
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        const ctl = new AbortController();
        const timer = setTimeout(() => ctl.abort(), 60);
        await h.fetch("/v1/chat/completions", { method: "POST", body: JSON.stringify(ask()), signal: ctl.signal }).then((r) => r.text()).catch(() => undefined);
        clearTimeout(timer);
      }),
    );
  }
  // The router learns of each abort when the connection closes: give it that moment, never more than a deadline.
  // A request the client gave up on may still be on its way in: wait until the router has none left.
  await waitUntil("every aborted request to be over and the half-open check given back", () => h.server.requestsInFlight === 0 && h.router.breaker(tier0).state !== "half_open", { timeoutMs: 10_000 });
  const br = h.router.breaker(tier0);
  assert.equal(br.state, "open", "not stuck half-open");
  assert.ok(br.state === "open" && br.openMs === 100, "aborts are no verdict: the interval did not double");
  await fetch(`${a.url}/_sim/fault`, { method: "DELETE" });
  const r = await h.client.chat.completions.create(ask()).withResponse();
  assert.equal(r.response.headers.get("x-llmsup-tier"), "0", "the next request checks the tier and gets it back");
  assert.equal(h.router.breaker(tier0).state, "closed");
});

test("429 with a short Retry-After is waited out once on the same tier; a long one falls over at once and cools the tier off", async (t) => {
  const a = await sim(t, "llamacpp");
  const b = await sim(t, "llamacpp");
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`), `retry_after_wait_max = "3s"`);
  await a.setFault({ rate_limit: { count: 1, retry_after: 1 } });
  const started = Date.now();
  const short = await h.client.chat.completions.create(ask()).withResponse();
  assert.deepEqual([short.response.headers.get("x-llmsup-tier"), short.response.headers.get("x-llmsup-attempts")], ["0", "2"], "the primary answered after the wait");
  assert.ok(Date.now() - started >= 950, "the Retry-After was honoured, not a tight loop");
  assert.equal(h.router.unavailable(h.config.routes[0]!.tiers[0]!), undefined, "no cooldown for a wait that was taken");
  await a.setFault({ rate_limit: { count: 1, retry_after: 30 } });
  const t0 = Date.now();
  const long = await h.client.chat.completions.create(ask()).withResponse();
  assert.equal(long.response.headers.get("x-llmsup-tier"), "1");
  assert.ok(Date.now() - t0 < 900, "no wait beyond retry_after_wait_max");
  assert.match(h.router.unavailable(h.config.routes[0]!.tiers[0]!) ?? "", /cooling off for (29|30)s more/);
});

test("a managed backend that passed readiness again starts with closed breakers: the route is back on it at once", async (t) => {
  const a = await sim(t, "llamacpp");
  const b = await sim(t, "llamacpp");
  const h = await startRouter(t, `[health]\nprobe_interval = "0s"\n` + backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`), `recovery_hold = "0s"\n[router.breaker]\nfailure_threshold = 1\nopen_interval = "5m"`);
  const tier0 = h.config.routes[0]!.tiers[0]!;
  await a.setFault({ status: { code: 500 } });
  await h.client.chat.completions.create(ask());
  assert.equal(h.router.breaker(tier0).state, "open");
  assert.equal(h.router.servingTier(h.config.routes[0]!), 1);
  await fetch(`${a.url}/_sim/fault`, { method: "DELETE" });
  h.router.resetBackend("a");
  assert.equal(h.router.breaker(tier0).state, "closed");
  assert.equal(h.router.servingTier(h.config.routes[0]!), 0);
  const r = await h.client.chat.completions.create(ask()).withResponse();
  assert.equal(r.response.headers.get("x-llmsup-tier"), "0");
});

test("metrics and the snapshot read the model: the serving tier per route, and each tier's admissibility with its reason and until when", async (t) => {
  const a = await sim(t, "llamacpp");
  const b = await sim(t, "llamacpp");
  const h = await startRouter(t, `[health]\nprobe_interval = "0s"\n` + backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`), `[router.breaker]\nfailure_threshold = 1\nopen_interval = "60s"`);
  const scrape = async () => (await h.fetch("/metrics")).text();
  let m = await scrape();
  assert.match(m, /llmsup_route_serving_tier\{route="llama"\} 0/);
  assert.match(m, /llmsup_tier_admissible\{route="llama",tier="0",backend="a",reason="admissible"\} 1/);
  await a.setFault({ status: { code: 500 } });
  await h.client.chat.completions.create(ask());
  m = await scrape();
  assert.match(m, /llmsup_route_serving_tier\{route="llama"\} 1/);
  assert.match(m, /llmsup_tier_admissible\{route="llama",tier="0",backend="a",reason="breaker_open"\} 0/);
  assert.doesNotMatch(m, /tier="0",backend="a",reason="admissible"/, "the old reason's series is gone");
  const snap = h.router.snapshot().routes[0]!;
  assert.equal(snap.serving, 1);
  const a0 = snap.tiers[0]!.admission;
  assert.ok(!a0.admissible && a0.code === "breaker_open" && a0.until !== undefined && a0.until > Date.now() + 50_000, "out, why, and until when");
});
