/**
 * The emergency response cache: the fifth level of the fallback chain. Fills
 * from successful answers of routes with `cache = true`; is asked only when
 * every tier of a route failed. Exact key first, then a near-duplicate
 * (trigram TF-IDF cosine over LSH candidates) above [cache] similarity, then,
 * on a route with `cache_embeddings`, the stored question nearest in meaning
 * (cosine of embeddings above the route's `cache_semantic_similarity`): the
 * question is embedded by the route's embeddings tier within
 * LOOKUP_EMBED_TIMEOUT_MS; stored prompts are embedded in the background
 * after their answer went out (embed-queue.ts), their vectors kept in SQLite
 * next to the entry and in memory (vectors.ts).
 *
 * The router's hot path pays for a store call only on routes with the cache
 * on, and then only a header check and a queue push: keys, grams and the
 * SQLite write happen in one transaction per batch, after the answer went
 * out. Nothing here throws at the router: a failing store is logged and
 * counted; a corrupt one is set aside and rebuilt empty.
 */
import type { CacheConfig, RouteConfig } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock, TimerHandle } from "../platform/clock.ts";
import type { CacheHook, Endpoint } from "../router/router.ts";
import type { CacheDb } from "./db.ts";
import { EmbedQueue, type EmbedJob } from "./embed-queue.ts";
import type { Embedder, EmbeddingTarget } from "./embeddings.ts";
import { entryFor, type Pending, type PreparedEntry } from "./entry.ts";
import { chooseEvictions, excess, expiryCutoff, type CacheLimits } from "./eviction.ts";
import { optedOut, prepareKey, type PreparedKey, type SkipReason } from "./key.ts";
import { isAnswer } from "./marks.ts";
import { bestMatch } from "./nearest.ts";
import { bandKeys, gramVector, MAX_SIMILAR_CHARS, minhash } from "./similarity.ts";
import type { SqliteModule } from "./sqlite.ts";
import { StoreFile } from "./store-file.ts";
import { normalise } from "./vectors.ts";

export { CACHE_FILE } from "./store-file.ts";

/** Where the cache reports to Prometheus (RouterMetrics implements it). */
export interface CacheMetricsSink {
  cacheLookup(route: string, outcome: CacheMatch | "miss", seconds: number, similarity?: number): void;
  /** An answer stored or skipped (why); a prompt's embedding failed or was dropped (the queue was full). */
  cacheStore(route: string, outcome: "stored" | SkipReason | "embedding_failed" | "embedding_dropped"): void;
  cacheSize(entries: number, bytes: number): void;
  cacheEvicted(reason: "ttl" | "lru", n: number): void;
}

/** How a hit matched: the same question, a near-duplicate in words (trigrams), or one in meaning (embeddings). */
export type CacheMatch = "exact" | "similar" | "semantic";

/** The default of a route's `cache_semantic_similarity`. */
export const DEFAULT_SEMANTIC_SIMILARITY = 0.9;

export interface CacheOptions {
  readonly config: CacheConfig;
  /** The state directory; the store is `<dir>/cache.sqlite`. */
  readonly dir: string;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly metrics?: CacheMetricsSink;
  /** The SQLite module (loadSqlite(), from the composition root), or an Error saying why there is none. */
  readonly sqlite: SqliteModule | Error;
  /** Embeds prompts for routes with `cache_embeddings` (embeddings.ts httpEmbedder); without it, no semantic matching. */
  readonly embed?: Embedder;
}

export interface CacheHit {
  readonly response: unknown;
  readonly similarity: number;
  readonly cachedAt: number;
  readonly match: CacheMatch;
}

/** `llmsup status` figures (JSON, snake_case like the rest of the status). */
export interface CacheStatus {
  readonly state: "ok" | "unavailable";
  readonly problem: string | null;
  readonly file: string;
  readonly entries: number;
  readonly bytes: number;
  readonly file_bytes: number;
  readonly max_entries: number;
  readonly max_bytes: number;
  readonly ttl_s: number;
  readonly similarity: number;
  readonly hits: number;
  readonly hits_similar: number;
  readonly hits_semantic: number;
  readonly misses: number;
  readonly stored: number;
  readonly skipped: Readonly<Record<string, number>>;
  readonly evicted: number;
  readonly rebuilt: number;
  readonly last_hit: { readonly at: string; readonly route: string; readonly similarity: number } | null;
  /** Prompt embeddings: stored vectors, prompts waiting, embedded, failed and dropped since start. */
  readonly embeddings: { readonly vectors: number; readonly queued: number; readonly embedded: number; readonly failed: number; readonly dropped: number };
}

