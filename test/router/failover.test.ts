/** The routing socket through the official openai client, with simulators as tiers. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { APIError } from "openai";
import { canonicalTokens, chatKey } from "../../src/sim/backend/answer.ts";
import { freePort, startSim, type SimProcess } from "../helpers/sim.ts";
import { backend, startRouter } from "../helpers/router.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";

const Q = "How do GPUs fail?";
const FULL = canonicalTokens(chatKey([{ role: "user", content: Q }])).join("");
const ask = (model = "llama", extra: Record<string, unknown> = {}) => ({ model, messages: [{ role: "user" as const, content: Q }], ...extra });
const askStream = () => ({ model: "llama", messages: [{ role: "user" as const, content: Q }], stream: true as const });

async function llama(t: Parameters<typeof startSim>[0], args: string[] = []): Promise<SimProcess> {
  const sim = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", ...args]);
  await waitUntil(`${sim.url}/health to answer 200`, () => answers200(`${sim.url}/health`));
  return sim;
}

async function lastRequest(sim: SimProcess): Promise<Record<string, unknown>> {
  return ((await (await fetch(`${sim.url}/_sim/state`)).json()) as { last_request: Record<string, unknown> }).last_request;
}

function route(tiers: string, model = "llama"): string {
  return `[[route]]\nmodel = "${model}"\ntiers = [\n${tiers}\n]\n`;
}

test("the first tier answers: headers say so, model and usage pass through", async (t) => {
  const a = await llama(t, ["--model", "llama-a"]);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + route(`{ backend = "a", model = "llama-a" }`));
  const r = await h.client.chat.completions.create(ask()).withResponse();
  assert.equal(r.data.choices[0]!.message.content, FULL);
  assert.equal(r.data.model, "llama-a", "the model that answered");
  assert.ok(r.data.usage && r.data.usage.completion_tokens > 0);
  assert.equal(r.response.headers.get("x-llmsup-tier"), "0");
  assert.equal(r.response.headers.get("x-llmsup-backend"), "a");
  assert.equal(r.response.headers.get("x-llmsup-degraded"), "false");
  assert.equal(r.response.headers.get("x-llmsup-attempts"), "1");
  assert.equal((r.data as unknown as Record<string, unknown>)._degraded, undefined);
  assert.equal((await lastRequest(a)).model, "llama-a", "the model field is rewritten per tier");
});

test("connection refused → the next tier at once, marked degraded with the tier's notice", async (t) => {
  const dead = await freePort();
  const b = await llama(t);
  const h = await startRouter(
    t,
    backend("gpu", "vllm", dead) + backend("cpu", "llamacpp", b.port) + route(`{ backend = "gpu", model = "m" },\n{ backend = "cpu", model = "q4", notice = "Response from fallback" }`),
  );
  const r = await h.client.chat.completions.create(ask()).withResponse();
  assert.equal(r.data.choices[0]!.message.content, FULL);
  assert.equal(r.response.headers.get("x-llmsup-tier"), "1");
  assert.equal(r.response.headers.get("x-llmsup-degraded"), "true");
  assert.equal(r.response.headers.get("x-llmsup-notice"), "Response from fallback");
  const body = r.data as unknown as Record<string, unknown>;
  assert.deepEqual([body._backend, body._degraded, body._notice], ["cpu", true, "Response from fallback"]);
  assert.equal(h.health.get("gpu").state, "down", "a connection error takes the backend down");
  const fo = h.events.find((e) => e.event === "router.failover");
  assert.ok(fo && fo.event === "router.failover" && fo.reason === "connect" && fo.to?.backend === "cpu");
  // The next request does not even try the dead tier.
  const again = await h.client.chat.completions.create(ask()).withResponse();
  assert.equal(again.response.headers.get("x-llmsup-attempts"), "1");
});

test("5xx: one jittered retry on the same tier, then the next tier", async (t) => {
  const a = await llama(t);
  const b = await llama(t);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`));
  await a.setFault({ status: { code: 503, count: 1 } });
  const once = await h.client.chat.completions.create(ask()).withResponse();
  assert.deepEqual([once.response.headers.get("x-llmsup-tier"), once.response.headers.get("x-llmsup-attempts")], ["0", "2"], "retried on the same tier");
  await a.setFault({ status: { code: 500 } });
  const persistent = await h.client.chat.completions.create(ask()).withResponse();
  assert.deepEqual([persistent.response.headers.get("x-llmsup-tier"), persistent.response.headers.get("x-llmsup-attempts")], ["1", "3"], "one retry, then fall over");
  assert.equal(persistent.data.choices[0]!.message.content, FULL);
});

test("429 honours Retry-After as the tier's cooldown, with and without the header", async (t) => {
  const a = await llama(t);
  const b = await llama(t);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`), `retry_after_max = "60s"\n[router.breaker]\nopen_interval = "2s"`);
  await a.setFault({ rate_limit: { count: 1, retry_after: 30 } });
  const first = await h.client.chat.completions.create(ask()).withResponse();
  assert.deepEqual([first.response.headers.get("x-llmsup-tier"), first.response.headers.get("x-llmsup-attempts")], ["1", "2"]);
  const during = await h.client.chat.completions.create(ask()).withResponse();
  assert.deepEqual([during.response.headers.get("x-llmsup-tier"), during.response.headers.get("x-llmsup-attempts")], ["1", "1"], "tier 0 is skipped while it cools off");
  assert.match(h.router.unavailable(h.config.routes[0]!.tiers[0]!) ?? "", /cooling off for (29|30)s more \(429 from the backend, Retry-After 30s\)/);
});

test("429 without Retry-After cools the tier off for the breaker's open interval", async (t) => {
  const a = await llama(t);
  const b = await llama(t);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`), `[router.breaker]\nopen_interval = "7s"`);
  await a.setFault({ rate_limit: { count: 1, retry_after: null } });
  await h.client.chat.completions.create(ask());
  assert.match(h.router.unavailable(h.config.routes[0]!.tiers[0]!) ?? "", /cooling off for [67]s more/);
});

test("a silent first token (streaming) falls over invisibly within ttft_timeout", async (t) => {
  const a = await llama(t, ["--ttft", "5s"]);
  const b = await llama(t);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route(`{ backend = "a", model = "m", ttft_timeout = "400ms" },\n{ backend = "b", model = "m" }`));
  const t0 = Date.now();
  const { data: stream, response } = await h.client.chat.completions.create(askStream()).withResponse();
  let text = "";
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
  assert.equal(text, FULL, "the client sees one clean answer");
  assert.equal(response.headers.get("x-llmsup-tier"), "1");
  assert.ok(Date.now() - t0 < 3_000, "did not wait for the slow tier");
  assert.ok(h.events.some((e) => e.event === "router.failover" && e.reason === "ttft_timeout"));
});

test("a wedged tier (stream headers, then nothing) and a hung one (nothing at all) both fail over", async (t) => {
  const wedged = await llama(t, ["--wedge"]);
  const hung = await llama(t);
  const good = await llama(t);
  await hung.setFault({ hang: true });
  const h = await startRouter(
    t,
    backend("w", "llamacpp", wedged.port) + backend("h", "llamacpp", hung.port) + backend("g", "llamacpp", good.port) +
      route(`{ backend = "w", model = "m", ttft_timeout = "300ms" },\n{ backend = "h", model = "m", ttft_timeout = "300ms" },\n{ backend = "g", model = "m" }`),
  );
  const whole = await h.client.chat.completions.create(ask()).withResponse();
  assert.equal(whole.response.headers.get("x-llmsup-tier"), "2");
  const { data: stream, response } = await h.client.chat.completions.create(askStream()).withResponse();
  let text = "";
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
  assert.equal(text, FULL);
  assert.equal(response.headers.get("x-llmsup-tier"), "2");
});

test("a stream cut after the commit is continued on the next tier that supports prefill", async (t) => {
  const a = await llama(t, ["--cut-after", "5"]);
  const b = await llama(t);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`));
  const stream = await h.client.chat.completions.create(askStream());
  let text = "";
  let finish: string | null = null;
  for await (const c of stream) {
    text += c.choices[0]?.delta?.content ?? "";
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(text, FULL, "the answer is whole: five tokens from tier 0, the rest from tier 1");
  assert.equal(finish, "stop");
  const sent = await lastRequest(b);
  const msgs = sent.messages as { role: string; content: string }[];
  assert.equal(msgs.at(-1)!.role, "assistant");
  assert.equal(msgs.at(-1)!.content, canonicalTokens(chatKey([{ role: "user", content: Q }])).slice(0, 5).join(""));
});

for (const [name, fault, failure] of [
  ["cut", { cut_after: 4 }, /cut off/],
  ["stall", { stall_after: 4 }, /cut off.*idle timeout/],
  ["malformed chunk", { malformed_after: 3 }, /cut off.*malformed chunk/],
] as const) {
  test(`a stream broken after the commit (${name}) with nowhere to continue ends with an explicit error event, never [DONE]`, async (t) => {
    const a = await llama(t);
    await a.setFault(fault);
    const h = await startRouter(t, backend("a", "llamacpp", a.port) + route(`{ backend = "a", model = "m", idle_timeout = "400ms" }`));
    const stream = await h.client.chat.completions.create(askStream());
    let text = "";
    await assert.rejects(
      (async () => {
        for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
      })(),
      (e: unknown) => e instanceof APIError && failure.test(e.message),
    );
    assert.ok(text.length > 0 && FULL.startsWith(text) && text !== FULL, "a truncated answer never looks complete");
    const raw = await (await h.fetch("/v1/chat/completions", { method: "POST", body: JSON.stringify(ask("llama", { stream: true })) })).text();
    assert.doesNotMatch(raw, /\[DONE\]/);
    assert.match(raw, /"code":"stream_interrupted"/);
  });
}

test("a finished stream without [DONE] is finalised at once", async (t) => {
  const a = await llama(t, ["--no-done"]);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + route(`{ backend = "a", model = "m" }`));
  const raw = await (await h.fetch("/v1/chat/completions", { method: "POST", body: JSON.stringify(ask("llama", { stream: true })) })).text();
  assert.match(raw, /data: \[DONE\]\n\n$/);
  const stream = await h.client.chat.completions.create(askStream());
  let text = "";
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
  assert.equal(text, FULL);
});

test("400 context length skips to a tier with a larger context; other 4xx go back unchanged", async (t) => {
  const small = await llama(t, ["--ctx-size", "16"]);
  const big = await llama(t, ["--ctx-size", "8192"]);
  const h = await startRouter(
    t,
    backend("small", "llamacpp", small.port, "context = 16") + backend("big", "llamacpp", big.port, "context = 8192") +
      route(`{ backend = "small", model = "m" },\n{ backend = "big", model = "m" }`),
  );
  const r = await h.client.chat.completions.create(ask()).withResponse();
  assert.equal(r.response.headers.get("x-llmsup-tier"), "1");
  assert.ok(h.events.some((e) => e.event === "router.failover" && e.reason === "context_length"));
  await big.setFault({ status: { code: 422, message: "temperature must be between 0 and 2" } });
  await small.setFault({ status: { code: 422, message: "temperature must be between 0 and 2" } });
  const bad = await h.fetch("/v1/chat/completions", { method: "POST", body: JSON.stringify({ ...ask(), max_tokens: 1, messages: [{ role: "user", content: "x" }] }) });
  assert.equal(bad.status, 422);
  assert.equal(bad.headers.get("x-llmsup-attempts"), "1", "no failover for the caller's mistake");
  assert.match(await bad.text(), /temperature must be between 0 and 2/);
});

test("401/404 from a backend is misconfiguration: the breaker opens at once and an event says so", async (t) => {
  const a = await llama(t);
  const b = await llama(t);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`));
  await a.setFault({ status: { code: 401, message: "invalid api key" } });
  const r = await h.client.chat.completions.create(ask()).withResponse();
  assert.equal(r.response.headers.get("x-llmsup-tier"), "1");
  assert.ok(h.events.some((e) => e.event === "router.misconfigured" && e.backend === "a" && e.status === 401));
  assert.equal(h.router.breaker(h.config.routes[0]!.tiers[0]!).state, "open");
});

test("circuit breaker: open after consecutive failures, half-open probe, closed, traffic back on the primary", async (t) => {
  const a = await llama(t);
  const b = await llama(t);
  const h = await startRouter(
    t,
    backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`),
    `max_attempts = 4\nretry_base_delay = "10ms"\nrecovery_hold = "0s"\n[router.breaker]\nfailure_threshold = 2\nopen_interval = "600ms"`,
  );
  await a.setFault({ status: { code: 502 } });
  await h.client.chat.completions.create(ask()); // 502, retry 502 → two failures → open
  const tier0 = h.config.routes[0]!.tiers[0]!;
  assert.equal(h.router.breaker(tier0).state, "open");
  const skipped = await h.client.chat.completions.create(ask()).withResponse();
  assert.deepEqual([skipped.response.headers.get("x-llmsup-tier"), skipped.response.headers.get("x-llmsup-attempts")], ["1", "1"], "an open tier is skipped without a request");
  await fetch(`${a.url}/_sim/fault`, { method: "DELETE" });
  await new Promise((r) => setTimeout(r, 700));
  const probe = await h.client.chat.completions.create(ask()).withResponse();
  assert.equal(probe.response.headers.get("x-llmsup-tier"), "0", "the half-open probe succeeded");
  assert.equal(h.router.breaker(tier0).state, "closed");
  const transitions = h.events.filter((e) => e.event === "router.breaker").map((e) => (e.event === "router.breaker" ? `${e.from}→${e.to}` : ""));
  assert.deepEqual(transitions, ["closed→open", "open→half_open", "half_open→closed"]);
  assert.ok(h.events.some((e) => e.event === "router.route.recovered" && e.route === "llama"));
});

test("every tier down: 503 with Retry-After and an OpenAI-shaped body listing what was tried", async (t) => {
  const p1 = await freePort();
  const p2 = await freePort();
  const h = await startRouter(t, backend("a", "vllm", p1) + backend("b", "vllm", p2) + route(`{ backend = "a", model = "m" },\n{ backend = "b", model = "m" }`), `all_down_retry_after = "12s"`);
  const r = await h.fetch("/v1/chat/completions", { method: "POST", body: JSON.stringify(ask()) });
  assert.equal(r.status, 503);
  assert.equal(r.headers.get("retry-after"), "12");
  const body = (await r.json()) as { error: { code: string; type: string; message: string; tried: { backend: string; outcome: string }[] } };
  assert.equal(body.error.code, "all_tiers_down");
  assert.deepEqual(body.error.tried.map((x) => [x.backend, x.outcome]), [["a", "connect"], ["b", "connect"]]);
  await assert.rejects(h.client.chat.completions.create(ask()), (e: unknown) => e instanceof APIError && e.status === 503);
  assert.ok(h.events.some((e) => e.event === "router.route.down"));
  const ready = await h.fetch("/health/ready");
  assert.equal(ready.status, 503);
});

test("per-tier adjustments: the tier's max_tokens clamp and forced temperature, dropped parameters, never the primary's limits", async (t) => {
  const a = await llama(t);
  const b = await llama(t);
  const h = await startRouter(
    t,
    backend("a", "llamacpp", a.port) + backend("b", "llamacpp", b.port) +
      route(`{ backend = "a", model = "big", max_tokens = 3 },\n{ backend = "b", model = "small", max_tokens = 10, temperature = 0, drop_params = ["logprobs"] }`),
  );
  const first = await h.client.chat.completions.create(ask("llama", { max_tokens: 50, temperature: 0.9, logprobs: true }));
  assert.equal(first.usage?.completion_tokens, 3);
  assert.deepEqual([(await lastRequest(a)).max_tokens, (await lastRequest(a)).temperature], [3, 0.9]);
  await a.setFault({ status: { code: 500 } });
  await h.client.chat.completions.create(ask("llama", { max_tokens: 50, temperature: 0.9, logprobs: true }));
  const sent = await lastRequest(b);
  assert.deepEqual([sent.model, sent.max_tokens, sent.temperature, "logprobs" in sent], ["small", 10, 0, false]);
});

test("client disconnect aborts the upstream request", async (t) => {
  const a = await llama(t, ["--token-rate", "5"]);
  const h = await startRouter(t, backend("a", "llamacpp", a.port) + route(`{ backend = "a", model = "m" }`));
  const ctl = new AbortController();
  const r = await h.fetch("/v1/chat/completions", { method: "POST", body: JSON.stringify(ask("llama", { stream: true })), signal: ctl.signal });
  const reader = r.body!.getReader();
  await reader.read();
  const running = async () => ((await (await fetch(`${a.url}/_sim/state`)).json()) as { running: number }).running;
  assert.equal(await running(), 1);
  ctl.abort();
  const deadline = Date.now() + 3_000;
  while ((await running()) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(await running(), 0, "the backend stopped generating");
});
