/** Loading node:sqlite: its experimental-feature notice (Node 22) is swallowed, nothing else is. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { isCorruption, isSqliteExperimentalWarning } from "../../src/cache/sqlite.ts";
import { REPO_ROOT } from "../helpers/cli.ts";

test("only SQLite's ExperimentalWarning is recognised, in each form process.emitWarning takes", () => {
  assert.equal(isSqliteExperimentalWarning("SQLite is an experimental feature and might change at any time", "ExperimentalWarning"), true);
  assert.equal(isSqliteExperimentalWarning("SQLite is an experimental feature", { type: "ExperimentalWarning" }), true);
  assert.equal(isSqliteExperimentalWarning(Object.assign(new Error("SQLite is an experimental feature"), { name: "ExperimentalWarning" }), undefined), true);
  assert.equal(isSqliteExperimentalWarning("The Fetch API is an experimental feature", "ExperimentalWarning"), false);
  assert.equal(isSqliteExperimentalWarning("sqlite thing deprecated", "DeprecationWarning"), false);
  assert.equal(isSqliteExperimentalWarning("SQLite is an experimental feature", undefined), false);
});

test("loading the cache prints no warning, and other warnings still reach their listeners", () => {
  const script = `
    import { loadSqlite } from "./src/cache/sqlite.ts";
    const before = process.emitWarning;
    process.on("warning", (w) => process.stdout.write("seen:" + w.name + "\\n"));
    const m = loadSqlite();
    if (m instanceof Error) throw m;
    if (process.emitWarning !== before) throw new Error("emitWarning not restored");
    process.emitWarning("other", "DeprecationWarning");
  `;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { cwd: REPO_ROOT, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /SQLite/);
  assert.match(r.stdout, /seen:DeprecationWarning/);
});

test("corruption is told apart from other SQLite errors", () => {
  assert.equal(isCorruption({ errcode: 11, message: "database disk image is malformed" }), true);
  assert.equal(isCorruption({ errcode: 26, message: "file is not a database" }), true);
  assert.equal(isCorruption({ errcode: 267, message: "x" }), true, "SQLITE_CORRUPT_VTAB: extended codes count by their primary code");
  assert.equal(isCorruption({ errcode: 13, message: "database or disk is full" }), false);
  assert.equal(isCorruption({ errcode: 5, message: "database is locked" }), false);
  assert.equal(isCorruption(undefined), false);
});