/** Stores waiting for the next write; more are dropped (counted as "backlog"). */
const MAX_PENDING = 1_000;
/** Answers are written at most this long after they were given (a lookup writes them at once)… */
const FLUSH_DELAY_MS = 1_000;
/** …or as soon as this many wait: one transaction for many answers shares its page writes. */
const FLUSH_BATCH = 128;
/** Document frequencies are written when this many changed, or this long after the last write. */
const DF_SYNC_GRAMS = 20_000;
const DF_SYNC_MS = 60_000;
/** Candidates re-ranked per near-duplicate lookup. */
const CANDIDATES = 64;
/** Entries deleted per step of a prune (the event loop gets a turn between steps). */
const PRUNE_STEP = 500;
/** Stored vectors read into memory after open: the first step at once (all of a small store), the rest with the event loop's turns between. */
const VECTOR_LOAD_FIRST = 1_000;
const VECTOR_LOAD_STEP = 2_000;
/** How long a lookup waits for the question's embedding before the lexical answer (or a miss) stands. */
export const LOOKUP_EMBED_TIMEOUT_MS = 1_500;
/** Background embedding: prompts waiting at most (more are dropped), requests at a time, prompts per request, its timeout. */
const EMBED_QUEUE_MAX = 1_000;
const EMBED_CONCURRENCY = 2;
const EMBED_BATCH = 16;
const EMBED_TIMEOUT_MS = 30_000;
/** Prompts longer than this (normalised characters) are not embedded: longer than most embedding models read. */
export const MAX_EMBED_CHARS = 2_000;

/** A stored answer a lookup found. */
interface Found {
  readonly id: number;
  readonly similarity: number;
  readonly createdAt: number;
  readonly response: string;
  readonly match: CacheMatch;
}

export class EmergencyCache implements CacheHook {
  private config: CacheConfig;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly metrics?: CacheMetricsSink;
  private readonly file: StoreFile;
  private pending: Pending[] = [];
  private flushTimer?: TimerHandle;
  private flushSoon = false;
  private lastDfSync = 0;
  private closed = false;
  private readonly counts = { hits: 0, hitsSimilar: 0, hitsSemantic: 0, misses: 0, stored: 0, evicted: 0 };
  private readonly embedCounts = { embedded: 0, failed: 0, dropped: 0 };
  private readonly embed?: Embedder;
  private readonly embedQueue?: EmbedQueue;
  /** Whether the last background embedding failed (a failure is logged when this turns true, a recovery when it turns false). */
  private embedFailing = false;
  private readonly skipped: Record<string, number> = {};
  private lastHit: { at: number; route: string; similarity: number } | null = null;

  private constructor(o: CacheOptions) {
    this.config = o.config;
    this.log = o.logger;
    this.clock = o.clock;
    this.metrics = o.metrics;
    this.embed = o.embed;
    if (o.embed) {
      this.embedQueue = new EmbedQueue({
        embed: o.embed,
        maxQueued: EMBED_QUEUE_MAX,
        concurrency: EMBED_CONCURRENCY,
        batch: EMBED_BATCH,
        timeoutMs: EMBED_TIMEOUT_MS,
        onEmbedded: (jobs, vectors) => this.embedded(jobs, vectors),
        onFailed: (jobs, e) => this.embedFailed(jobs, e),
      });
    }
    this.file = new StoreFile({
      dir: o.dir,
      logger: o.logger,
      clock: o.clock,
      sqlite: o.sqlite,
      onOpen: (db) => {
        this.lastDfSync = this.clock.now();
        this.reportSize();
        this.loadVectors(db);
      },
    });
  }

  /** The open store, if any. */
  private get db(): CacheDb | undefined {
    return this.file.db;
  }

  private guard<T>(what: string, fallback: T, fn: (db: CacheDb) => T): T {
    return this.file.guard(what, fallback, fn);
  }

