/**
 * `npm run bench:cache`: the emergency cache at 100,000 answers.
 *
 * Fills a fresh store in a temp directory through the cache's own store path
 * (batches of 1,000, as a busy router would), then times lookups of three
 * kinds: exact repeats of stored questions, near-duplicates (a stored question
 * with a word added, dropped or misspelt) and misses (new questions from the
 * same templates: the worst case for candidate counts). Also: opening the
 * full store (a daemon start), PRAGMA quick_check, the size on disk, the LSH
 * recall against the exact similarity, the write cost per answer once the
 * store is full, and what a brute-force scan of every stored prompt would
 * cost instead of the LSH candidates.
 *
 * Then semantic matching (a route with cache_embeddings): every stored
 * prompt gets a BENCH_CACHE_DIM-float vector (default 384, as small sentence
 * embedding models have) from the simulator's deterministic embedding model,
 * in process (the embeddings tier's own time is not the cache's); the
 * charge, the memory of the in-memory index, opening with the vectors, and
 * lookups that fall through to the semantic scan (new questions): the whole
 * lookup and the scan alone.
 *
 * Prompts are synthetic but English-shaped (templates, common words, a large
 * made-up topic vocabulary) and reproducible (seeded). Figures are printed,
 * never asserted. BENCH_CACHE_ENTRIES and BENCH_CACHE_QUERIES change the sizes;
 * BENCH_CACHE_DIR keeps the store there (and reuses it: no fill) for repeated runs.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { EmergencyCache } from "../src/cache/cache.ts";
import type { CacheDb, NewVector } from "../src/cache/db.ts";
import type { Embedder } from "../src/cache/embeddings.ts";
import { vectorBytes } from "../src/cache/eviction.ts";
import { normalise, unpackFloat32, VectorIndex } from "../src/cache/vectors.ts";
import { semanticEmbedding } from "../src/sim/backend/semantic-embedding.ts";
import { prepareKey } from "../src/cache/key.ts";
import { cosine, gramVector, unpackVector } from "../src/cache/similarity.ts";
import { loadSqlite, type SqliteModule } from "../src/cache/sqlite.ts";
import type { RouteConfig } from "../src/config/types.ts";
import { silentLogger } from "../src/log/logger.ts";
import { realClock } from "../src/platform/clock.ts";
import { mulberry32 } from "../src/sim/backend/http.ts";

const ENTRIES = Number(process.env.BENCH_CACHE_ENTRIES ?? 100_000);
const QUERIES = Number(process.env.BENCH_CACHE_QUERIES ?? 2_000);
const THRESHOLD = 0.85;
const ROUTE: RouteConfig = { model: "llama", tiers: [], cache: true };
const DIM = Number(process.env.BENCH_CACHE_DIM ?? 384);
const SEMANTIC_ROUTE: RouteConfig = { ...ROUTE, cache_embeddings: { backend: "cpu", model: "embed" }, cache_semantic_similarity: 0.9 };
/** The simulator's embedding model, in process. */
const embedInProcess: Embedder = async (_target, texts) => texts.map((x) => semanticEmbedding(x, DIM));

// ------------------------------------------------------------------ prompts

const rnd = mulberry32(20250601);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

const SYLLABLES = "ka lo mi ne ru sa te vi do pa zo li ber con dex fin gal hor jun kel mar nor pol quin ras sul tor ven wil yor zen ath bel cor dri esk fal gor hil ist jor".split(" ");
const NOUNS = Array.from({ length: 6_000 }, () => Array.from({ length: 2 + Math.floor(rnd() * 2) }, () => pick(SYLLABLES)).join(""));
const REAL = "server cache memory driver kernel socket thread process database index query table network packet router model tensor gradient batch queue file disk partition container cluster node pod service request response token prompt context answer engine schedule backup replica shard lock transaction buffer stream channel event signal timer clock budget".split(" ");
const VERBS = "sort merge split parse load save cache index restart configure deploy monitor debug profile optimise compress encrypt validate migrate rotate shard".split(" ");
const LANGS = "Python Rust Go TypeScript Java C++ Bash SQL Haskell Kotlin".split(" ");
const WORDS = "the a of to and in is it that for on with as this be at by from or an are was but not what all were when we there can your which their said if do will each about how up out them then she many some so these would other into has more her two like him see time could no make than first been its who now people my made over did down only way find use may water long little very after words called just where most know".split(" ");
const noun = () => (rnd() < 0.3 ? pick(REAL) : pick(NOUNS));

