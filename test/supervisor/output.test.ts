import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { LineTail, RotatingLog } from "../../src/supervisor/output.ts";
import { tempDir } from "../helpers/tmp.ts";

test("the tail keeps the last lines, joining chunks split mid-line", () => {
  const tail = new LineTail(3);
  tail.push("one\ntw");
  tail.push("o\nthree\nfour\nfi");
  assert.deepEqual(tail.last(), ["three", "four", "fi"]);
  assert.deepEqual(tail.last(2), ["four", "fi"]);
  tail.push("ve\n");
  assert.deepEqual(tail.last(), ["three", "four", "five"]);
});

test("the log file rotates at its size cap and keeps the configured number of old files", async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, "logs", "b.log");
  const log = new RotatingLog(file, 1000, 2);
  await log.open();
  for (let i = 0; i < 50; i++) {
    log.write(Buffer.from(`line ${String(i).padStart(3, "0")} ${"x".repeat(90)}\n`));
    await new Promise((r) => setImmediate(r));
  }
  await log.close();
  const files = readdirSync(path.dirname(file)).sort();
  assert.deepEqual(files, ["b.log", "b.log.1", "b.log.2"]);
  for (const f of files) assert.ok(readFileSync(path.join(path.dirname(file), f)).length <= 1100, `${f} stays near the cap`);
  assert.match(readFileSync(file, "utf8"), /line 049/);
  assert.doesNotMatch(readFileSync(`${file}.2`, "utf8"), /line 000/, "the oldest output was dropped");
});
