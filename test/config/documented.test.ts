import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { z } from "zod";
import { knownKeysAt } from "../../src/config/problems.ts";
import { LIST_SCHEMAS, SECTION_SCHEMAS } from "../../src/config/schema.ts";
import { REPO_ROOT } from "../helpers/cli.ts";

const annotated = readFileSync(path.join(REPO_ROOT, "supervisor.toml"), "utf8");

/** Every key the schema accepts, as [section, key] pairs, nested tables included. */
function allKeys(): string[] {
  const out: string[] = [];
  const walk = (schema: z.ZodType, at: (string | number)[], label: string) => {
    for (const key of knownKeysAt(schema, at)) {
      out.push(`${label}.${key}`);
      const nested = knownKeysAt(schema, [...at, key]);
      if (nested.length) walk(schema, [...at, key], `${label}.${key}`);
      const listed = knownKeysAt(schema, [...at, key, 0]);
      if (listed.length) walk(schema, [...at, key, 0], `${label}.${key}[]`);
    }
  };
  for (const [name, schema] of Object.entries(SECTION_SCHEMAS)) walk(schema, [], name);
  for (const [name, schema] of Object.entries(LIST_SCHEMAS)) walk(schema, [], name);
  return out;
}

test("the annotated supervisor.toml shows every key the schema accepts, set or commented", () => {
  const missing = allKeys().filter((full) => {
    const key = full.split(".").pop()!.replace("[]", "");
    return !new RegExp(`(^|[\\s#{,])${key} = |\\[(?:[\\w.]+\\.)?${key}\\]`, "m").test(annotated);
  });
  assert.deepEqual(missing, [], `undocumented keys: ${missing.join(", ")}`);
  assert.ok(allKeys().length > 80, "the walk found the keys");
});