const TEMPLATES: (() => string)[] = [
  () => `How do I ${pick(VERBS)} a ${noun()} in ${pick(LANGS)}?`,
  () => `What is the difference between ${noun()} and ${noun()}?`,
  () => `Explain how the ${noun()} works with the ${noun()} for a beginner.`,
  () => `Why does my ${noun()} fail when I ${pick(VERBS)} the ${noun()} on ${noun()}?`,
  () => `Write a short poem about ${noun()}, ${noun()} and ${noun()}.`,
  () => `Can you summarise the main ideas of ${noun()} in ${Math.floor(rnd() * 20) + 2} sentences?`,
  () => `${Array.from({ length: 6 + Math.floor(rnd() * 10) }, () => (rnd() < 0.6 ? pick(WORDS) : noun())).join(" ")}?`,
  () => `I am building a ${noun()} service with ${noun()} and ${pick(LANGS)}. The ${noun()} keeps timing out after ${Math.floor(rnd() * 60) + 1} seconds when the ${noun()} is under load. What should I check first, and how do I ${pick(VERBS)} it?`,
];

function prompt(): string {
  return pick(TEMPLATES)();
}

/** A near-duplicate: a word added, one dropped, or a typo. */
function edit(p: string): string {
  const w = p.split(" ");
  const i = Math.floor(rnd() * w.length);
  const r = rnd();
  if (r < 0.34) w.splice(i, 0, pick(["please", "really", "just", "actually", "quickly"]));
  else if (r < 0.67 && w.length > 4) w.splice(i, 1);
  else {
    const s = w[i]!;
    const j = Math.floor(rnd() * s.length);
    w[i] = s.slice(0, j) + String.fromCharCode(97 + Math.floor(rnd() * 26)) + s.slice(j + 1);
  }
  return w.join(" ");
}

const request = (content: string) => ({ model: "llama", messages: [{ role: "user", content }] });
// Answers draw from their own sequence, so the prompts are the same whether the store is filled or reused.
const answerRnd = mulberry32(7);
const answerFor = (i: number) => ({
  id: `chatcmpl-${i}`,
  object: "chat.completion",
  created: 1_750_000_000,
  model: "meta-llama/Meta-Llama-3.1-8B-Instruct",
  choices: [{ index: 0, message: { role: "assistant", content: `Answer ${i}: ${Array.from({ length: 60 }, () => WORDS[Math.floor(answerRnd() * WORDS.length)]).join(" ")}.` }, finish_reason: "stop" }],
  usage: { prompt_tokens: 20, completion_tokens: 80, total_tokens: 100 },
});

// ------------------------------------------------------------------ measuring

function stats(ms: number[]): { p50: number; p90: number; p99: number; max: number; mean: number } {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: s[s.length - 1]!, mean: s.reduce((a, b) => a + b, 0) / s.length };
}
const f = (n: number) => n.toFixed(3);
const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;

