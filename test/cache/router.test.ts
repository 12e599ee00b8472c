/**
 * The emergency cache through the routing socket: filled by real answers of
 * simulated tiers (whole and streamed), served when every tier is dead, with
 * the marks; the official openai client on the other end.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import OpenAI, { APIError } from "openai";
import { Agent, fetch as undiciFetch } from "undici";
import { EmergencyCache } from "../../src/cache/cache.ts";
import { loadSqlite } from "../../src/cache/sqlite.ts";
import type { Config } from "../../src/config/types.ts";
import { HealthRegistry } from "../../src/health/registry.ts";
import { realClock } from "../../src/platform/clock.ts";
import { RouterMetrics } from "../../src/router/metrics.ts";
import { Router, type RouterEvent } from "../../src/router/router.ts";
import { RouterServer } from "../../src/router/server.ts";
import { canonicalTokens, chatKey } from "../../src/sim/backend/answer.ts";
import { backend } from "../helpers/router.ts";
import { startSim, type SimProcess } from "../helpers/sim.ts";
import { memoryLogger, testConfig } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";
import { DEFAULTS } from "./helpers.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";

type T = Parameters<typeof startSim>[0];
type Msg = { role: "user" | "assistant" | "system"; content: string };

const Q1 = "Explain the difference between TCP and UDP.";
const Q1_REPHRASED = "Please explain the difference between TCP and UDP";
const Q2 = "How do GPUs fail under heavy load?";
const user = (content: string): Msg[] => [{ role: "user", content }];
const canonical = (messages: Msg[]) => canonicalTokens(chatKey(messages)).join("");

async function llama(t: T): Promise<SimProcess> {
  const sim = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s"]);
  await waitUntil(`${sim.url}/health to answer 200`, () => answers200(`${sim.url}/health`));
  return sim;
}

interface Harness {
  readonly client: OpenAI;
  readonly events: RouterEvent[];
  readonly cache: EmergencyCache;
  readonly metrics: RouterMetrics;
  fetch(pathname: string, init?: Parameters<typeof undiciFetch>[1]): ReturnType<typeof undiciFetch>;
  /** Router, server and cache closed; the same state directory opened again (a daemon restart). */
  restart(): Promise<Harness>;
}

async function start(t: T, toml: string, stateDir?: string): Promise<Harness> {
  const dir = tempDir(t);
  const socket = path.join(dir, "api.sock");
  const config: Config = testConfig(dir, `[router]\nsocket = "${socket}"\nlisten = ""\n${toml}`);
  const state = stateDir ?? config.daemon.state_dir;
  const metrics = new RouterMetrics();
  const health = new HealthRegistry(config, realClock);
  const events: RouterEvent[] = [];
  const cache = EmergencyCache.open({ config: { ...DEFAULTS }, dir: state, logger: memoryLogger().logger, clock: realClock, metrics, sqlite: loadSqlite() });
  const router = new Router(config, { health, clock: realClock, logger: memoryLogger().logger, metrics, cache, onEvent: (e) => events.push(e) });
  const server = new RouterServer(config, router, memoryLogger().logger, metrics);
  await server.listen();
  const agent = new Agent({ connect: { socketPath: socket } });
  const viaSocket = (url: string | URL, init?: Parameters<typeof undiciFetch>[1]) => undiciFetch(url, { ...init, dispatcher: agent });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await server.close();
    await router.close();
    cache.close();
    await agent.close();
  };
  t.after(close);
  return {
    client: new OpenAI({ baseURL: "http://llmsup/v1", apiKey: "unused", maxRetries: 0, timeout: 20_000, fetch: viaSocket as unknown as typeof fetch }),
    events,
    cache,
    metrics,
    fetch: (pathname, init) => viaSocket(`http://llmsup${pathname}`, init),
    restart: async () => {
      await close();
      return start(t, toml, state);
    },
  };
}

const routes = (a: number, b: number) =>
  backend("a", "llamacpp", a) +
  backend("b", "llamacpp", b) +
  `[[route]]\nmodel = "llama"\ncache = true\ntiers = [{ backend = "a", model = "m-a" }, { backend = "b", model = "m-b" }]\n` +
  `[[route]]\nmodel = "plain"\ntiers = [{ backend = "a", model = "m-a" }]\n`;

