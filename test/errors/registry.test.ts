/**
 * The registry and docs/errors.md, checked both ways: every code is documented
 * with its facets and its words, and every documented code exists. The page
 * may set names in `code` type; the words are the registry's.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { LlmsupError } from "../../src/errors/error.ts";
import { ERRORS, WIRE_ERRORS, errorSpec, wireSpec, type ErrorCode, type WireCode } from "../../src/errors/registry.ts";
import { REPO_ROOT } from "../helpers/cli.ts";

const doc = readFileSync(path.join(REPO_ROOT, "docs/errors.md"), "utf8");

type Row = Readonly<Record<string, string>>;

/** The table under `## heading`: each row by the code in its first cell, its cells by column name. */
function table(heading: string): Map<string, Row> {
  const start = doc.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`docs/errors.md has no section "## ${heading}"`);
  const end = doc.indexOf("\n## ", start + 1);
  const lines = doc.slice(start, end < 0 ? undefined : end).split("\n").filter((l) => l.startsWith("|"));
  const cells = (line: string) => line.slice(1, -1).split("|").map((c) => c.trim());
  const columns = cells(lines[0]!);
  const rows = new Map<string, Row>();
  for (const line of lines.slice(2)) {
    const row = Object.fromEntries(cells(line).map((c, i) => [columns[i]!, c]));
    rows.set(row.code!.replaceAll("`", ""), row);
  }
  return rows;
}

const own = table("llmsup's own codes");
const wire = table("Errors on the routing socket");

const words = (s: string) => s.replaceAll("`", "");
const yesNo = (b: boolean) => (b ? "yes" : "no");
const httpOf = (code: ErrorCode) => {
  const w = errorSpec(code).wire;
  return w === undefined ? undefined : wireSpec(w).http;
};

test("every llmsup code is documented with its exit status, HTTP status, retryability and message", () => {
  for (const code of Object.keys(ERRORS) as ErrorCode[]) {
    const spec = errorSpec(code);
    const row = own.get(code);
    assert.ok(row, `${code} is documented in docs/errors.md`);
    assert.equal(row.exit, String(spec.exit), `${code} exit`);
    assert.equal(row.HTTP, String(httpOf(code) ?? ""), `${code} HTTP status`);
    assert.equal(row.retryable, yesNo(spec.retryable), `${code} retryable`);
    assert.equal(words(row["meaning and what to do"]!), words(spec.message), `${code}: the page and the registry say the same`);
  }
});

test("every routing-socket code is documented with its HTTP status, type, retryability and meaning", () => {
  for (const code of Object.keys(WIRE_ERRORS) as WireCode[]) {
    const spec = wireSpec(code);
    const row = wire.get(code);
    assert.ok(row, `${code} is documented in docs/errors.md`);
    assert.equal(row.HTTP, String(spec.http ?? ""), `${code} HTTP status`);
    assert.equal(words(row.type!), spec.type, `${code} type`);
    assert.equal(row.retryable, yesNo(spec.retryable), `${code} retryable`);
    assert.equal(words(row["meaning and what to do"]!), words(spec.meaning), `${code}: the page and the registry say the same`);
  }
});

test("docs/errors.md documents no code that does not exist", () => {
  for (const code of own.keys()) assert.ok(code in ERRORS, `${code} documented but not registered`);
  for (const code of wire.keys()) assert.ok(code in WIRE_ERRORS, `${code} documented but not registered`);
});

test("codes follow their naming: LLMSUP_E_ for llmsup's own, lower-case words for what clients see", () => {
  for (const code of Object.keys(ERRORS)) assert.match(code, /^LLMSUP_E_[A-Z][A-Z0-9_]+$/);
  for (const code of Object.keys(WIRE_ERRORS)) assert.match(code, /^[a-z]+(_[a-z]+)*$/);
});

test("an llmsup error that reaches a client is answered with its routing-socket code", () => {
  assert.equal(ERRORS.LLMSUP_E_INTERNAL.wire, "internal_error");
  assert.equal(new LlmsupError("LLMSUP_E_INTERNAL").httpStatus, 500);
  assert.equal(new LlmsupError("LLMSUP_E_USAGE").httpStatus, undefined);
  for (const code of Object.keys(ERRORS) as ErrorCode[]) {
    const w = errorSpec(code).wire;
    if (w !== undefined) assert.ok(wireSpec(w).http, `${code} is answered as ${w}, which has an HTTP status`);
  }
});
