/** One daemon per state_dir: what a starting daemon does with the lock file it finds. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { decideLock, formatLock, parseLock, type LockHolder } from "../../src/daemon/lock-decision.ts";
import { parseStartTime } from "../../src/platform/procfs.ts";

const SELF = 4242;
const holder: LockHolder = { pid: 1234, start_time: 987654, config: "/etc/llmsup/supervisor.toml", since: "2025-01-02T03:04:05.000Z" };
const file = formatLock(holder);

test("no lock file: the lock is taken", () => {
  assert.deepEqual(decideLock(undefined, SELF, undefined), { action: "take" });
});

test("a lock whose daemon still runs (same pid, same start time) is refused, naming the holder", () => {
  assert.deepEqual(decideLock(file, SELF, { alive: true, startTime: 987654 }), { action: "refuse", holder });
});

test("a lock whose pid is alive but whose start time cannot be read is refused (no guessing)", () => {
  assert.equal(decideLock(file, SELF, { alive: true }).action, "refuse");
});

test("a lock whose pid is gone (the daemon was killed with SIGKILL) is taken over", () => {
  const d = decideLock(file, SELF, { alive: false });
  assert.equal(d.action, "take_over");
  assert.ok(d.action === "take_over" && d.holder?.pid === 1234 && /pid 1234 is gone/.test(d.reason));
  assert.equal(decideLock(file, SELF, undefined).action, "take_over");
});

test("a lock whose pid now belongs to another process (a different start time) is taken over", () => {
  const d = decideLock(file, SELF, { alive: true, startTime: 1_000_000 });
  assert.equal(d.action, "take_over");
  assert.match(d.action === "take_over" ? d.reason : "", /pid 1234 is now another process/);
});

test("a lock naming our own pid was left by an earlier daemon (a container's pid 1): taken over", () => {
  const d = decideLock(formatLock({ ...holder, pid: SELF }), SELF, { alive: true, startTime: 987654 });
  assert.equal(d.action, "take_over");
});

test("an empty or damaged lock file is taken over", () => {
  for (const text of ["", "garbage", "{}", '{"pid":"12","start_time":1}', '{"pid":0,"start_time":1}', "null"]) {
    assert.equal(decideLock(text, SELF, { alive: true, startTime: 1 }).action, "take_over", JSON.stringify(text));
  }
});

test("the lock file is one JSON line that reads back as what was written", () => {
  assert.ok(file.endsWith("}\n") && !file.slice(0, -1).includes("\n"));
  assert.deepEqual(parseLock(file), holder);
});

test("the start time is field 22 of /proc/<pid>/stat, even when the command name has spaces and parentheses", () => {
  const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
  fields[0] = "S";
  assert.equal(parseStartTime(`77 (node (x) y) ${fields.join(" ")}`), 22);
  assert.equal(parseStartTime("77 (node) S 1 2"), undefined);
});
