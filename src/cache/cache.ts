/**
 * The emergency response cache: the fifth level of the fallback chain. Fills
 * from successful answers of routes with `cache = true`; is asked only when
 * every tier of a route failed. Exact key first, then a near-duplicate
 * (trigram TF-IDF cosine over LSH candidates) above [cache] similarity.
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
import type { CacheDb, NewEntry } from "./db.ts";
import { entryFor, type Pending } from "./entry.ts";
import { chooseEvictions, excess, expiryCutoff, type CacheLimits } from "./eviction.ts";
import { optedOut, prepareKey, type PreparedKey, type SkipReason } from "./key.ts";
import { isAnswer } from "./marks.ts";
import { bestMatch } from "./nearest.ts";
import { bandKeys, gramVector, MAX_SIMILAR_CHARS, minhash } from "./similarity.ts";
import type { SqliteModule } from "./sqlite.ts";
import { StoreFile } from "./store-file.ts";

export { CACHE_FILE } from "./store-file.ts";

/** Where the cache reports to Prometheus (RouterMetrics implements it). */
export interface CacheMetricsSink {
  cacheLookup(route: string, outcome: "exact" | "similar" | "miss", seconds: number, similarity?: number): void;
  cacheStore(route: string, outcome: "stored" | SkipReason): void;
  cacheSize(entries: number, bytes: number): void;
  cacheEvicted(reason: "ttl" | "lru", n: number): void;
}

export interface CacheOptions {
  readonly config: CacheConfig;
  /** The state directory; the store is `<dir>/cache.sqlite`. */
  readonly dir: string;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly metrics?: CacheMetricsSink;
  /** The SQLite module (loadSqlite(), from the composition root), or an Error saying why there is none. */
  readonly sqlite: SqliteModule | Error;
}

export interface CacheHit {
  readonly response: unknown;
  readonly similarity: number;
  readonly cachedAt: number;
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
  readonly misses: number;
  readonly stored: number;
  readonly skipped: Readonly<Record<string, number>>;
  readonly evicted: number;
  readonly rebuilt: number;
  readonly last_hit: { readonly at: string; readonly route: string; readonly similarity: number } | null;
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
  private readonly counts = { hits: 0, hitsSimilar: 0, misses: 0, stored: 0, evicted: 0 };
  private readonly skipped: Record<string, number> = {};
  private lastHit: { at: number; route: string; similarity: number } | null = null;

  private constructor(o: CacheOptions) {
    this.config = o.config;
    this.log = o.logger;
    this.clock = o.clock;
    this.metrics = o.metrics;
    this.file = new StoreFile({
      dir: o.dir,
      logger: o.logger,
      clock: o.clock,
      sqlite: o.sqlite,
      onOpen: () => {
        this.lastDfSync = this.clock.now();
        this.reportSize();
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
    this.pending.push({ route: route.model, endpoint, request, response, at: this.clock.now() });
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
    const items: NewEntry[] = [];
    for (const p of batch) {
      let item: NewEntry | SkipReason;
      try {
        item = entryFor(p, this.config);
      } catch {
        item = "malformed";
      }
      if (typeof item === "string") this.skip(p.route, item);
      else items.push(item);
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
      const db = this.db;
      if (db && (db.dfPending >= DF_SYNC_GRAMS || this.clock.now() - this.lastDfSync >= DF_SYNC_MS)) this.syncDf();
    } else {
      for (const it of items) this.skip(it.route, "unavailable");
    }
    this.reportSize();
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

  /** Only called when every tier of the route failed. */
  async lookup(route: RouteConfig, endpoint: Endpoint, request: unknown): Promise<CacheHit | undefined> {
    return this.lookupNow(route, endpoint, request);
  }

  /** The lookup, synchronously (SQLite is); a failure is a miss. */
  lookupNow(route: RouteConfig, endpoint: Endpoint, request: unknown): CacheHit | undefined {
    if (!route.cache || !this.db) return undefined;
    const started = performance.now();
    try {
      return this.find(route, endpoint, request, started);
    } catch (e) {
      this.file.failed("lookup", e);
      return this.miss(route.model, started, "lookup failed");
    }
  }

  private find(route: RouteConfig, endpoint: Endpoint, request: unknown, started: number): CacheHit | undefined {
    this.flush();
    const prepared = prepareKey(route.model, endpoint, request, { multiTurn: this.config.multi_turn });
    if (!prepared.ok) return this.miss(route.model, started, `not cacheable: ${prepared.reason}`);
    const now = this.clock.now();
    const notBefore = expiryCutoff(now, this.limits);
    const found = this.guard("lookup", undefined, (db) => {
      const exact = db.exact(prepared.value.key, notBefore);
      if (exact) return { id: exact.id, similarity: 1, createdAt: exact.createdAt, response: exact.response };
      const near = this.nearest(db, prepared.value, notBefore);
      if (!near) return undefined;
      const r = db.response(near.id);
      return r && { id: near.id, similarity: near.similarity, createdAt: r.createdAt, response: r.response };
    });
    if (!found) return this.miss(route.model, started, "no answer close enough");
    let response: unknown;
    try {
      response = JSON.parse(found.response);
    } catch {
      response = undefined;
    }
    if (!isAnswer(response)) return this.miss(route.model, started, "stored answer unreadable");
    this.guard("touch", undefined, (db) => db.touch(found.id, now));
    const seconds = (performance.now() - started) / 1000;
    const exact = found.similarity >= 1;
    this.counts.hits++;
    if (!exact) this.counts.hitsSimilar++;
    this.lastHit = { at: now, route: route.model, similarity: found.similarity };
    this.metrics?.cacheLookup(route.model, exact ? "exact" : "similar", seconds, found.similarity);
    this.log.info(
      { event: "cache.hit", route: route.model, match: exact ? "exact" : "similar", similarity: Math.round(found.similarity * 1000) / 1000, age_s: Math.round((now - found.createdAt) / 1000), lookup_ms: Math.round(seconds * 1e5) / 100 },
      `emergency cache: ${exact ? "exact" : "similar"} answer for ${route.model}`,
    );
    return { response, similarity: found.similarity, cachedAt: found.createdAt };
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
      misses: this.counts.misses,
      stored: this.counts.stored,
      skipped: { ...this.skipped },
      evicted: this.counts.evicted,
      rebuilt: this.file.rebuilt,
      last_hit: this.lastHit && { at: new Date(this.lastHit.at).toISOString(), route: this.lastHit.route, similarity: Math.round(this.lastHit.similarity * 1000) / 1000 },
    };
  }

  /** Writes what is waiting and closes the file. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.file.close();
  }
}
