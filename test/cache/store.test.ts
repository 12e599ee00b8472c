/** The emergency cache on a real SQLite file: fill, exact and near lookups, bounds, TTL, restarts, damage. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { CACHE_FILE } from "../../src/cache/cache.ts";
import { loadSqlite, type SqliteModule } from "../../src/cache/sqlite.ts";
import { answer, ask, contentOf, DAY, openCache, route, T0 } from "./helpers.ts";

const R = route();
const Q = "Explain the difference between TCP and UDP.";

test("an answer is found again by the same question, and by a rephrased one with its similarity", async (t) => {
  const { cache } = openCache(t);
  cache.store(R, "chat", ask(Q), answer("TCP is reliable, UDP is not."), {});
  const exact = cache.lookupNow(R, "chat", ask(Q));
  assert.ok(exact);
  assert.equal(exact.similarity, 1);
  assert.equal(exact.cachedAt, T0);
  assert.equal(contentOf(exact.response), "TCP is reliable, UDP is not.");
  const near = cache.lookupNow(R, "chat", ask("Please explain the difference between TCP and UDP"));
  assert.ok(near, "a rephrased question");
  assert.ok(near.similarity >= 0.85 && near.similarity < 1, `${near.similarity}`);
  assert.equal(contentOf(near.response), "TCP is reliable, UDP is not.");
  assert.equal(cache.lookupNow(R, "chat", ask("What is the capital of France?")), undefined, "an unrelated question");
  // The Promise form the router uses.
  assert.equal((await cache.lookup(R, "chat", ask(Q)))?.similarity, 1);
});

test("the best near-duplicate wins; below the threshold nothing is served", (t) => {
  const { cache } = openCache(t, { similarity: 0.9 });
  cache.store(R, "chat", ask("How do I restart the vllm server after an update?"), answer("A"), {});
  cache.store(R, "chat", ask("How do I restart the ollama server after an update?"), answer("B"), {});
  const hit = cache.lookupNow(R, "chat", ask("how do I restart the vllm server after the update"));
  assert.ok(hit);
  assert.equal(contentOf(hit.response), "A");
  assert.equal(cache.lookupNow(R, "chat", ask("How can one restart vllm?")), undefined);
});

test("near-duplicates stay inside their scope: route, system prompt, parameters of shape, numbers", (t) => {
  const { cache } = openCache(t);
  cache.store(R, "chat", ask("Restart the server on port 8080 after the update"), answer("ok 8080"), {});
  cache.store(R, "chat", { model: "llama", messages: [{ role: "system", content: "Answer in French." }, { role: "user", content: "How do GPUs fail under load?" }] }, answer("En chauffant."), {});
  assert.equal(cache.lookupNow(route("other"), "chat", ask("Restart the server on port 8080 after the update")), undefined, "another route");
  assert.equal(cache.lookupNow(R, "chat", ask("How do GPUs fail under load?")), undefined, "without the system prompt");
  assert.equal(cache.lookupNow(R, "chat", ask("Restart the server on port 8080 after the update", { response_format: { type: "json_object" } })), undefined, "JSON mode");
  assert.equal(cache.lookupNow(R, "chat", ask("Restart the server on port 8081 after the update")), undefined, "other numbers");
  const sampled = cache.lookupNow(R, "chat", ask("Restart the server on port 8080 after the update", { temperature: 0.2 }));
  assert.ok(sampled, "other sampling parameters: a near-duplicate");
  assert.ok(sampled.similarity > 0.99 && sampled.similarity <= 1);
});

test("routes with the cache off store nothing and find nothing", (t) => {
  const { cache } = openCache(t);
  cache.store(route("llama", false), "chat", ask(Q), answer("x"), {});
  cache.flush();
  assert.equal(cache.status().entries, 0);
  cache.store(R, "chat", ask(Q), answer("x"), {});
  assert.equal(cache.lookupNow(route("llama", false), "chat", ask(Q)), undefined);
});

test("not stored: opted-out requests, multi-turn and tool-calling conversations, empty answers, bad input", (t) => {
  const { cache, metrics } = openCache(t);
  cache.store(R, "chat", ask("secret question"), answer("secret"), { "x-llmsup-cache": "no-store" });
  cache.store(R, "chat", { model: "llama", messages: [{ role: "user", content: "a" }, { role: "assistant", content: "b" }, { role: "user", content: "c" }] }, answer("d"), {});
  cache.store(R, "chat", ask("weather in Oslo", { tools: [{ type: "function", function: { name: "weather" } }] }), answer("sunny"), {});
  cache.store(R, "chat", ask("say nothing"), answer(""), {});
  cache.store(R, "chat", "not a request", answer("x"), {});
  cache.store(R, "chat", ask("fine"), { choices: "nope" }, {});
  cache.store(R, "embedding", { model: "llama", input: "x" }, { data: [] }, {});
  cache.flush();
  const s = cache.status();
  assert.equal(s.entries, 0);
  assert.deepEqual(s.skipped, { opt_out: 1, multi_turn: 1, tools: 1, no_answer: 2, malformed: 1, endpoint: 1 });
  assert.equal(cache.lookupNow(R, "chat", ask("secret question")), undefined);
  return metrics.registry.metrics().then((text) => assert.match(text, /llmsup_cache_stores_total\{route="llama",outcome="opt_out"\} 1/));
});

test("multi_turn = true stores conversations, matched within the same conversation", (t) => {
  const { cache } = openCache(t, { multi_turn: true });
  const convo = (last: string) => ({ model: "llama", messages: [{ role: "user", content: "List two GPU faults" }, { role: "assistant", content: "XID 79 and ECC." }, { role: "user", content: last }] });
  cache.store(R, "chat", convo("Tell me more about the second one"), answer("ECC errors are…"), {});
  assert.ok(cache.lookupNow(R, "chat", convo("Tell me more about the second one please")));
  assert.equal(cache.lookupNow(R, "chat", { model: "llama", messages: [{ role: "user", content: "Tell me more about the second one" }] }), undefined);
});

test("answers expire after the TTL: never served, then pruned", async (t) => {
  const { cache, clock } = openCache(t, { ttl: DAY });
  cache.store(R, "chat", ask(Q), answer("old"), {});
  clock.advance(DAY - 1);
  assert.ok(cache.lookupNow(R, "chat", ask(Q)));
  clock.advance(2);
  assert.equal(cache.lookupNow(R, "chat", ask(Q)), undefined);
  assert.equal(cache.lookupNow(R, "chat", ask("Please explain the difference between TCP and UDP")), undefined, "nor as a near-duplicate");
  assert.equal(cache.status().entries, 1);
  await cache.prune();
  assert.equal(cache.status().entries, 0);
  assert.equal(cache.status().bytes, 0);
});

test("a newer answer to the same question replaces the older one", (t) => {
  const { cache, clock } = openCache(t);
  cache.store(R, "chat", ask(Q), answer("first"), {});
  clock.advance(1_000);
  cache.store(R, "chat", ask(Q), answer("second, longer answer"), {});
  const hit = cache.lookupNow(R, "chat", ask(Q));
  assert.equal(contentOf(hit!.response), "second, longer answer");
  assert.equal(hit!.cachedAt, T0 + 1_000);
  assert.equal(cache.status().entries, 1);
});

test("max_entries: the least recently used answers leave first; a served answer counts as used", (t) => {
  const { cache, clock } = openCache(t, { max_entries: 3 });
  const q = (i: number) => `question number ${"abcdefghij"[i]} about topic ${"klmnopqrst"[i]}`;
  for (let i = 0; i < 3; i++) {
    cache.store(R, "chat", ask(q(i)), answer(`a${i}`), {});
    cache.flush();
    clock.advance(1_000);
  }
  assert.ok(cache.lookupNow(R, "chat", ask(q(0))), "question 0 is served: now the most recently used");
  clock.advance(1_000);
  cache.store(R, "chat", ask(q(3)), answer("a3"), {});
  cache.store(R, "chat", ask(q(4)), answer("a4"), {});
  cache.flush();
  const s = cache.status();
  assert.equal(s.entries, 3);
  assert.equal(s.evicted, 2);
  const kept = [0, 1, 2, 3, 4].filter((i) => cache.lookupNow(R, "chat", ask(q(i))) !== undefined);
  assert.deepEqual(kept, [0, 3, 4]);
});

test("max_bytes bounds the store; an answer larger than the whole store is not kept", (t) => {
  const { cache } = openCache(t, { max_bytes: 20_000 });
  for (let i = 0; i < 30; i++) cache.store(R, "chat", ask(`distinct prompt ${i} ${"x".repeat(i)}`), answer(`${i} ${"y".repeat(2_000)}`), {});
  cache.store(R, "chat", ask("huge"), answer("z".repeat(30_000)), {});
  cache.flush();
  const s = cache.status();
  assert.ok(s.bytes <= 20_000, `${s.bytes}`);
  assert.ok(s.entries >= 5 && s.entries < 30, `${s.entries}`);
  assert.equal(s.skipped.too_large, 1);
  assert.ok(cache.lookupNow(R, "chat", ask(`distinct prompt 29 ${"x".repeat(29)}`)), "the newest stays");
  assert.equal(cache.lookupNow(R, "chat", ask("distinct prompt 0 ")), undefined, "the oldest went");
});

test("lower bounds after a reload shrink the store at once", (t) => {
  const { cache } = openCache(t);
  for (let i = 0; i < 10; i++) cache.store(R, "chat", ask(`prompt ${"abcdefghij"[i]}`), answer(`${i}`), {});
  cache.flush();
  assert.equal(cache.status().entries, 10);
  cache.reconfigure({ max_entries: 4, max_bytes: 1e9, ttl: DAY, similarity: 0.85, multi_turn: false });
  assert.equal(cache.status().entries, 4);
  assert.equal(cache.status().max_entries, 4);
});

test("the store survives a restart: same answers, same counts, a private file", (t) => {
  const first = openCache(t);
  first.cache.store(R, "chat", ask(Q), answer("kept"), {});
  first.cache.store(R, "chat", ask("How do GPUs fail under heavy load?"), answer("heat"), {});
  first.cache.flush();
  const bytes = first.cache.status().bytes;
  const second = first.reopen();
  assert.equal(second.cache.status().entries, 2);
  assert.equal(second.cache.status().bytes, bytes);
  assert.equal(contentOf(second.cache.lookupNow(R, "chat", ask(Q))!.response), "kept");
  assert.equal(contentOf(second.cache.lookupNow(R, "chat", ask("how do GPUs fail under a heavy load"))!.response), "heat");
  assert.equal(statSync(path.join(first.dir, CACHE_FILE)).mode & 0o777, 0o600, "prompts and answers are for the daemon's user only");
});

test("a store that is not a database is set aside with a warning and rebuilt empty", (t) => {
  const first = openCache(t);
  first.cache.close();
  const file = path.join(first.dir, CACHE_FILE);
  writeFileSync(file, Buffer.alloc(8192, 0x5a));
  const second = first.reopen();
  const warn = second.logs().find((l) => l.event === "cache.store.corrupt");
  assert.ok(warn, "warned");
  assert.equal(warn.code, "LLMSUP_E_CACHE_CORRUPT");
  assert.equal(warn.level, "warn");
  assert.equal(second.cache.status().state, "ok");
  assert.equal(second.cache.status().rebuilt, 1);
  assert.ok(existsSync(`${file}.corrupt`));
  second.cache.store(R, "chat", ask(Q), answer("fresh"), {});
  assert.equal(contentOf(second.cache.lookupNow(R, "chat", ask(Q))!.response), "fresh");
});

test("damage found while running (pages overwritten under the daemon) rebuilds instead of crashing", (t) => {
  const c = openCache(t);
  for (let i = 0; i < 300; i++) c.cache.store(R, "chat", ask(`prompt ${i} about something ${i * 7}`), answer(`answer ${i} ${"w".repeat(300)}`), {});
  c.cache.close();
  const file = path.join(c.dir, CACHE_FILE);
  const data = readFileSync(file);
  assert.ok(data.length > 16 * 4096, `${data.length}`);
  // Keep the header page; overwrite the rest.
  data.fill(0xa5, 4096);
  writeFileSync(file, data);
  const again = c.reopen();
  // Either opening noticed, or the first lookup does: both rebuild; nothing throws.
  const hit = again.cache.lookupNow(R, "chat", ask("prompt 5 about something 35"));
  assert.equal(hit, undefined);
  assert.ok(again.logs().some((l) => l.event === "cache.store.corrupt"));
  assert.equal(again.cache.status().state, "ok");
  again.cache.store(R, "chat", ask(Q), answer("works"), {});
  assert.ok(again.cache.lookupNow(R, "chat", ask(Q)));
});

test("a SQLite database of something else is not taken for the cache", (t) => {
  const c = openCache(t);
  c.cache.close();
  const file = path.join(c.dir, CACHE_FILE);
  const sqlite = loadSqlite() as SqliteModule;
  const other = new sqlite.DatabaseSync(`${file}.tmp`);
  other.exec("CREATE TABLE notes(x TEXT); INSERT INTO notes VALUES ('mine');");
  other.close();
  writeFileSync(file, readFileSync(`${file}.tmp`));
  const again = c.reopen();
  assert.ok(again.logs().some((l) => l.event === "cache.store.corrupt"));
  assert.equal(again.cache.status().entries, 0);
});

test("without node:sqlite the cache is unavailable, says why, and the router's calls do nothing", (t) => {
  const c = openCache(t, {}, { sqlite: new Error("node:sqlite is not available") });
  assert.equal(c.cache.status().state, "unavailable");
  assert.match(c.cache.status().problem ?? "", /not available/);
  const err = c.logs().find((l) => l.event === "cache.unavailable");
  assert.equal(err?.code, "LLMSUP_E_CACHE_UNAVAILABLE");
  c.cache.store(R, "chat", ask(Q), answer("x"), {});
  assert.equal(c.cache.lookupNow(R, "chat", ask(Q)), undefined);
  assert.equal(c.cache.status().skipped.unavailable, 1);
});

test("figures: hits, similar hits, misses, size; in the status and in the metrics", async (t) => {
  const { cache, metrics } = openCache(t);
  cache.store(R, "chat", ask(Q), answer("x"), {});
  cache.lookupNow(R, "chat", ask(Q));
  cache.lookupNow(R, "chat", ask("Please explain the difference between TCP and UDP"));
  cache.lookupNow(R, "chat", ask("Unrelated"));
  const s = cache.status();
  assert.deepEqual([s.hits, s.hits_similar, s.misses, s.entries, s.stored], [2, 1, 1, 1, 1]);
  assert.ok(s.bytes > 0 && s.file_bytes > 0);
  assert.equal(s.last_hit?.route, "llama");
  assert.ok(s.last_hit!.similarity < 1);
  const text = await metrics.registry.metrics();
  assert.match(text, /llmsup_cache_hits_total\{route="llama",match="exact"\} 1/);
  assert.match(text, /llmsup_cache_hits_total\{route="llama",match="similar"\} 1/);
  assert.match(text, /llmsup_cache_misses_total\{route="llama"\} 1/);
  assert.match(text, /llmsup_cache_hit_similarity_count\{route="llama"\} 2/);
  assert.match(text, /llmsup_cache_entries 1/);
  assert.match(text, new RegExp(`llmsup_cache_bytes ${s.bytes}`));
  assert.match(text, /llmsup_cache_lookup_seconds_count 3/);
});

test("secrets and prompts stay out of the log", (t) => {
  const c = openCache(t);
  c.cache.store(R, "chat", ask("my password is hunter2"), answer("noted"), { authorization: "Bearer sk-live-123" });
  c.cache.lookupNow(R, "chat", ask("my password is hunter2"));
  c.cache.lookupNow(R, "chat", ask("something else entirely"));
  const text = JSON.stringify(c.logs());
  assert.ok(c.logs().some((l) => l.event === "cache.hit"));
  assert.ok(!/hunter2|sk-live|noted/.test(text), text);
});

test("a corruption error in the middle of a lookup sets the store aside and rebuilds it; other errors are logged once a minute", (t) => {
  const c = openCache(t);
  c.cache.store(R, "chat", ask(Q), answer("x"), {});
  c.cache.flush();
  const db = (c.cache as unknown as { db: Record<string, unknown> }).db;
  db.exact = () => {
    throw Object.assign(new Error("database disk image is malformed"), { code: "ERR_SQLITE_ERROR", errcode: 11 });
  };
  assert.equal(c.cache.lookupNow(R, "chat", ask(Q)), undefined);
  assert.ok(c.logs().some((l) => l.event === "cache.store.corrupt"));
  assert.equal(c.cache.status().state, "ok");
  assert.equal(c.cache.status().entries, 0, "rebuilt empty");
  assert.equal(c.cache.status().rebuilt, 1);
  // A disk-full kind of error: not corruption; the store stays, the failure is logged, rate-limited.
  const fresh = (c.cache as unknown as { db: Record<string, unknown> }).db;
  fresh.put = () => {
    throw Object.assign(new Error("database or disk is full"), { code: "ERR_SQLITE_ERROR", errcode: 13 });
  };
  for (let i = 0; i < 3; i++) {
    c.cache.store(R, "chat", ask(`q${i}`), answer("x"), {});
    c.cache.flush();
  }
  const failed = c.logs().filter((l) => l.event === "cache.store.failed");
  assert.equal(failed.length, 1);
  assert.equal(failed[0]!.code, "LLMSUP_E_CACHE_IO");
  assert.equal(c.cache.status().skipped.unavailable, 3);
  assert.equal(c.cache.status().rebuilt, 1, "not rebuilt for a full disk");
});

test("nothing thrown at the router: an answer that cannot be serialised, a failing lookup", async (t) => {
  const c = openCache(t);
  const weird = answer("x") as Record<string, unknown>;
  weird.extra = 10n; // JSON.stringify throws on a BigInt
  c.cache.store(R, "chat", ask("bigint answer"), weird, {});
  c.cache.store(R, "chat", ask(Q), answer("fine"), {});
  assert.doesNotThrow(() => c.cache.flush());
  assert.equal(c.cache.status().skipped.malformed, 1);
  assert.ok(c.cache.lookupNow(R, "chat", ask(Q)), "the rest of the batch is stored");
  const db = (c.cache as unknown as { db: Record<string, unknown> }).db;
  db.exact = () => {
    throw new TypeError("unexpected");
  };
  assert.equal(await c.cache.lookup(R, "chat", ask(Q)), undefined, "a failing lookup is a miss (the caller gets its 503)");
});