async function streamed(client: OpenAI, model: string, messages: Msg[]): Promise<{ text: string; headers: Headers; chunks: Record<string, unknown>[] }> {
  const { data, response } = await client.chat.completions.create({ model, messages, stream: true }).withResponse();
  let text = "";
  const chunks: Record<string, unknown>[] = [];
  for await (const c of data) {
    chunks.push(c as unknown as Record<string, unknown>);
    text += c.choices[0]?.delta?.content ?? "";
  }
  return { text, headers: response.headers, chunks };
}

async function expect503(p: Promise<unknown>, what: string): Promise<APIError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof APIError, `${what}: ${String(e)}`);
    assert.equal(e.status, 503, what);
    return e;
  }
  assert.fail(`${what}: expected a 503`);
}

test("every tier dead: the same and a rephrased question are answered from the cache, marked; others get the 503", async (t) => {
  const a = await llama(t);
  const b = await llama(t);
  const h = await start(t, routes(a.port, b.port));
  const multi: Msg[] = [{ role: "user", content: "List two GPU faults" }, { role: "assistant", content: "XID 79 and ECC." }, { role: "user", content: "More on the second?" }];

  // Fill: a whole answer, a streamed one, an opted-out one, a multi-turn one, one on a route without the cache.
  const whole = await h.client.chat.completions.create({ model: "llama", messages: user(Q1) });
  assert.equal(whole.choices[0]!.message.content, canonical(user(Q1)));
  assert.equal((await streamed(h.client, "llama", user(Q2))).text, canonical(user(Q2)));
  await h.client.chat.completions.create({ model: "llama", messages: user("Tell me about my private matter") }, { headers: { "x-llmsup-cache": "no-store" } });
  await h.client.chat.completions.create({ model: "llama", messages: multi });
  await h.client.chat.completions.create({ model: "plain", messages: user(Q1) });
  await new Promise((r) => setImmediate(r));
  h.cache.flush();
  assert.equal(h.cache.status().entries, 2, "Q1 and Q2 only");
  assert.deepEqual(h.cache.status().skipped, { opt_out: 1, multi_turn: 1 });

  a.killGroup();
  b.killGroup();
  await Promise.all([a.exited, b.exited]);

  // The same question.
  const same = await h.client.chat.completions.create({ model: "llama", messages: user(Q1) }).withResponse();
  assert.equal(same.data.choices[0]!.message.content, canonical(user(Q1)));
  assert.equal(same.response.headers.get("x-llmsup-cache"), "hit");
  assert.equal(same.response.headers.get("x-llmsup-cache-similarity"), "1.000");
  assert.equal(same.response.headers.get("x-llmsup-tier"), "cache");
  assert.equal(same.response.headers.get("x-llmsup-degraded"), "true");
  assert.match(same.response.headers.get("x-llmsup-notice") ?? "", /emergency cache.*the same question/);
  const body = same.data as unknown as Record<string, unknown>;
  assert.equal(body._from_cache, true);
  assert.equal(body._cache_similarity, 1);
  assert.ok(Math.abs(Date.parse(body._cached_at as string) - Date.now()) < 60_000, String(body._cached_at));
  assert.match(body._notice as string, /emergency cache/);
  assert.equal(body.model, "m-a", "the model that gave the answer");
  assert.deepEqual(body.usage, { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 });

  // A rephrased question.
  const near = await h.client.chat.completions.create({ model: "llama", messages: user(Q1_REPHRASED) }).withResponse();
  assert.equal(near.data.choices[0]!.message.content, canonical(user(Q1)), "the answer to the question it resembles");
  const sim = Number(near.response.headers.get("x-llmsup-cache-similarity"));
  assert.ok(sim >= 0.85 && sim < 1, `${sim}`);
  assert.equal((near.data as unknown as Record<string, unknown>)._cache_similarity, sim);
  assert.match(near.response.headers.get("x-llmsup-notice") ?? "", /similar question \(similarity 0\.\d{3}\)/);

  // The streamed answer, asked for whole and streamed.
  const fromStream = await h.client.chat.completions.create({ model: "llama", messages: user(Q2) });
  assert.equal(fromStream.choices[0]!.message.content, canonical(user(Q2)));
  assert.equal(fromStream.model, "m-a");
  const s = await streamed(h.client, "llama", user(Q2));
  assert.equal(s.text, canonical(user(Q2)));
  assert.equal(s.headers.get("x-llmsup-cache"), "hit");
  assert.equal(s.headers.get("content-type"), "text/event-stream; charset=utf-8");
  assert.ok(s.chunks.every((c) => c._from_cache === true && c._cache_similarity === 1));

  // Misses: unrelated, opted out, multi-turn, a route without the cache.
  const miss = await expect503(h.client.chat.completions.create({ model: "llama", messages: user("What is the capital of France?") }), "unrelated");
  assert.equal(miss.headers?.get("x-llmsup-cache"), "miss");
  assert.ok(miss.headers?.get("retry-after"));
  await expect503(h.client.chat.completions.create({ model: "llama", messages: user("Tell me about my private matter") }), "opted out");
  await expect503(h.client.chat.completions.create({ model: "llama", messages: multi }), "multi-turn");
  const plain = await expect503(h.client.chat.completions.create({ model: "plain", messages: user(Q1) }), "route without the cache");
  assert.equal(plain.headers?.get("x-llmsup-cache"), null);

  // The alert event, once per answer served; the figures.
  const served = h.events.filter((e) => e.event === "router.cache.served");
  assert.equal(served.length, 4);
  assert.ok(served.every((e) => e.event === "router.cache.served" && e.route === "llama"));
  const st = h.cache.status();
  assert.deepEqual([st.hits, st.hits_similar, st.misses], [4, 1, 3]);
  const text = await (await h.fetch("/metrics")).text();
  assert.match(text, /llmsup_cache_hits_total\{route="llama",match="exact"\} 3/);
  assert.match(text, /llmsup_cache_hits_total\{route="llama",match="similar"\} 1/);
  assert.match(text, /llmsup_cache_misses_total\{route="llama"\} 3/);
  assert.match(text, /llmsup_requests_total\{route="llama",tier="-1",backend="cache",outcome="cache_hit"\} 4/);
  assert.match(text, /llmsup_cache_entries 2/);
});