  /**
   * Opens the store; never throws: a missing SQLite or an unwritable directory
   * leaves the cache unavailable (and says so). Expired answers are never
   * served; `prune()` deletes them (the daemon runs it after start and from
   * housekeeping).
   */
  static open(o: CacheOptions): EmergencyCache {
    const c = new EmergencyCache(o);
    c.file.open();
    return c;
  }

  private get limits(): CacheLimits {
    return { maxEntries: this.config.max_entries, maxBytes: this.config.max_bytes, ttlMs: this.config.ttl };
  }

  private skip(route: string, reason: SkipReason): void {
    this.skipped[reason] = (this.skipped[reason] ?? 0) + 1;
    this.metrics?.cacheStore(route, reason);
  }

  private reportSize(): void {
    this.metrics?.cacheSize(this.db?.entries ?? 0, this.db?.bytes ?? 0);
  }

  // ------------------------------------------------------------------ fill

  /**
   * Called after every successful answer of a route with the cache on (the
   * router does not call it otherwise). `headers` are the client's request
   * headers: `x-llmsup-cache: no-store` opts out.
   */
  store(route: RouteConfig, endpoint: Endpoint, request: unknown, response: unknown, headers?: Record<string, string | string[] | undefined>): void {
    if (!route.cache || this.closed) return;
    if (optedOut(headers)) return this.skip(route.model, "opt_out");
    if (!this.db) return this.skip(route.model, "unavailable");
    if (this.pending.length >= MAX_PENDING) return this.skip(route.model, "backlog");
    this.pending.push({ route: route.model, endpoint, request, response, at: this.clock.now(), embed: this.embedQueue ? route.cache_embeddings : undefined });
    // Never on the request's own turn of the event loop: the answer goes out first.
    if (this.pending.length >= FLUSH_BATCH && !this.flushSoon) {
      this.flushSoon = true;
      setImmediate(() => this.flush());
    } else this.flushTimer ??= this.clock.setTimeout(() => this.flush(), FLUSH_DELAY_MS);
  }

  /** Writes what is waiting, in one transaction, then evicts down to the bounds. Never throws (it runs from timers). */
  flush(): void {
    this.flushTimer?.cancel();
    this.flushTimer = undefined;
    this.flushSoon = false;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    try {
      this.write(batch);
    } catch (e) {
      this.file.failed("store", e);
    }
  }

  private write(batch: readonly Pending[]): void {
    const items: PreparedEntry[] = [];
    const targets = new Map<PreparedEntry, EmbeddingTarget>();
    for (const p of batch) {
      let item: PreparedEntry | SkipReason;
      try {
        item = entryFor(p, this.config);
      } catch {
        item = "malformed";
      }
      if (typeof item === "string") this.skip(p.route, item);
      else {
        items.push(item);
        if (p.embed) targets.set(item, p.embed);
      }
    }
    if (items.length === 0) return;
    const ok = this.guard("store", false, (db) => {
      db.put(items);
      return true;
    });
    if (ok) {
      this.counts.stored += items.length;
      for (const it of items) this.metrics?.cacheStore(it.route, "stored");
      this.log.debug({ event: "cache.stored", answers: items.length, entries: this.db?.entries }, `emergency cache: stored ${items.length} answers`);
      this.evictOverBounds();
      for (const [it, target] of targets) this.queueEmbedding(it, target);
      const db = this.db;
      if (db && (db.dfPending >= DF_SYNC_GRAMS || this.clock.now() - this.lastDfSync >= DF_SYNC_MS)) this.syncDf();
    } else {
      for (const it of items) this.skip(it.route, "unavailable");
    }
    this.reportSize();
  }

  // ------------------------------------------------------------------ embeddings

  /** A stored prompt waits for its vector (off the request path: this runs from the write, after the answer went out). */
  private queueEmbedding(it: PreparedEntry, target: EmbeddingTarget): void {
    if (!this.embedQueue || it.text === "" || it.text.length > MAX_EMBED_CHARS) return;
    if (this.embedQueue.push({ key: it.key, route: it.route, target, text: it.text, scope: it.scope32 })) return;
    this.embedCounts.dropped++;
    this.metrics?.cacheStore(it.route, "embedding_dropped");
  }

