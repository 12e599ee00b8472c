/**
 * The emergency cache's SQLite file: answers by exact key, each with its
 * trigram vector; MinHash LSH band keys in an FTS5 index; gram document
 * frequencies for TF-IDF. A thin shell: it runs the statements; what to
 * keep, find and evict is decided by the pure modules and by cache.ts. Every
 * method may throw a SQLite error; the caller decides what a failure means.
 *
 *   entries(id, key, route, created_at, used_at, hits, bytes, indexed, numbers, grams, response)
 *   lsh                  FTS5, contentless: an entry's 25 band keys as its tokens (rowid = entry id)
 *   df(gram, n)          gram → number of indexed prompts containing it
 *   meta(k, v)           gen: bumped by every change of entries; df_gen: the gen df was written at
 *   vectors(id, model, scope, vec)  an entry's prompt embedding (float32 blob), added after the entry,
 *                        its bytes charged to the entry; read into memory (vectors.ts) in steps after open
 *
 * Document frequencies live in memory and are written in bulk (syncDf), not
 * with every answer: an answer touches ~100 random df pages, which would
 * make each store write half a megabyte of WAL. When the file's df is behind
 * its entries (the daemon died between syncs), the next open recounts it
 * from the stored gram vectors.
 *
 * Why FTS5 for the bands (measured, scripts/bench-cache.ts and alternatives
 * tried): a plain (bkey, entry) B-tree takes 25 inserts at random places per
 * answer, i.e. 25 whole pages appended to the WAL, ≈0.6 ms per answer for
 * the band rows alone at 50,000 answers, batched or not; an in-memory hash
 * index is memory-latency bound, ≈1 KiB per answer and ≈1 s to rebuild at
 * each start at 100,000. FTS5 is an LSM inverted index: a transaction's
 * postings become one small segment, merged incrementally; nothing in
 * memory, nothing to rebuild (opening 100,000 answers: ≈10 ms);
 * contentless_delete removes an entry by rowid. Whole writes at 100,000
 * answers: ≈0.15 ms per answer in batches of 100, ≈0.5 ms alone.
 */
import { closeSync, openSync, statSync } from "node:fs";
import { vectorBytes } from "./eviction.ts";
import { packVector, unpackVector, type GramVector } from "./similarity.ts";
import type { Database, SqliteModule, Statement } from "./sqlite.ts";
import { packFloat32, unpackFloat32, VectorIndexes } from "./vectors.ts";

/** 2: the vectors table (a version 1 file gains it at open). */
export const SCHEMA_VERSION = 2;
/** Entries a band's bucket may hold and still say something about a prompt (see candidates()). */
export const BUCKET_CAP = 256;

export interface NewEntry {
  readonly key: string;
  readonly route: string;
  readonly at: number;
  readonly numbers: string;
  /** Absent: exact matches only (prompt too long for the similarity index). */
  readonly grams?: GramVector;
  /** The LSH band keys of `grams` (BANDS of them). */
  readonly bands?: readonly number[];
  readonly response: string;
  readonly bytes: number;
}

export interface Candidate {
  readonly id: number;
  readonly createdAt: number;
  readonly numbers: string;
  readonly grams: GramVector | undefined;
}

export class CorruptStore extends Error {}

/** An embedding to attach to the entry stored under `key`; `vector` normalised. */
export interface NewVector {
  readonly key: string;
  readonly model: string;
  readonly scope: number;
  readonly vector: Float32Array;
}

/** What became of a vector: attached, the entry is gone (evicted meanwhile), it had one, or its length differs from the model's. */
export type AttachOutcome = "attached" | "gone" | "exists" | "dimension";

const VECTORS_TABLE = `CREATE TABLE vectors (id INTEGER PRIMARY KEY, model TEXT NOT NULL, scope INTEGER NOT NULL, vec BLOB NOT NULL);
CREATE INDEX vectors_model ON vectors(model);`;

const SCHEMA = `
CREATE TABLE entries (
  id INTEGER PRIMARY KEY,
  key BLOB NOT NULL UNIQUE,
  route TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  used_at INTEGER NOT NULL,
  hits INTEGER NOT NULL DEFAULT 0,
  bytes INTEGER NOT NULL,
  indexed INTEGER NOT NULL,
  numbers TEXT NOT NULL,
  grams BLOB,
  response TEXT NOT NULL
);
CREATE INDEX entries_used ON entries(used_at, bytes, indexed);
CREATE INDEX entries_created ON entries(created_at);
CREATE VIRTUAL TABLE lsh USING fts5(bands, content = '', contentless_delete = 1, tokenize = 'ascii', detail = none);
CREATE TABLE df (gram INTEGER PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
${VECTORS_TABLE}
INSERT INTO meta (k, v) VALUES ('gen', 0), ('df_gen', 0);
`;