test("a restart keeps the answers: served from the reopened store while every tier is still dead", async (t) => {
  const a = await llama(t);
  const b = await llama(t);
  const h = await start(t, routes(a.port, b.port));
  await h.client.chat.completions.create({ model: "llama", messages: user(Q1) });
  await h.client.completions.create({ model: "llama", prompt: "Once upon a time", stream: true }).then(async (s) => {
    for await (const _ of s) void _;
  });
  a.killGroup();
  b.killGroup();
  await Promise.all([a.exited, b.exited]);
  const again = await h.restart();
  assert.equal(again.cache.status().entries, 2);
  const hit = await again.client.chat.completions.create({ model: "llama", messages: user(Q1) }).withResponse();
  assert.equal(hit.response.headers.get("x-llmsup-cache"), "hit");
  assert.equal(hit.data.choices[0]!.message.content, canonical(user(Q1)));
  const completion = await again.client.completions.create({ model: "llama", prompt: "Once upon a time" }).withResponse();
  assert.equal(completion.response.headers.get("x-llmsup-cache"), "hit");
  assert.equal(completion.data.object, "text_completion");
  assert.ok((completion.data.choices[0]?.text ?? "").length > 0);
});

test("while the tiers answer, the cache is never asked", async (t) => {
  const a = await llama(t);
  const b = await llama(t);
  const h = await start(t, routes(a.port, b.port));
  await h.client.chat.completions.create({ model: "llama", messages: user(Q1) });
  const live = await h.client.chat.completions.create({ model: "llama", messages: user(Q1) }).withResponse();
  assert.equal(live.response.headers.get("x-llmsup-cache"), null);
  assert.equal(live.response.headers.get("x-llmsup-tier"), "0");
  assert.equal((live.data as unknown as Record<string, unknown>)._from_cache, undefined);
  assert.deepEqual([h.cache.status().hits, h.cache.status().misses], [0, 0]);
});