async function main(): Promise<void> {
  const keep = process.env.BENCH_CACHE_DIR;
  const dir = keep ?? mkdtempSync(path.join(tmpdir(), "llmsup-bench-cache-"));
  const config = { max_entries: ENTRIES * 2, max_bytes: 8 * 1024 ** 3, ttl: 365 * 86_400_000, similarity: THRESHOLD, multi_turn: false };
  const open = () => EmergencyCache.open({ config, dir, logger: silentLogger(), clock: realClock, sqlite: loadSqlite() });
  try {
    console.log(`llmsup emergency cache benchmark: ${ENTRIES.toLocaleString("en")} answers, ${QUERIES.toLocaleString("en")} lookups of each kind, Node ${process.versions.node}, SQLite ${(loadSqlite() as SqliteModule).DatabaseSync ? "node:sqlite" : "?"}`);
    let cache = open();
    const reuse = cache.status().entries >= ENTRIES;
    const stored: string[] = [];
    const seen = new Set<string>();
    const t0 = performance.now();
    let storeCallMs = 0;
    for (let i = 0; stored.length < ENTRIES; i++) {
      const p = prompt();
      if (seen.has(p)) continue;
      seen.add(p);
      stored.push(p);
      if (reuse) continue;
      const s = performance.now();
      cache.store(ROUTE, "chat", request(p), answerFor(stored.length - 1), {});
      storeCallMs += performance.now() - s;
      if (stored.length % 1_000 === 0) cache.flush();
    }
    cache.flush();
    const fillMs = performance.now() - t0;
    const st = cache.status();
    if (reuse) console.log(`\nfill: reusing the store in ${dir}`);
    else console.log(`\nfill: ${(fillMs / 1000).toFixed(1)} s (${Math.round(ENTRIES / (fillMs / 1000)).toLocaleString("en")} answers/s in batches of 1,000); store() on the request path: ${f((storeCallMs / ENTRIES) * 1000)} µs per call`);
    console.log(`store: ${st.entries.toLocaleString("en")} entries, ${mib(st.bytes)} charged against max_bytes, ${mib(st.file_bytes)} on disk`);

    cache.close();
    let t = performance.now();
    cache = open();
    const openMs = performance.now() - t;
    const db = (cache as unknown as { db: CacheDb }).db;
    console.log(`open (daemon start, ${db.df.size.toLocaleString("en")} gram frequencies loaded): ${openMs.toFixed(0)} ms`);
    const sqlite = loadSqlite() as SqliteModule;
    const raw = new sqlite.DatabaseSync(path.join(dir, "cache.sqlite"), { readOnly: true });
    t = performance.now();
    const qc = raw.prepare("PRAGMA quick_check").get() as { quick_check: string };
    console.log(`PRAGMA quick_check: ${(performance.now() - t).toFixed(0)} ms (${qc.quick_check})`);

    // Near-duplicates: how similar each really is to the question it came from (the same TF-IDF the cache uses).
    const dfOf = (id: number) => db.df.get(id) ?? 0;
    const trueSim = (a: string, b: string) => {
      const pa = prepareKey("llama", "chat", request(a), { multiTurn: false });
      const pb = prepareKey("llama", "chat", request(b), { multiTurn: false });
      if (!pa.ok || !pb.ok) return 0;
      if (pa.value.numbers !== pb.value.numbers) return 0;
      return cosine(gramVector(pa.value.text), gramVector(pb.value.text), dfOf, db.indexed);
    };

    const kinds: { name: string; queries: { q: string; origin?: number }[] }[] = [
      { name: "exact", queries: Array.from({ length: QUERIES }, () => ({ q: stored[Math.floor(rnd() * stored.length)]! })) },
      {
        name: "near-duplicate",
        queries: Array.from({ length: QUERIES }, () => {
          const origin = Math.floor(rnd() * stored.length);
          return { q: edit(stored[origin]!), origin };
        }),
      },
      {
        name: "miss (new question)",
        queries: Array.from({ length: QUERIES }, () => {
          for (;;) {
            const p = prompt();
            if (!seen.has(p)) return { q: p };
          }
        }),
      },
    ];
    console.log(`\nlookup latency (ms), whole lookup as the router calls it:`);
    console.log(`  ${"kind".padEnd(22)}${"hits".padStart(8)}${"p50".padStart(9)}${"p90".padStart(9)}${"p99".padStart(9)}${"max".padStart(9)}${"mean".padStart(9)}`);
    const results: Record<string, unknown> = {};
    for (const k of kinds) {
      const ms: number[] = [];
      let hits = 0;
      let eligible = 0;
      let foundEligible = 0;
      let wrong = 0;
      for (const { q, origin } of k.queries) {
        const s = performance.now();
        const hit = cache.lookupNow(ROUTE, "chat", request(q));
        ms.push(performance.now() - s);
        if (hit) hits++;
        if (origin !== undefined) {
          const sim = trueSim(q, stored[origin]!);
          if (sim >= THRESHOLD) {
            eligible++;
            if (hit) foundEligible++;
          }
          const content = (hit?.response as { choices?: { message?: { content?: string } }[] } | undefined)?.choices?.[0]?.message?.content ?? "";
          if (hit && !content.startsWith(`Answer ${origin}:`) && hit.similarity < sim - 1e-9) wrong++;
        }
      }
      const s = stats(ms);
      console.log(`  ${k.name.padEnd(22)}${String(hits).padStart(8)}${f(s.p50).padStart(9)}${f(s.p90).padStart(9)}${f(s.p99).padStart(9)}${f(s.max).padStart(9)}${f(s.mean).padStart(9)}`);
      results[k.name] = { hits, ...s, ...(eligible ? { eligible, recall: foundEligible / eligible, worse_than_origin: wrong } : {}) };
      if (eligible) console.log(`  ${"".padEnd(22)}LSH recall: ${foundEligible}/${eligible} near-duplicates at or above ${THRESHOLD} found (${((foundEligible / eligible) * 100).toFixed(1)}%); a worse match than the origin served: ${wrong}`);
    }

    // The write on the event loop once the store is full: answers flushed alone (a quiet router) and in batches.
    const writes: Record<string, number> = {};
    for (const batch of [1, 100]) {
      const n = batch === 1 ? 300 : 3_000;
      const t1 = performance.now();
      for (let i = 0; i < n; i++) {
        let p = prompt();
        while (seen.has(p)) p = prompt();
        seen.add(p);
        cache.store(ROUTE, "chat", request(p), answerFor(ENTRIES + i), {});
        if ((i + 1) % batch === 0) cache.flush();
      }
      cache.flush();
      writes[`batch_${batch}_us`] = ((performance.now() - t1) / n) * 1000;
    }
    console.log(`\nwriting at ${ENTRIES.toLocaleString("en")} answers (keys, grams, bands, one transaction, eviction): ${writes.batch_1_us!.toFixed(0)} µs per answer flushed alone, ${writes.batch_100_us!.toFixed(0)} µs in batches of 100`);

    // Why not scan: the same TF-IDF cosine against every stored prompt, in JS.
    const all = (raw.prepare("SELECT grams FROM entries").all() as { grams: Uint8Array }[]).map((r) => unpackVector(r.grams)!);
    const scanMs: number[] = [];
    for (const { q } of kinds[2]!.queries.slice(0, 20)) {
      const p = prepareKey("llama", "chat", request(q), { multiTurn: false });
      if (!p.ok) continue;
      const v = gramVector(p.value.text);
      const s = performance.now();
      let best = 0;
      for (const c of all) best = Math.max(best, cosine(v, c, dfOf, db.indexed));
      scanMs.push(performance.now() - s);
    }
    raw.close();
    const scan = stats(scanMs);
    console.log(`\nbrute force instead (cosine against all ${all.length.toLocaleString("en")} stored prompts, vectors already in memory): p50 ${scan.p50.toFixed(1)} ms, max ${scan.max.toFixed(1)} ms per lookup`);
    cache.close();

    // ---------------------------------------------------------------- semantic
    const openSemantic = () => EmergencyCache.open({ config, dir, logger: silentLogger(), clock: realClock, sqlite: loadSqlite(), embed: embedInProcess });
    cache = openSemantic();
    let sdb = (cache as unknown as { db: CacheDb }).db;
    const before = cache.status();
    let attachMs = 0;
    let embedMs = 0;
    if (before.embeddings.vectors < stored.length) {
      for (let i = 0; i < stored.length; i += 1_000) {
        const e0 = performance.now();
        const batch: NewVector[] = [];
        for (const q of stored.slice(i, i + 1_000)) {
          const p = prepareKey("llama", "chat", request(q), { multiTurn: false });
          if (p.ok) batch.push({ key: p.value.key, model: "embed", scope: p.value.scope32, vector: normalise(semanticEmbedding(p.value.text, DIM))! });
        }
        const a0 = performance.now();
        embedMs += a0 - e0;
        sdb.attach(batch);
        attachMs += performance.now() - a0;
      }
    }
    const withVectors = cache.status();
    cache.close();
    const heap0 = process.memoryUsage();
    t = performance.now();
    cache = openSemantic();
    const semOpenMs = performance.now() - t;
    sdb = (cache as unknown as { db: CacheDb }).db;
    // The rest of the vectors are read in steps, the event loop getting its turns between them.
    let longestTurnMs = 0;
    for (let last = performance.now(); sdb.vectorsPending; ) {
      await new Promise((r) => setImmediate(r));
      const now = performance.now();
      longestTurnMs = Math.max(longestTurnMs, now - last);
      last = now;
    }
    const semLoadedMs = performance.now() - t;
    const heap1 = process.memoryUsage();
    const index = sdb.vectors.of("embed")!;
    console.log(`\nsemantic: ${index.size.toLocaleString("en")} vectors of ${DIM} floats${attachMs ? `, stored in ${(attachMs / 1000).toFixed(1)} s (${f((attachMs / stored.length) * 1000)} µs per vector in batches of 1,000; the embedding model itself took ${(embedMs / 1000).toFixed(1)} s)` : " (reused)"}`);
    console.log(`  charged: ${mib(withVectors.bytes - before.bytes)} more against max_bytes (${vectorBytes(DIM)} bytes per vector); ${mib(withVectors.file_bytes)} on disk now`);
    console.log(`  in memory: ${mib(sdb.vectors.bytes)} for the index (one Float32Array of ${mib(index.size * DIM * 4)} plus ids, scopes, times); open with the vectors: ${semOpenMs.toFixed(0)} ms blocking, all in memory after ${semLoadedMs.toFixed(0)} ms (longest step ${longestTurnMs.toFixed(0)} ms), RSS ${heap1.rss >= heap0.rss ? "+" : ""}${mib(heap1.rss - heap0.rss)}`);
    const semQueries = kinds[2]!.queries.slice(0, Math.min(500, QUERIES));
    const wholeMs: number[] = [];
    const scanOnlyMs: number[] = [];
    let semHits = 0;
    let semantic = 0;
    for (const { q } of semQueries) {
      const p = prepareKey("llama", "chat", request(q), { multiTurn: false });
      if (!p.ok) continue;
      const vector = normalise(semanticEmbedding(p.value.text, DIM))!;
      const s0 = performance.now();
      index.nearest({ vector, scope: p.value.scope32, numbers: p.value.numbers, notBefore: 0, threshold: 0.9 });
      scanOnlyMs.push(performance.now() - s0);
      const s1 = performance.now();
      const hit = await cache.lookup(SEMANTIC_ROUTE, "chat", request(q));
      wholeMs.push(performance.now() - s1);
      if (hit) semHits++;
      if (hit?.match === "semantic") semantic++;
    }
    // The same scan in plain JavaScript (what the SIMD kernel replaces), over the same vectors read from the file.
    const jsIndex = new VectorIndex(DIM, { simd: false, capacity: index.size });
    const vraw = new (loadSqlite() as SqliteModule).DatabaseSync(path.join(dir, "cache.sqlite"), { readOnly: true });
    for (const r of vraw.prepare("SELECT id, scope, vec FROM vectors").iterate() as Iterable<{ id: number; scope: number; vec: Uint8Array }>) jsIndex.set(r.id, unpackFloat32(r.vec)!, r.scope, "", 0);
    vraw.close();
    const jsScanMs: number[] = [];
    for (const { q } of semQueries.slice(0, 100)) {
      const p = prepareKey("llama", "chat", request(q), { multiTurn: false });
      if (!p.ok) continue;
      const vector = normalise(semanticEmbedding(p.value.text, DIM))!;
      const s0 = performance.now();
      jsIndex.nearest({ vector, scope: p.value.scope32, numbers: p.value.numbers, notBefore: 0, threshold: 0.9 });
      jsScanMs.push(performance.now() - s0);
    }
    const jsScan = stats(jsScanMs);
    const whole = stats(wholeMs);
    const scanOnly = stats(scanOnlyMs);
    console.log(`  lookups falling through to the semantic step (${semQueries.length} new questions; ${semHits} answered, ${semantic} by meaning), ms:`);
    console.log(`  ${"".padEnd(22)}${"p50".padStart(9)}${"p90".padStart(9)}${"p99".padStart(9)}${"max".padStart(9)}${"mean".padStart(9)}`);
    console.log(`  ${"scan in JavaScript".padEnd(22)}${f(jsScan.p50).padStart(9)}${f(jsScan.p90).padStart(9)}${f(jsScan.p99).padStart(9)}${f(jsScan.max).padStart(9)}${f(jsScan.mean).padStart(9)}   (100 lookups; what the kernel replaces)`);
    console.log(`  ${`scan alone (${index.simd ? "SIMD" : "JS"})`.padEnd(22)}${f(scanOnly.p50).padStart(9)}${f(scanOnly.p90).padStart(9)}${f(scanOnly.p99).padStart(9)}${f(scanOnly.max).padStart(9)}${f(scanOnly.mean).padStart(9)}`);
    console.log(`  ${"whole lookup".padEnd(22)}${f(whole.p50).padStart(9)}${f(whole.p90).padStart(9)}${f(whole.p99).padStart(9)}${f(whole.max).padStart(9)}${f(whole.mean).padStart(9)}   (exact, LSH, embedding in process, scan, answer read)`);
    cache.close();
    const semanticResult = { dim: DIM, vectors: index.size, charged_bytes: withVectors.bytes - before.bytes, index_bytes: sdb.vectors.bytes, open_ms: semOpenMs, loaded_ms: semLoadedMs, longest_step_ms: longestTurnMs, attach_us: stored.length ? (attachMs / stored.length) * 1000 : 0, scan: scanOnly, scan_js: jsScan, simd: index.simd, lookup: whole };
    console.log(`\n${JSON.stringify({ entries: st.entries, bytes: st.bytes, file_bytes: st.file_bytes, fill_s: fillMs / 1000, open_ms: openMs, lookups: results, writes, brute_force_p50_ms: scan.p50, semantic: semanticResult })}`);
  } finally {
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
}

await main();