  private embedded(jobs: readonly EmbedJob[], vectors: readonly number[][]): void {
    if (this.embedFailing) {
      this.embedFailing = false;
      this.log.info({ event: "cache.embeddings.recovered", backend: jobs[0]!.target.backend }, `emergency cache: prompts are embedded again by ${jobs[0]!.target.backend}`);
    }
    const items = jobs.flatMap((j, i) => {
      const raw = vectors[i];
      const v = raw && normalise(raw);
      return v ? [{ key: j.key, model: j.target.model, scope: j.scope, vector: v, route: j.route }] : [];
    });
    // A zero or non-finite vector says nothing: failed.
    this.embedCounts.failed += jobs.length - items.length;
    const outcomes = this.guard("store vectors", undefined, (db) => db.attach(items));
    if (!outcomes) return;
    outcomes.forEach((o, i) => {
      if (o === "attached") this.embedCounts.embedded++;
      else if (o === "dimension") {
        this.embedCounts.failed++;
        this.metrics?.cacheStore(items[i]!.route, "embedding_failed");
      }
    });
    this.evictOverBounds();
    this.reportSize();
  }

  private embedFailed(jobs: readonly EmbedJob[], e: unknown): void {
    this.embedCounts.failed += jobs.length;
    for (const j of jobs) this.metrics?.cacheStore(j.route, "embedding_failed");
    if (this.embedFailing) return;
    this.embedFailing = true;
    const t = jobs[0]!.target;
    const message = e instanceof Error ? e.message : String(e);
    this.log.warn(
      { event: "cache.embeddings.failed", code: "LLMSUP_E_CACHE_EMBEDDINGS", backend: t.backend, model: t.model, err: message },
      `emergency cache: cannot embed prompts with ${t.model} on ${t.backend} (${message}); answers are still stored and matched by their words (said once until it works again)`,
    );
  }

  /** Reads the stored vectors into memory: a small store at once, a large one in steps that leave the event loop its turns. */
  private loadVectors(db: CacheDb): void {
    const started = performance.now();
    let read = 0;
    let skipped = 0;
    const step = (limit: number) => {
      if (this.closed || this.db !== db) return;
      const r = this.guard("load vectors", undefined, (d) => d.loadVectors(limit));
      if (r) {
        read += r.read;
        skipped += r.skipped;
      }
      if (r && db.vectorsPending) {
        setImmediate(() => step(VECTOR_LOAD_STEP));
        return;
      }
      if (read === 0) return;
      this.log.info(
        { event: "cache.vectors.loaded", vectors: db.vectors.size, skipped, ms: Math.round(performance.now() - started) },
        `emergency cache: ${db.vectors.size} prompt vectors in memory${skipped ? ` (${skipped} unreadable, left out)` : ""}`,
      );
    };
    step(VECTOR_LOAD_FIRST);
  }

  /** Resolves once no prompt waits for its embedding (tests, the benchmark). */
  embeddingsIdle(): Promise<void> {
    return this.embedQueue?.idle() ?? Promise.resolve();
  }

  /** Least recently used entries out until both bounds hold. */
  private evictOverBounds(): void {
    this.guard("evict", undefined, (db) => {
      for (;;) {
        const over = excess({ entries: db.entries, bytes: db.bytes }, this.limits);
        if (over.entries === 0 && over.bytes === 0) return;
        const lru = db.lru(over.bytes > 0 ? PRUNE_STEP : Math.min(PRUNE_STEP, over.entries));
        const { ids } = chooseEvictions(lru, over);
        if (ids.length === 0) return;
        db.delete(ids);
        this.evicted("lru", ids.length);
      }
    });
  }

  private evicted(reason: "ttl" | "lru", n: number): void {
    this.counts.evicted += n;
    this.metrics?.cacheEvicted(reason, n);
    this.log.debug({ event: "cache.evicted", reason, answers: n }, `emergency cache: ${n} answers evicted (${reason})`);
  }

  // ------------------------------------------------------------------ lookup

