/**
 * The cache's file and what can go wrong with it: opening (creating) it,
 * setting a damaged one aside and starting empty, running operations so that
 * a failure is logged (at most once a minute per operation) instead of
 * thrown, and a corruption found at any time rebuilds the file. The I/O
 * shell around CacheDb; it never throws.
 */
import { mkdirSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import type { Logger } from "../log/logger.ts";
import type { Clock } from "../platform/clock.ts";
import { CacheDb, CorruptStore } from "./db.ts";
import { isCorruption, type SqliteModule } from "./sqlite.ts";

export const CACHE_FILE = "cache.sqlite";

/** A failure of the same kind is logged at most this often. */
const LOG_EVERY_MS = 60_000;

export interface StoreFileOptions {
  readonly dir: string;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly sqlite: SqliteModule | Error;
  /** Called each time a store is open (at first, and after a rebuild). */
  readonly onOpen?: (db: CacheDb) => void;
}

export class StoreFile {
  readonly path: string;
  /** The open store; undefined while unavailable. */
  db?: CacheDb;
  /** Why the store is unavailable. */
  problem: string | null = null;
  /** Times a damaged store was set aside. */
  rebuilt = 0;
  private readonly o: StoreFileOptions;
  private readonly lastLogged = new Map<string, number>();

  constructor(o: StoreFileOptions) {
    this.o = o;
    this.path = path.join(o.dir, CACHE_FILE);
  }

  open(): void {
    const sqlite = this.o.sqlite;
    if (sqlite instanceof Error) return this.unavailable(sqlite.message);
    let db: CacheDb;
    try {
      mkdirSync(path.dirname(this.path), { recursive: true, mode: 0o700 });
      db = new CacheDb(sqlite, this.path);
    } catch (e) {
      if (!(e instanceof CorruptStore || isCorruption(e))) return this.unavailable(`cannot open ${this.path}: ${(e as Error).message}`);
      this.setAside(e);
      try {
        db = new CacheDb(sqlite, this.path);
      } catch (again) {
        return this.unavailable(`cannot create ${this.path}: ${(again as Error).message}`);
      }
    }
    this.db = db;
    this.problem = null;
    const log = this.o.logger;
    if (db.dfRebuilt) log.info({ event: "cache.df.recounted", entries: db.entries }, "emergency cache: gram frequencies recounted (the daemon stopped before writing them)");
    log.info({ event: "cache.opened", file: this.path, entries: db.entries, bytes: db.bytes }, `emergency cache: ${db.entries} answers in ${this.path}`);
    this.o.onOpen?.(db);
  }

  private unavailable(why: string): void {
    this.db = undefined;
    this.problem = why;
    this.o.logger.error({ event: "cache.unavailable", code: "LLMSUP_E_CACHE_UNAVAILABLE", err: why }, `the emergency cache is off: ${why}`);
  }

  /** A damaged store: set aside (one copy kept as cache.sqlite.corrupt) so a new, empty one can be made. */
  private setAside(e: unknown): void {
    this.rebuilt++;
    const message = (e as Error).message;
    this.o.logger.warn({ event: "cache.store.corrupt", code: "LLMSUP_E_CACHE_CORRUPT", file: this.path, err: message }, `the emergency cache ${this.path} is unreadable (${message}): set aside as ${CACHE_FILE}.corrupt and rebuilt empty`);
    try {
      try {
        renameSync(this.path, `${this.path}.corrupt`);
      } catch {
        rmSync(this.path, { force: true });
      }
      for (const suffix of ["-wal", "-shm", "-journal"]) rmSync(`${this.path}${suffix}`, { force: true });
    } catch {
      /* opening again fails and says why */
    }
  }

  /** Runs `fn` against the store: a failure is logged and gives `fallback`; a corrupt store is rebuilt empty. */
  guard<T>(what: string, fallback: T, fn: (db: CacheDb) => T): T {
    const db = this.db;
    if (!db) return fallback;
    try {
      return fn(db);
    } catch (e) {
      if (isCorruption(e)) {
        try {
          db.close();
        } catch {
          /* it is being replaced */
        }
        this.db = undefined;
        this.setAside(e);
        this.open();
      } else this.failed(what, e);
      return fallback;
    }
  }

  /** Logs a failure, at most once a minute per operation. */
  failed(what: string, e: unknown): void {
    const now = this.o.clock.now();
    if ((this.lastLogged.get(what) ?? -Infinity) + LOG_EVERY_MS > now) return;
    this.lastLogged.set(what, now);
    const message = e instanceof Error ? e.message : String(e);
    this.o.logger.warn({ event: "cache.store.failed", code: "LLMSUP_E_CACHE_IO", op: what, err: message }, `emergency cache: ${what} failed: ${message}`);
  }

  close(): void {
    const db = this.db;
    this.db = undefined;
    try {
      db?.close();
    } catch (e) {
      this.failed("close", e);
    }
  }
}