export class CacheDb {
  readonly file: string;
  private readonly db: Database;
  /** gram → indexed prompts containing it. */
  readonly df = new Map<number, number>();
  entries = 0;
  bytes = 0;
  /** Entries with a gram vector (the N of IDF). */
  indexed = 0;
  /** Grams whose df changed since the last syncDf. */
  private readonly dirty = new Set<number>();
  private gen = 0;
  /** The prompt embeddings, by model, in memory. */
  readonly vectors = new VectorIndexes();
  /** Whether stored vectors remain to be read into memory (loadVectors). */
  vectorsPending = true;
  /** The id after which loadVectors reads on. */
  private vectorsAfter = 0;
  /** Whether opening had to recount the document frequencies. */
  readonly dfRebuilt: boolean = false;
  private readonly st: Record<string, Statement>;

  /** Opens (creating if need be) the store; throws CorruptStore when the file is not a usable store. */
  constructor(sqlite: SqliteModule, file: string) {
    this.file = file;
    // Created private before SQLite touches it: prompts and answers live here.
    closeSync(openSync(file, "a", 0o600));
    this.db = new sqlite.DatabaseSync(file);
    try {
      this.db.exec("PRAGMA busy_timeout = 2000");
      const version = (this.db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version;
      if (version === 0) {
        const tables = (this.db.prepare("SELECT count(*) AS n FROM sqlite_master").get() as { n: number }).n;
        if (tables !== 0) throw new CorruptStore("a database without llmsup's schema version");
        this.db.exec("PRAGMA auto_vacuum = INCREMENTAL");
        this.db.exec("PRAGMA journal_mode = WAL");
        this.db.exec(`BEGIN; ${SCHEMA} PRAGMA user_version = ${SCHEMA_VERSION}; COMMIT;`);
      } else if (version === 1) {
        this.db.exec("PRAGMA journal_mode = WAL");
        this.db.exec(`BEGIN; ${VECTORS_TABLE} PRAGMA user_version = ${SCHEMA_VERSION}; COMMIT;`);
      } else if (version !== SCHEMA_VERSION) {
        throw new CorruptStore(`schema version ${version}, this llmsup reads ${SCHEMA_VERSION}`);
      } else {
        this.db.exec("PRAGMA journal_mode = WAL");
      }
      this.db.exec("PRAGMA synchronous = NORMAL");
      // From the small covering index, not the answers.
      const t = this.db.prepare("SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b, coalesce(sum(indexed), 0) AS g FROM entries INDEXED BY entries_used").get() as { n: number; b: number; g: number };
      this.entries = t.n;
      this.bytes = t.b;
      this.indexed = t.g;
      const meta = new Map((this.db.prepare("SELECT k, v FROM meta").all() as { k: string; v: number }[]).map((r) => [r.k, r.v]));
      if (meta.get("gen") === undefined || meta.get("df_gen") === undefined) throw new CorruptStore("the meta table is incomplete");
      this.gen = meta.get("gen")!;
      if (meta.get("df_gen") === this.gen) {
        for (const r of this.db.prepare("SELECT gram, n FROM df").iterate() as Iterable<{ gram: number; n: number }>) this.df.set(r.gram, r.n);
      } else {
        this.recountDf();
        this.dfRebuilt = true;
      }
      this.st = {
        byKey: this.db.prepare("SELECT id, bytes FROM entries WHERE key = ?"),
        hitByKey: this.db.prepare("SELECT id, created_at, response FROM entries WHERE key = ? AND created_at >= ?"),
        insert: this.db.prepare("INSERT INTO entries (key, route, created_at, used_at, bytes, indexed, numbers, grams, response) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
        insertBands: this.db.prepare("INSERT INTO lsh (rowid, bands) VALUES (?, ?)"),
        deleteBands: this.db.prepare("DELETE FROM lsh WHERE rowid = ?"),
        bucket: this.db.prepare("SELECT rowid AS id FROM lsh WHERE lsh MATCH ? LIMIT ?"),
        replace: this.db.prepare("UPDATE entries SET created_at = ?, used_at = ?, bytes = ?, response = ?, route = ? WHERE id = ?"),
        dfSet: this.db.prepare("INSERT INTO df (gram, n) VALUES (?, ?) ON CONFLICT (gram) DO UPDATE SET n = excluded.n"),
        bumpGen: this.db.prepare("UPDATE meta SET v = v + 1 WHERE k = 'gen'"),
        setDfGen: this.db.prepare("UPDATE meta SET v = ? WHERE k = 'df_gen'"),
        dfDrop: this.db.prepare("DELETE FROM df WHERE gram = ?"),
        candidate: this.db.prepare("SELECT created_at, numbers, grams FROM entries WHERE id = ?"),
        response: this.db.prepare("SELECT response, created_at FROM entries WHERE id = ?"),
        touch: this.db.prepare("UPDATE entries SET used_at = ?, hits = hits + 1 WHERE id = ?"),
        forDelete: this.db.prepare("SELECT bytes, indexed, grams FROM entries WHERE id = ?"),
        delete: this.db.prepare("DELETE FROM entries WHERE id = ?"),
        lru: this.db.prepare("SELECT id, bytes FROM entries ORDER BY used_at, id LIMIT ?"),
        expired: this.db.prepare("SELECT id FROM entries WHERE created_at < ? ORDER BY created_at LIMIT ?"),
        loadVectors: this.db.prepare(
          "SELECT v.id AS id, v.model AS model, v.scope AS scope, v.vec AS vec, e.numbers AS numbers, e.created_at AS created_at FROM vectors v JOIN entries e ON e.id = v.id WHERE v.id > ? ORDER BY v.id LIMIT ?",
        ),
        entryByKey: this.db.prepare("SELECT id, created_at, numbers FROM entries WHERE key = ?"),
        // DO NOTHING: a vector may be on file and not yet read into memory (loadVectors goes in steps).
        insertVector: this.db.prepare("INSERT INTO vectors (id, model, scope, vec) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"),
        chargeVector: this.db.prepare("UPDATE entries SET bytes = bytes + ? WHERE id = ?"),
        deleteVector: this.db.prepare("DELETE FROM vectors WHERE id = ?"),
        pages: this.db.prepare("SELECT (SELECT page_count FROM pragma_page_count) * (SELECT page_size FROM pragma_page_size) AS b"),
      };
    } catch (e) {
      try {
        this.db.close();
      } catch {
        /* already unusable */
      }
      throw e;
    }
  }

  private tx<T>(fn: () => T): T {
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const r = fn();
      this.db.exec("COMMIT");
      return r;
    } catch (e) {
      try {
        this.db.exec("ROLLBACK");
      } catch {
        /* the transaction is gone already */
      }
      throw e;
    }
  }

  /** Stores answers in one transaction; an existing key gets the newer answer. Returns how many were new. */
  put(items: readonly NewEntry[]): number {
    const dfDelta = new Map<number, number>();
    let added = 0;
    const before = { entries: this.entries, bytes: this.bytes, indexed: this.indexed };
    try {
      this.tx(() => {
        for (const it of items) {
          const key = Buffer.from(it.key, "hex");
          const old = this.st.byKey!.get(key) as { id: number; bytes: number } | undefined;
          if (old) {
            // Same key: same prompt, same grams, bands and vector; only the answer changes.
            const bytes = it.bytes + this.vectorCharge(old.id);
            this.st.replace!.run(it.at, it.at, bytes, it.response, it.route, old.id);
            this.vectors.touchCreated(old.id, it.at);
            this.bytes += bytes - old.bytes;
            continue;
          }
          const indexed = it.grams && it.bands && it.grams.ids.length > 0 ? { grams: it.grams, bands: it.bands } : undefined;
          const r = this.st.insert!.run(key, it.route, it.at, it.at, it.bytes, indexed ? 1 : 0, it.numbers, indexed ? packVector(indexed.grams) : null, it.response);
          if (indexed) {
            this.st.insertBands!.run(r.lastInsertRowid, bandTokens(indexed.bands));
            for (const g of indexed.grams.ids) dfDelta.set(g, (dfDelta.get(g) ?? 0) + 1);
            this.indexed++;
          }
          this.entries++;
          this.bytes += it.bytes;
          added++;
        }
        if (added > 0) this.st.bumpGen!.run();
      });
    } catch (e) {
      Object.assign(this, before);
      throw e;
    }
    if (added > 0) this.gen++;
    this.applyDf(dfDelta);
    return added;
  }

  /** The bytes an entry's vector is charged (0 without one). */
  private vectorCharge(id: number): number {
    const dim = this.vectors.dimOfEntry(id);
    return dim === undefined ? 0 : vectorBytes(dim);
  }

  /**
   * Reads up to `limit` more stored vectors into memory, in id order; returns
   * how many rows it read. A vector that is unreadable, or whose length
   * differs from its model's others, is left out (and counted in the result's
   * `skipped`). Vectors attached or deleted meanwhile are already in step.
   */
  loadVectors(limit: number): { read: number; skipped: number } {
    if (!this.vectorsPending) return { read: 0, skipped: 0 };
    if (this.vectorsAfter === 0) {
      // From the small index on model: each model's index is made as large as it will be, once.
      for (const r of this.db.prepare("SELECT model, count(*) AS n FROM vectors INDEXED BY vectors_model GROUP BY model").all() as { model: string; n: number }[]) this.vectors.reserve(r.model, r.n);
    }
    const rows = this.st.loadVectors!.all(this.vectorsAfter, limit) as { id: number; model: string; scope: number; vec: Uint8Array; numbers: string; created_at: number }[];
    let skipped = 0;
    for (const r of rows) {
      const v = unpackFloat32(r.vec);
      if (!v || !this.vectors.set(r.model, r.id, v, r.scope, r.numbers, r.created_at)) skipped++;
      this.vectorsAfter = r.id;
    }
    if (rows.length < limit) this.vectorsPending = false;
    return { read: rows.length, skipped };
  }

  /**
   * Attaches prompt embeddings to their entries in one transaction, charging
   * each entry its vector's bytes. An entry evicted meanwhile is "gone".
   */
  attach(items: readonly NewVector[]): AttachOutcome[] {
    const out: AttachOutcome[] = [];
    const added: { id: number; it: NewVector; numbers: string; createdAt: number }[] = [];
    const addedIds = new Set<number>();
    const dims = new Map<string, number>();
    const before = { bytes: this.bytes };
    try {
      this.tx(() => {
        for (const it of items) {
          const row = this.st.entryByKey!.get(Buffer.from(it.key, "hex")) as { id: number; created_at: number; numbers: string } | undefined;
          if (!row) {
            out.push("gone");
            continue;
          }
          if (this.vectors.has(row.id) || addedIds.has(row.id)) {
            out.push("exists");
            continue;
          }
          const dim = this.vectors.dimOf(it.model) ?? dims.get(it.model);
          if (dim !== undefined && dim !== it.vector.length) {
            out.push("dimension");
            continue;
          }
          if (this.st.insertVector!.run(row.id, it.model, it.scope >>> 0, packFloat32(it.vector)).changes === 0) {
            out.push("exists");
            continue;
          }
          this.st.chargeVector!.run(vectorBytes(it.vector.length), row.id);
          this.bytes += vectorBytes(it.vector.length);
          added.push({ id: row.id, it, numbers: row.numbers, createdAt: row.created_at });
          addedIds.add(row.id);
          dims.set(it.model, it.vector.length);
          out.push("attached");
        }
        // No bump of gen: it says whether the gram frequencies are current, which a vector does not change.
      });
    } catch (e) {
      Object.assign(this, before);
      throw e;
    }
    for (const a of added) this.vectors.set(a.it.model, a.id, a.it.vector, a.it.scope, a.numbers, a.createdAt);
    return out;
  }

  private applyDf(delta: ReadonlyMap<number, number>): void {
    for (const [g, d] of delta) {
      const n = (this.df.get(g) ?? 0) + d;
      if (n > 0) this.df.set(g, n);
      else this.df.delete(g);
      this.dirty.add(g);
    }
  }

  /** Grams whose frequency is not written yet. */
  get dfPending(): number {
    return this.dirty.size;
  }

  /** Writes the changed document frequencies, and marks the file's df as current. */
  syncDf(): void {
    if (this.dirty.size === 0) return;
    this.tx(() => {
      for (const g of this.dirty) {
        const n = this.df.get(g) ?? 0;
        if (n > 0) this.st.dfSet!.run(g, n);
        else this.st.dfDrop!.run(g);
      }
      this.st.setDfGen!.run(this.gen);
    });
    this.dirty.clear();
  }

  /** Counts the document frequencies again from the stored gram vectors and writes them. */
  private recountDf(): void {
    this.df.clear();
    for (const r of this.db.prepare("SELECT grams FROM entries WHERE indexed = 1").iterate() as Iterable<{ grams: Uint8Array | null }>) {
      if (!r.grams) throw new CorruptStore("an indexed entry has no gram vector");
      const v = unpackVector(r.grams);
      if (!v) throw new CorruptStore("a stored gram vector is unreadable");
      for (const g of v.ids) this.df.set(g, (this.df.get(g) ?? 0) + 1);
    }
    this.tx(() => {
      this.db.exec("DELETE FROM df");
      const ins = this.db.prepare("INSERT INTO df (gram, n) VALUES (?, ?)");
      for (const [g, n] of this.df) ins.run(g, n);
      this.db.prepare("UPDATE meta SET v = ? WHERE k = 'df_gen'").run(this.gen);
    });
  }

  /** Deletes entries (with their band rows and document frequencies). Returns the bytes freed. */
  delete(ids: readonly number[]): { entries: number; bytes: number } {
    const dfDelta = new Map<number, number>();
    let entries = 0;
    let bytes = 0;
    let indexed = 0;
    this.tx(() => {
      for (const id of ids) {
        const row = this.st.forDelete!.get(id) as { bytes: number; indexed: number; grams: Uint8Array | null } | undefined;
        if (!row) continue;
        if (row.indexed) {
          const grams = row.grams ? unpackVector(row.grams) : undefined;
          if (!grams) throw new CorruptStore("an indexed entry has no readable gram vector");
          this.st.deleteBands!.run(id);
          for (const g of grams.ids) dfDelta.set(g, (dfDelta.get(g) ?? 0) - 1);
          indexed++;
        }
        this.st.deleteVector!.run(id);
        this.st.delete!.run(id);
        entries++;
        bytes += row.bytes;
      }
      if (entries > 0) this.st.bumpGen!.run();
    });
    if (entries > 0) this.gen++;
    for (const id of ids) this.vectors.remove(id);
    this.applyDf(dfDelta);
    this.entries -= entries;
    this.bytes -= bytes;
    this.indexed -= indexed;
    return { entries, bytes };
  }

  exact(key: string, notBefore: number): { id: number; createdAt: number; response: string } | undefined {
    const r = this.st.hitByKey!.get(Buffer.from(key, "hex"), notBefore) as { id: number; created_at: number; response: string } | undefined;
    return r && { id: r.id, createdAt: r.created_at, response: r.response };
  }

  /**
   * Entries sharing at least one band with `bands`, most shared bands first,
   * at most `limit`, not expired. A band whose bucket holds more than
   * BUCKET_CAP entries is one every prompt of a template shares (its grams
   * are all boilerplate): it tells nothing apart and is skipped, which keeps
   * a lookup's work bounded however the store is filled.
   */
  candidates(bands: readonly number[], notBefore: number, limit: number): Candidate[] {
    const counts = new Map<number, number>();
    for (const b of bands) {
      const rows = this.st.bucket!.all(`"${bandToken(b)}"`, BUCKET_CAP + 1) as { id: number }[];
      if (rows.length > BUCKET_CAP) continue;
      for (const r of rows) counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
    }
    const top = [...counts].sort((x, y) => y[1] - x[1] || y[0] - x[0]).slice(0, limit);
    const out: Candidate[] = [];
    for (const [id] of top) {
      const r = this.st.candidate!.get(id) as { created_at: number; numbers: string; grams: Uint8Array | null } | undefined;
      if (!r || r.created_at < notBefore) continue;
      out.push({ id, createdAt: r.created_at, numbers: r.numbers, grams: r.grams ? unpackVector(r.grams) : undefined });
    }
    return out;
  }

  response(id: number): { response: string; createdAt: number } | undefined {
    const r = this.st.response!.get(id) as { response: string; created_at: number } | undefined;
    return r && { response: r.response, createdAt: r.created_at };
  }

  touch(id: number, at: number): void {
    this.st.touch!.run(at, id);
  }

  /** Least recently used first. */
  lru(limit: number): { id: number; bytes: number }[] {
    return this.st.lru!.all(limit) as { id: number; bytes: number }[];
  }

  expired(before: number, limit: number): number[] {
    return (this.st.expired!.all(before, limit) as { id: number }[]).map((r) => r.id);
  }

  /** Gives free pages back to the file system (a few at a time). */
  vacuum(pages: number): void {
    this.db.exec(`PRAGMA incremental_vacuum(${Math.max(0, Math.floor(pages))})`);
  }

  /** Size on disk: the database plus its write-ahead log. */
  fileBytes(): number {
    let wal = 0;
    try {
      wal = statSync(`${this.file}-wal`).size;
    } catch {
      /* no log */
    }
    return (this.st.pages!.get() as { b: number }).b + wal;
  }

  close(): void {
    try {
      this.syncDf();
      this.db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    } catch {
      /* closing anyway */
    }
    this.db.close();
  }
}

/** A band key as an FTS5 token: base 36, [0-9a-z] only (the ascii tokenizer keeps it whole). */
export function bandToken(key: number): string {
  return key.toString(36);
}

function bandTokens(keys: readonly number[]): string {
  return keys.map(bandToken).join(" ");
}