  /**
   * Only called when every tier of the route failed. Exact, then lexical
   * (synchronous); then, on a route with an embeddings tier, semantic. When
   * the embeddings tier fails or is slow, what the lexical index found stands.
   */
  async lookup(route: RouteConfig, endpoint: Endpoint, request: unknown): Promise<CacheHit | undefined> {
    if (!route.cache || !this.db) return undefined;
    const started = performance.now();
    try {
      const local = this.findLocal(route, endpoint, request);
      if (local.found) return this.serve(route, local.found, started);
      if (local.prepared && route.cache_embeddings && this.embed) {
        const found = await this.findSemantic(route, route.cache_embeddings, local.prepared);
        if (found) return this.serve(route, found, started);
      }
      return this.miss(route.model, started, local.why);
    } catch (e) {
      this.file.failed("lookup", e);
      return this.miss(route.model, started, "lookup failed");
    }
  }

  /** The lookup without the semantic step, synchronously (SQLite is); a failure is a miss. */
  lookupNow(route: RouteConfig, endpoint: Endpoint, request: unknown): CacheHit | undefined {
    if (!route.cache || !this.db) return undefined;
    const started = performance.now();
    try {
      const local = this.findLocal(route, endpoint, request);
      return local.found ? this.serve(route, local.found, started) : this.miss(route.model, started, local.why);
    } catch (e) {
      this.file.failed("lookup", e);
      return this.miss(route.model, started, "lookup failed");
    }
  }

  private findLocal(route: RouteConfig, endpoint: Endpoint, request: unknown): { found?: Found; prepared?: PreparedKey; why: string } {
    this.flush();
    const prepared = prepareKey(route.model, endpoint, request, { multiTurn: this.config.multi_turn });
    if (!prepared.ok) return { why: `not cacheable: ${prepared.reason}` };
    const notBefore = expiryCutoff(this.clock.now(), this.limits);
    const found = this.guard("lookup", undefined, (db): Found | undefined => {
      const exact = db.exact(prepared.value.key, notBefore);
      if (exact) return { id: exact.id, similarity: 1, createdAt: exact.createdAt, response: exact.response, match: "exact" };
      const near = this.nearest(db, prepared.value, notBefore);
      if (!near) return undefined;
      const r = db.response(near.id);
      return r && { id: near.id, similarity: near.similarity, createdAt: r.createdAt, response: r.response, match: "similar" };
    });
    return { found, prepared: prepared.value, why: "no answer close enough" };
  }

  /** The stored question nearest in meaning, when the embeddings tier answers in time; a failure of it is no match. */
  private async findSemantic(route: RouteConfig, target: EmbeddingTarget, q: PreparedKey): Promise<Found | undefined> {
    if (q.text === "" || q.text.length > MAX_EMBED_CHARS || !this.db?.vectors.of(target.model)?.size) return undefined;
    let vector: Float32Array | undefined;
    try {
      const [v] = await this.embed!(target, [q.text], LOOKUP_EMBED_TIMEOUT_MS);
      vector = v && normalise(v);
    } catch (e) {
      this.log.info({ event: "cache.embeddings.unavailable", route: route.model, backend: target.backend, err: e instanceof Error ? e.message : String(e) }, `emergency cache: no embedding for the question from ${target.backend}; matching by words only`);
      return undefined;
    }
    if (!vector) return undefined;
    const notBefore = expiryCutoff(this.clock.now(), this.limits);
    const threshold = route.cache_semantic_similarity ?? DEFAULT_SEMANTIC_SIMILARITY;
    return this.guard("lookup", undefined, (db): Found | undefined => {
      const m = db.vectors.of(target.model)?.nearest({ vector: vector!, scope: q.scope32, numbers: q.numbers, notBefore, threshold });
      if (!m) return undefined;
      const r = db.response(m.id);
      return r && { id: m.id, similarity: m.similarity, createdAt: r.createdAt, response: r.response, match: "semantic" };
    });
  }

  private serve(route: RouteConfig, found: Found, started: number): CacheHit | undefined {
    let response: unknown;
    try {
      response = JSON.parse(found.response);
    } catch {
      response = undefined;
    }
    if (!isAnswer(response)) return this.miss(route.model, started, "stored answer unreadable");
    const now = this.clock.now();
    this.guard("touch", undefined, (db) => db.touch(found.id, now));
    const seconds = (performance.now() - started) / 1000;
    const match = found.match;
    this.counts.hits++;
    if (match === "similar") this.counts.hitsSimilar++;
    if (match === "semantic") this.counts.hitsSemantic++;
    this.lastHit = { at: now, route: route.model, similarity: found.similarity };
    this.metrics?.cacheLookup(route.model, match, seconds, found.similarity);
    this.log.info(
      { event: "cache.hit", route: route.model, match, similarity: Math.round(found.similarity * 1000) / 1000, age_s: Math.round((now - found.createdAt) / 1000), lookup_ms: Math.round(seconds * 1e5) / 100 },
      `emergency cache: ${match} answer for ${route.model}`,
    );
    return { response, similarity: found.similarity, cachedAt: found.createdAt, match };
  }

