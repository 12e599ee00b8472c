/**
 * Node's built-in SQLite (`node:sqlite`), loaded on demand. Node 24 has it
 * without a flag or a warning; Node 22.13+ has it but prints an
 * ExperimentalWarning on load, which is swallowed here (only that one: any
 * other warning passes); older Node 22 needs --experimental-sqlite, and then
 * the cache is unavailable instead of the daemon failing.
 */
import { createRequire } from "node:module";
import type * as Sqlite from "node:sqlite";

export type SqliteModule = typeof Sqlite;
export type Database = Sqlite.DatabaseSync;
export type Statement = Sqlite.StatementSync;

let loaded: SqliteModule | Error | undefined;

/** Whether a warning is node:sqlite's experimental-feature notice. */
export function isSqliteExperimentalWarning(warning: unknown, typeOrOptions: unknown): boolean {
  const text = warning instanceof Error ? warning.message : String(warning);
  const type = warning instanceof Error ? warning.name : typeof typeOrOptions === "string" ? typeOrOptions : (typeOrOptions as { type?: string } | undefined)?.type;
  return type === "ExperimentalWarning" && /sqlite/i.test(text);
}

/** The module, or the error that says why it cannot be had. */
export function loadSqlite(): SqliteModule | Error {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const original = process.emitWarning;
  process.emitWarning = function (this: NodeJS.Process, warning: string | Error, ...rest: unknown[]) {
    if (isSqliteExperimentalWarning(warning, rest[0])) return;
    return (original as (...a: unknown[]) => void).call(process, warning, ...rest);
  } as typeof process.emitWarning;
  try {
    loaded = require("node:sqlite") as SqliteModule;
  } catch (e) {
    loaded = new Error(`node:sqlite is not available in Node ${process.versions.node} (it needs Node 22.13 or later, or --experimental-sqlite): ${(e as Error).message}`);
  } finally {
    process.emitWarning = original;
  }
  return loaded;
}

/** SQLite result codes that mean the file is damaged or is not a database: rebuild it. */
const CORRUPT_CODES = new Set([11 /* SQLITE_CORRUPT */, 26 /* SQLITE_NOTADB */]);

export function isCorruption(e: unknown): boolean {
  const err = e as { errcode?: number; message?: string } | undefined;
  if (typeof err?.errcode === "number" && CORRUPT_CODES.has(err.errcode & 0xff)) return true;
  return /malformed|not a database|database corrupt/i.test(err?.message ?? "");
}
