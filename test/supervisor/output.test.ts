import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, readFileSync, readdirSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { BackendOutput, LineTail, LogFile } from "../../src/supervisor/output.ts";
import { ManualClock } from "../helpers/clock.ts";
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

test("a backend writing straight into its log file: llmsup follows it into the tail and rotates it by copy and truncate, keeping the configured number of old files", async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, "logs", "b.log");
  const out = new BackendOutput(new LogFile(file, 1000, 2), new ManualClock());
  assert.equal(await out.open(() => assert.fail("the file is writable")), true);
  t.after(() => out.close());
  const fd = (await out.forChild())!;
  const seen: string[] = [];
  out.follow((l) => seen.push(l));
  for (let i = 0; i < 50; i++) {
    // What the child does: plain writes to its inherited O_APPEND descriptor.
    writeSync(fd.fd, `line ${String(i).padStart(3, "0")} ${"x".repeat(90)}\n`);
    await out.catchUp();
  }
  await fd.close();
  const files = readdirSync(path.dirname(file)).sort();
  assert.deepEqual(files, ["b.log", "b.log.1", "b.log.2"]);
  for (const f of files) assert.ok(readFileSync(path.join(path.dirname(file), f)).length <= 1100, `${f} stays near the cap`);
  assert.match(readFileSync(`${file}.1`, "utf8") + readFileSync(file, "utf8"), /line 049/);
  assert.doesNotMatch(readFileSync(`${file}.2`, "utf8"), /line 000/, "the oldest output was dropped");
  assert.equal(out.tail.last(1)[0], `line 049 ${"x".repeat(90)}`, "every line reached the tail");
  assert.equal(seen.length, 50, "and every follower");
});

test("after a daemon restart the tail is primed from the file, and followers get only what comes next; llmsup's own lines land in order", async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, "b.log");
  writeFileSync(file, "loading weights\nlistening on :8000\n");
  const out = new BackendOutput(new LogFile(file, 1_000_000, 1), new ManualClock());
  await out.open(() => assert.fail("the file is writable"));
  t.after(() => out.close());
  assert.deepEqual(out.tail.last(), ["loading weights", "listening on :8000"]);
  const seen: string[] = [];
  out.follow((l) => seen.push(l));
  appendFileSync(file, "GET /health 200\n");
  await out.catchUp();
  out.note("──── llmsup: adopted ────");
  await out.catchUp();
  appendFileSync(file, "GET /health 200\n");
  await out.close();
  assert.deepEqual(out.tail.last(), ["loading weights", "listening on :8000", "GET /health 200", "GET /health 200"], "markers are left out of the evidence");
  assert.equal(seen.length, 3, "llmsup's line is not read back a second time");
  assert.match(seen[1]!, /^\d{4}-\d\d-\d\dT.*Z {2}──── llmsup: adopted ────\n$/);
  assert.match(readFileSync(file, "utf8"), /GET \/health 200\n──── llmsup: adopted ────\nGET \/health 200\n$/);
});

test("a log file that cannot be written leaves the output in memory: the process gets pipes", async (t) => {
  const dir = tempDir(t);
  writeFileSync(path.join(dir, "not-a-dir"), "");
  const out = new BackendOutput(new LogFile(path.join(dir, "not-a-dir", "b.log"), 1000, 1), new ManualClock());
  let why = "";
  assert.equal(await out.open((e) => (why = e.message)), false);
  assert.match(why, /ENOTDIR|EEXIST/);
  assert.equal(await out.forChild(), undefined);
  out.note("llmsup: cannot start");
  assert.deepEqual(out.tail.last(), ["llmsup: cannot start"]);
});
