/**
 * Semantic matching in a real daemon (`llmsup run`), asked with the official
 * openai client: a route with `cache_embeddings` on a simulated CPU
 * embeddings server that outlives the GPU tier. Every tier down: a paraphrase
 * is answered from the cache by meaning; the embeddings server down too: the
 * words alone. A hanging embeddings server never delays a live answer.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI, { APIError } from "openai";
import { Agent, fetch as undiciFetch } from "undici";
import { LOOKUP_EMBED_TIMEOUT_MS } from "../../src/cache/cache.ts";
import type { DaemonStatus } from "../../src/daemon/status.ts";
import { startDaemon, waitStatus, writeDaemonConfig, type RunningDaemon } from "../helpers/daemon.ts";
import { startSim, type SimProcess } from "../helpers/sim.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";

type T = Parameters<typeof startSim>[0];

const Q_SEMANTIC = "How do GPUs fail?";
const PARAPHRASE = "In what ways can GPUs break?";
const Q_WORDS = "Explain the difference between TCP and UDP.";
const REWORDED = "Please explain the difference between TCP and UDP";

async function embeddingsSim(t: T, ...args: string[]): Promise<SimProcess> {
  const sim = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", "--alias", "embed", "--semantic-embeddings", ...args]);
  await waitUntil(`${sim.url}/health to answer 200`, () => answers200(`${sim.url}/health`));
  return sim;
}

async function daemonWith(t: T, emb: SimProcess): Promise<{ d: RunningDaemon; client: OpenAI; metrics: () => Promise<string> }> {
  const files = await writeDaemonConfig(
    t,
    [{ name: "gpu", kind: "llamacpp", process: `  restart = "never"\n` }],
    `[[backend]]\nname = "emb"\nkind = "llamacpp"\nurl = "${emb.url}"\n\n` +
      `[[route]]\nmodel = "llama"\ncache = true\ncache_embeddings = { backend = "emb", model = "embed" }\ncache_semantic_similarity = 0.9\ntiers = [{ backend = "gpu", model = "m" }]\n`,
  );
  const d = await startDaemon(t, files);
  await waitStatus(d, "serving", (s) => s.router.routes[0]!.serving_tier === 0);
  const agent = new Agent({ connect: { socketPath: files.socket } });
  t.after(() => agent.close());
  const viaSocket = (url: string | URL, init?: Parameters<typeof undiciFetch>[1]) => undiciFetch(url, { ...init, dispatcher: agent });
  const client = new OpenAI({ baseURL: "http://llmsup/v1", apiKey: "unused", maxRetries: 0, timeout: 20_000, fetch: viaSocket as unknown as typeof fetch });
  return { d, client, metrics: async () => (await viaSocket("http://llmsup/metrics")).text() };
}

async function cacheStatus(d: RunningDaemon): Promise<NonNullable<DaemonStatus["cache"]>> {
  return (JSON.parse((await d.cli("status", "--json")).stdout) as DaemonStatus).cache!;
}

async function killGpuTier(d: RunningDaemon): Promise<void> {
  const s = await waitStatus(d, "the gpu backend's pid", (x) => x.backends.some((b) => b.name === "gpu" && b.pid !== null));
  process.kill(s.json.backends.find((b) => b.name === "gpu")!.pid!, "SIGKILL");
  await waitStatus(d, "no serving tier", (x) => x.router.routes[0]!.serving_tier < 0);
}

const ask = (client: OpenAI, content: string) => client.chat.completions.create({ model: "llama", messages: [{ role: "user", content }] }).withResponse();

async function expect503(p: Promise<unknown>, what: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof APIError, `${what}: ${String(e)}`);
    assert.equal(e.status, 503, what);
    return;
  }
  assert.fail(`${what}: expected a 503`);
}

test("every tier down: a paraphrase is answered from the cache by meaning (semantic, with _cache_similarity); with the embeddings tier down too, the words alone", async (t) => {
  const emb = await embeddingsSim(t);
  const { d, client, metrics } = await daemonWith(t, emb);

  const live = await client.chat.completions.create({ model: "llama", messages: [{ role: "user", content: Q_SEMANTIC }] });
  await client.chat.completions.create({ model: "llama", messages: [{ role: "user", content: Q_WORDS }] });
  await waitUntil("both prompts embedded", async () => (await cacheStatus(d)).embeddings.vectors === 2, { everyMs: 100 });

  await killGpuTier(d);
  const { data, response } = await ask(client, PARAPHRASE);
  const body = data as unknown as Record<string, unknown>;
  assert.equal(body._from_cache, true);
  assert.equal(body._cache_match, "semantic");
  const similarity = body._cache_similarity as number;
  assert.ok(similarity >= 0.9 && similarity < 1, `similarity ${similarity}`);
  assert.equal(data.choices[0]!.message.content, live.choices[0]!.message.content, "the answer to the question it means");
  assert.equal(response.headers.get("x-llmsup-cache"), "hit");
  assert.equal(response.headers.get("x-llmsup-cache-match"), "semantic");
  assert.match(String(body._notice), /similar in meaning/);
  await expect503(ask(client, "What is the capital of France?"), "an unrelated question");
  assert.match(await metrics(), /llmsup_cache_hits_total\{route="llama",match="semantic"\} 1/);
  const st = await cacheStatus(d);
  assert.equal(st.hits_semantic, 1);

  // The embeddings server dies too: the lexical index serves exactly as before, and only it.
  emb.killGroup();
  await emb.exited;
  const words = await ask(client, REWORDED);
  assert.equal((words.data as unknown as Record<string, unknown>)._cache_match, "similar");
  await expect503(ask(client, PARAPHRASE), "a paraphrase needs the embeddings tier");
  assert.match(await metrics(), /llmsup_cache_hits_total\{route="llama",match="similar"\} 1/);
});

test("a hanging embeddings tier never delays a live answer (embedding is off the request path), and a lookup waits for it only a short while", async (t) => {
  const emb = await embeddingsSim(t);
  const { d, client } = await daemonWith(t, emb);
  const state = async () => (await (await fetch(`${emb.url}/_sim/state`)).json()) as { requests: number };

  await client.chat.completions.create({ model: "llama", messages: [{ role: "user", content: Q_WORDS }] });
  await client.chat.completions.create({ model: "llama", messages: [{ role: "user", content: Q_SEMANTIC }] });
  await waitUntil("both prompts embedded", async () => (await cacheStatus(d)).embeddings.vectors === 2, { everyMs: 100 });

  // The embeddings server now takes requests and never answers them.
  await emb.setFault({ wedge: true });
  const seen = (await state()).requests;
  await client.chat.completions.create({ model: "llama", messages: [{ role: "user", content: "Who wrote War and Peace?" }] });
  await waitUntil("that prompt's embedding to reach the hanging server", async () => (await state()).requests > seen, { everyMs: 100 });
  for (const q of ["Why is the sky blue?", "What is a monad?", "How tall is Mount Everest?"]) {
    const t0 = performance.now();
    const r = await client.chat.completions.create({ model: "llama", messages: [{ role: "user", content: q }] });
    const ms = performance.now() - t0;
    assert.ok(r.choices[0]!.message.content, "answered live");
    assert.ok(ms < 1_000, `answered in ${Math.round(ms)}ms while an embedding hangs`);
  }
  const st = await waitUntil("all six stored", async () => {
    const c = await cacheStatus(d);
    return c.entries === 6 ? c : undefined;
  });
  assert.equal(st.embeddings.vectors, 2, "none embedded since the server hangs");
  assert.equal(st.embeddings.failed, 0, "still waiting, not failed yet");

  await killGpuTier(d);
  // A rewording is found by its words without asking the embeddings tier.
  const t1 = performance.now();
  assert.equal(((await ask(client, REWORDED)).data as unknown as Record<string, unknown>)._cache_match, "similar");
  assert.ok(performance.now() - t1 < LOOKUP_EMBED_TIMEOUT_MS, "no wait for the embeddings tier when the words match");
  // A paraphrase waits for the question's embedding at most LOOKUP_EMBED_TIMEOUT_MS; the words do not match it: a 503.
  const t2 = performance.now();
  await expect503(ask(client, PARAPHRASE), "no embedding, no match by words");
  const waited = performance.now() - t2;
  assert.ok(waited >= LOOKUP_EMBED_TIMEOUT_MS - 100 && waited < LOOKUP_EMBED_TIMEOUT_MS + 3_000, `waited ${Math.round(waited)}ms`);
});
