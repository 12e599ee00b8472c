/**
 * Semantic matching in the store: prompts embedded in the background by a
 * simulated embeddings tier over real HTTP, the vectors in SQLite next to
 * their entries, charged to their bytes, evicted with them, kept across a
 * restart; a paraphrase found by meaning; the words alone when the tier is
 * gone.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { CacheDb } from "../../src/cache/db.ts";
import { httpEmbedder } from "../../src/cache/embeddings.ts";
import { entryFor } from "../../src/cache/entry.ts";
import { normalise } from "../../src/cache/vectors.ts";
import { tempDir } from "../helpers/tmp.ts";
import { loadSqlite, type SqliteModule } from "../../src/cache/sqlite.ts";
import { vectorBytes } from "../../src/cache/eviction.ts";
import type { BackendConfig, RouteConfig } from "../../src/config/types.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";
import { startSim, type SimProcess } from "../helpers/sim.ts";
import { answer, ask, contentOf, DEFAULTS, openCache } from "./helpers.ts";

type T = Parameters<typeof startSim>[0];

const DIM = 64;
const SEMANTIC: RouteConfig = { model: "llama", tiers: [], cache: true, cache_embeddings: { backend: "emb", model: "embed" }, cache_semantic_similarity: 0.9 };

async function embeddingsSim(t: T): Promise<SimProcess> {
  const sim = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", "--alias", "embed", "--semantic-embeddings", "--embedding-dim", String(DIM)]);
  await waitUntil(`${sim.url}/health to answer 200`, () => answers200(`${sim.url}/health`));
  return sim;
}

const embedderFor = (sim: SimProcess) => httpEmbedder(() => [{ name: "emb", kind: "llamacpp", url: sim.url } as BackendConfig]);

function vectorRows(dir: string): number {
  const db = new DatabaseSync(path.join(dir, "cache.sqlite"), { readOnly: true });
  try {
    return (db.prepare("SELECT count(*) AS n FROM vectors").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

test("prompts get their vectors after the write; a paraphrase is found by meaning; the vectors are charged, evicted with their entries and kept across a restart", async (t) => {
  const sim = await embeddingsSim(t);
  const c = openCache(t, {}, { embed: embedderFor(sim) });
  c.cache.store(SEMANTIC, "chat", ask("How do GPUs fail?"), answer("heat, power, memory"));
  c.cache.store(SEMANTIC, "chat", ask("What is the capital of France?"), answer("Paris"));
  c.cache.store(SEMANTIC, "chat", ask("How do I bake bread?"), answer("flour, water, heat"));
  c.cache.flush();
  const before = c.cache.status();
  assert.equal(before.entries, 3);
  assert.equal(before.embeddings.vectors, 0, "not on the write's turn: the embedding comes after");
  await c.cache.embeddingsIdle();
  const after = c.cache.status();
  assert.equal(after.embeddings.vectors, 3);
  assert.equal(after.embeddings.embedded, 3);
  assert.equal(after.bytes, before.bytes + 3 * vectorBytes(DIM), "each entry is charged its vector");
  assert.equal(vectorRows(c.dir), 3, "stored in SQLite");

  const hit = await c.cache.lookup(SEMANTIC, "chat", ask("In what ways can GPUs break?"));
  assert.equal(hit?.match, "semantic");
  assert.equal(contentOf(hit!.response), "heat, power, memory");
  assert.ok(hit!.similarity >= 0.9 && hit!.similarity < 1, `similarity ${hit!.similarity}`);
  assert.equal(await c.cache.lookup(SEMANTIC, "chat", ask("Who wrote War and Peace?")), undefined, "nothing close in meaning");
  assert.equal(await c.cache.lookup({ ...SEMANTIC, cache_semantic_similarity: 0.99 }, "chat", ask("In what ways can GPUs break?")), undefined, "the route's threshold decides");
  assert.equal(await c.cache.lookup({ ...SEMANTIC, cache_embeddings: undefined }, "chat", ask("In what ways can GPUs break?")), undefined, "a route without an embeddings tier matches words only");
  assert.match(await c.metrics.registry.metrics(), /llmsup_cache_hits_total\{route="llama",match="semantic"\} 1/);

  // A restart reads the vectors back: the paraphrase is still found (and its answer is now the most recently used).
  const again = c.reopen();
  assert.equal(again.cache.status().embeddings.vectors, 3);
  assert.equal(again.logs().find((l) => l.event === "cache.vectors.loaded")?.vectors, 3);
  again.clock.advance(1_000);
  assert.equal((await again.cache.lookup(SEMANTIC, "chat", ask("In what ways can GPUs break?")))?.match, "semantic");

  // Bounds that hold the answers without their vectors but not with them: the least recently used go, vectors with them.
  again.cache.reconfigure({ ...DEFAULTS, max_bytes: before.bytes + vectorBytes(DIM) });
  const small = again;
  const s = small.cache.status();
  assert.ok(s.entries < 3, `evicted down to ${s.entries}`);
  assert.ok(s.bytes <= before.bytes + vectorBytes(DIM));
  assert.equal(s.embeddings.vectors, s.entries);
  assert.equal(vectorRows(small.dir), s.entries, "the evicted entries' vectors are gone from SQLite too");
  assert.equal((await small.cache.lookup(SEMANTIC, "chat", ask("In what ways can GPUs break?")))?.match, "semantic", "the most recently used stayed");
});

test("the embeddings tier gone: a paraphrase is a miss, a rewording is still found by its words; the failure is logged once and counted", async (t) => {
  const sim = await embeddingsSim(t);
  const c = openCache(t, {}, { embed: embedderFor(sim) });
  c.cache.store(SEMANTIC, "chat", ask("How do GPUs fail under heavy load?"), answer("heat"));
  c.cache.flush();
  await c.cache.embeddingsIdle();
  assert.equal(c.cache.status().embeddings.vectors, 1);
  sim.killGroup();
  await sim.exited;

  assert.equal(await c.cache.lookup(SEMANTIC, "chat", ask("In what ways can GPUs break under a heavy load?")), undefined);
  const lexical = await c.cache.lookup(SEMANTIC, "chat", ask("how do GPUs fail under a heavy load"));
  assert.equal(lexical?.match, "similar");
  assert.equal(contentOf(lexical!.response), "heat");
  assert.ok(c.logs().some((l) => l.event === "cache.embeddings.unavailable"));

  for (const q of ["Why is the sky blue?", "What is a monad?", "How tall is Everest?"]) c.cache.store(SEMANTIC, "chat", ask(q), answer("x"));
  c.cache.flush();
  await c.cache.embeddingsIdle();
  const st = c.cache.status();
  assert.equal(st.entries, 4, "answers are stored all the same");
  assert.equal(st.embeddings.failed, 3);
  assert.equal(c.logs().filter((l) => l.event === "cache.embeddings.failed").length, 1, "logged once");
  assert.equal(c.logs().find((l) => l.event === "cache.embeddings.failed")?.code, "LLMSUP_E_CACHE_EMBEDDINGS");
  assert.match(await c.metrics.registry.metrics(), /llmsup_cache_stores_total\{route="llama",outcome="embedding_failed"\} 3/);
});

test("a store written before vectors existed (schema 1) opens with its answers and gains the vectors table", async (t) => {
  const c = openCache(t);
  c.cache.store(SEMANTIC, "chat", ask("How do GPUs fail?"), answer("heat"));
  c.cache.close();
  const raw = new DatabaseSync(path.join(c.dir, "cache.sqlite"));
  raw.exec("DROP TABLE vectors; PRAGMA user_version = 1;");
  raw.close();
  const again = openCache(t, {}, { dir: c.dir });
  assert.equal(again.cache.status().state, "ok");
  assert.equal(again.cache.status().entries, 1);
  assert.equal(again.cache.status().rebuilt, 0, "not set aside");
  assert.equal(contentOf(again.cache.lookupNow(SEMANTIC, "chat", ask("How do GPUs fail?"))!.response), "heat");
  assert.equal(vectorRows(again.dir), 0);
});

test("stored vectors are read back in steps (a large store does not hold the event loop at start), each once", async (t) => {
  const sim = await embeddingsSim(t);
  const c = openCache(t, {}, { embed: embedderFor(sim) });
  for (const q of ["How do GPUs fail?", "What is the capital of France?", "How do I bake bread?"]) c.cache.store(SEMANTIC, "chat", ask(q), answer("x"));
  c.cache.flush();
  await c.cache.embeddingsIdle();
  c.cache.close();
  const db = new CacheDb(loadSqlite() as SqliteModule, path.join(c.dir, "cache.sqlite"));
  t.after(() => db.close());
  assert.equal(db.vectors.size, 0, "nothing read by opening");
  assert.deepEqual(db.loadVectors(2), { read: 2, skipped: 0 });
  assert.equal(db.vectorsPending, true);
  assert.deepEqual(db.loadVectors(2), { read: 1, skipped: 0 });
  assert.equal(db.vectorsPending, false);
  assert.deepEqual(db.loadVectors(2), { read: 0, skipped: 0 });
  assert.equal(db.vectors.size, 3);
});

test("attaching vectors leaves the gram frequencies current (no recount at the next open) and never charges an entry twice", (t) => {
  const file = path.join(tempDir(t), "cache.sqlite");
  const sqlite = loadSqlite() as SqliteModule;
  const db = new CacheDb(sqlite, file);
  const e = entryFor({ route: "llama", endpoint: "chat", request: ask("How do GPUs fail?"), response: answer("heat"), at: 1 }, DEFAULTS);
  assert.ok(typeof e !== "string");
  db.put([e]);
  db.syncDf();
  assert.deepEqual(db.attach([{ key: e.key, model: "embed", scope: e.scope32, vector: normalise([1, 2, 3])! }]), ["attached"]);
  assert.deepEqual(db.attach([{ key: e.key, model: "embed", scope: e.scope32, vector: normalise([1, 2, 3])! }]), ["exists"]);
  assert.deepEqual(db.attach([{ key: "00".repeat(16), model: "embed", scope: 1, vector: normalise([1, 2, 3])! }]), ["gone"]);
  db.close();
  const again = new CacheDb(sqlite, file);
  t.after(() => again.close());
  assert.equal(again.dfRebuilt, false);
  assert.equal(again.entries, 1);
  assert.equal(again.bytes, e.bytes + vectorBytes(3));
  assert.deepEqual(again.attach([{ key: e.key, model: "other", scope: 1, vector: normalise([1, 2])! }]), ["exists"], "on file, not yet read into memory: kept, not charged twice");
  assert.equal(again.bytes, e.bytes + vectorBytes(3));
});
