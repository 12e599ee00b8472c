import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { ERRORS } from "../../src/errors/registry.ts";
import { REPO_ROOT } from "../helpers/cli.ts";

const doc = readFileSync(path.join(REPO_ROOT, "docs/errors.md"), "utf8");

function documentedRows(): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of doc.split("\n")) {
    const m = /^\| `(LLMSUP_E_[A-Z_]+)` \|(.*)\|$/.exec(line);
    if (m) rows.set(m[1]!, m[2]!.split("|").map((c) => c.trim()));
  }
  return rows;
}

test("every registered error code is documented with its exit status, HTTP status and retryability", () => {
  const rows = documentedRows();
  for (const [code, spec] of Object.entries(ERRORS)) {
    const row = rows.get(code);
    assert.ok(row, `${code} is documented in docs/errors.md`);
    assert.equal(row[0], String(spec.exit), `${code} exit`);
    assert.equal(row[1], "http" in spec ? String(spec.http) : "", `${code} HTTP status`);
    assert.equal(row[2], spec.retryable ? "yes" : "no", `${code} retryable`);
  }
});

test("docs/errors.md documents no code that does not exist", () => {
  for (const code of documentedRows().keys()) assert.ok(code in ERRORS, `${code} documented but not registered`);
});

test("codes follow the LLMSUP_E_ naming", () => {
  for (const code of Object.keys(ERRORS)) assert.match(code, /^LLMSUP_E_[A-Z][A-Z0-9_]+$/);
});