  /** The most similar stored prompt in the same scope at or above the threshold, with the same numbers. */
  private nearest(db: CacheDb, q: PreparedKey, notBefore: number): { id: number; similarity: number } | undefined {
    if (q.text.length > MAX_SIMILAR_CHARS) return undefined;
    const grams = gramVector(q.text);
    if (grams.ids.length === 0) return undefined;
    const candidates = db.candidates(bandKeys(minhash(grams.ids), q.scope32), notBefore, CANDIDATES);
    return bestMatch({ grams, numbers: q.numbers }, candidates, (id) => db.df.get(id) ?? 0, db.indexed, this.config.similarity);
  }

  private miss(route: string, started: number, why: string): undefined {
    this.counts.misses++;
    this.metrics?.cacheLookup(route, "miss", (performance.now() - started) / 1000);
    this.log.info({ event: "cache.miss", route, reason: why }, `emergency cache: nothing for ${route} (${why})`);
    return undefined;
  }

  // ------------------------------------------------------------------ upkeep

  /** Expired answers out, then down to the bounds; in steps, yielding to the event loop between them. */
  async prune(): Promise<void> {
    try {
      this.flush();
      for (;;) {
        if (this.pruneNow(PRUNE_STEP) < PRUNE_STEP) break;
        await new Promise((r) => setImmediate(r));
      }
      this.evictOverBounds();
      this.syncDf();
      this.guard("vacuum", undefined, (db) => db.vacuum(1_000));
      this.reportSize();
    } catch (e) {
      this.file.failed("prune", e);
    }
  }

  private syncDf(): void {
    this.lastDfSync = this.clock.now();
    this.guard("write gram frequencies", undefined, (db) => db.syncDf());
  }

  /** Deletes up to `max` expired answers; returns how many. */
  private pruneNow(max: number): number {
    const n = this.guard("prune", 0, (db) => {
      let done = 0;
      while (done < max) {
        const ids = db.expired(expiryCutoff(this.clock.now(), this.limits), Math.min(PRUNE_STEP, max - done));
        if (ids.length === 0) break;
        db.delete(ids);
        done += ids.length;
      }
      return done;
    });
    if (n > 0) this.evicted("ttl", n);
    this.reportSize();
    return n;
  }

  /** New bounds, TTL and threshold after a reload; the store shrinks at once when they are lower. */
  reconfigure(config: CacheConfig): void {
    this.config = config;
    this.flush();
    this.evictOverBounds();
    this.reportSize();
  }

  status(): CacheStatus {
    const db = this.db;
    return {
      state: db ? "ok" : "unavailable",
      problem: this.file.problem,
      file: this.file.path,
      entries: db?.entries ?? 0,
      bytes: db?.bytes ?? 0,
      file_bytes: db ? this.guard("size", 0, (d) => d.fileBytes()) : 0,
      max_entries: this.config.max_entries,
      max_bytes: this.config.max_bytes,
      ttl_s: Math.round(this.config.ttl / 1000),
      similarity: this.config.similarity,
      hits: this.counts.hits,
      hits_similar: this.counts.hitsSimilar,
      hits_semantic: this.counts.hitsSemantic,
      misses: this.counts.misses,
      stored: this.counts.stored,
      skipped: { ...this.skipped },
      evicted: this.counts.evicted,
      rebuilt: this.file.rebuilt,
      embeddings: { vectors: db?.vectors.size ?? 0, queued: this.embedQueue?.queued ?? 0, ...this.embedCounts },
      last_hit: this.lastHit && { at: new Date(this.lastHit.at).toISOString(), route: this.lastHit.route, similarity: Math.round(this.lastHit.similarity * 1000) / 1000 },
    };
  }

  /** Writes what is waiting and closes the file. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.embedQueue?.close();
    this.file.close();
  }
}
