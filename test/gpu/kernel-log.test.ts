/** The kernel-log watcher fed from files, a FIFO and fake journalctl commands. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { appendFileSync, openSync, closeSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "../helpers/cli.ts";
import { tempDir } from "../helpers/tmp.ts";
import { KernelLogWatcher, type KernelLogStatus } from "../../src/gpu/kernel-log.ts";
import { spawnChild } from "../../src/gpu/spawn.ts";
import { realClock } from "../../src/platform/clock.ts";
import type { KernelGpuEvent } from "../../src/gpu/xid.ts";
import { waitUntil } from "./helpers.ts";

const KMSG_FIXTURE = readFileSync(path.join(REPO_ROOT, "test/fixtures/gpu/kmsg.txt"), "utf8");
const JOURNAL_FIXTURE = readFileSync(path.join(REPO_ROOT, "test/fixtures/gpu/journal.jsonl"), "utf8");

function watch(t: { after(fn: () => void | Promise<void>): void }, options: Partial<ConstructorParameters<typeof KernelLogWatcher>[0]>) {
  const events: KernelGpuEvent[] = [];
  const statuses: KernelLogStatus[] = [];
  const notes: string[] = [];
  const watcher = new KernelLogWatcher({
    mode: "auto",
    pollMs: 10,
    // Real files, FIFOs and commands, in real time; a test may hand its own spawner.
    spawn: spawnChild,
    clock: realClock,
    onEvent: (e) => events.push(e),
    onStatus: (s) => statuses.push(s),
    onNote: (n) => notes.push(n),
    ...options,
  });
  t.after(() => watcher.stop());
  return { watcher, events, statuses, notes };
}

test("kmsg: boot history is skipped, new records are read, continuation lines and repeats ignored", async (t) => {
  const file = path.join(tempDir(t), "kmsg");
  writeFileSync(file, KMSG_FIXTURE);
  const w = watch(t, { mode: "kmsg", kmsgPath: file });
  assert.deepEqual(await w.watcher.start(), { source: "kmsg", path: file });
  assert.deepEqual(w.statuses, [{ source: "kmsg", path: file }]);

  appendFileSync(file, "4,1400,1912345678,-;NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n SUBSYSTEM=pci\n");
  appendFileSync(file, "4,1400,1912345678,-;NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n");
  appendFileSync(file, "4,1403,1912345999,-;NVRM: Xid (0000:1b:00): 48, An uncorrectable double bit error");
  await waitUntil("the XID 79", () => w.events.length === 1);
  appendFileSync(file, " (DBE) has been detected\n");
  await waitUntil("the XID 48", () => w.events.length === 2);
  assert.deepEqual(
    w.events.map((e) => [e.type === "xid" ? e.xid : e.type, e.busId]),
    [
      [79, "00000000:3B:00.0"],
      [48, "00000000:1B:00.0"],
    ],
  );
  assert.equal(w.events[1]!.message, "NVRM: Xid (0000:1b:00): 48, An uncorrectable double bit error (DBE) has been detected");
  assert.deepEqual(w.notes, ["2 kernel log records were lost"]);
});

test("kmsg: a FIFO works like the device", async (t) => {
  const fifo = path.join(tempDir(t), "kmsg.fifo");
  await promisify(execFile)("mkfifo", [fifo]);
  const w = watch(t, { mode: "kmsg", kmsgPath: fifo });
  assert.equal((await w.watcher.start()).source, "kmsg");
  const fd = openSync(fifo, "w");
  t.after(() => closeSync(fd));
  writeSync(fd, "3,5000,2000000000,-;NVRM: GPU 0000:18:00.0: GPU has fallen off the bus.\n");
  await waitUntil("the fallen-off-the-bus line", () => w.events.length === 1);
  assert.deepEqual(w.events[0], { type: "fallen_off_bus", busId: "00000000:18:00.0", message: "NVRM: GPU 0000:18:00.0: GPU has fallen off the bus." });
});

test("auto: an unreadable kmsg falls back to journalctl, which reads no backlog", async (t) => {
  const lines = JSON.stringify(JOURNAL_FIXTURE.trim().split("\n"));
  const fake = [process.execPath, "-e", `const l=${lines};setTimeout(()=>{for(const x of l)console.log(x)},20);setInterval(()=>{},1e6)`];
  const w = watch(t, { mode: "auto", kmsgPath: path.join(tempDir(t), "no-such-kmsg"), journalCommand: fake });
  assert.deepEqual(await w.watcher.start(), { source: "journal", command: fake });
  await waitUntil("two XIDs from the journal", () => w.events.length === 2);
  assert.deepEqual(
    w.events.map((e) => (e.type === "xid" ? [e.xid, e.busId] : [])),
    [
      [79, "00000000:3B:00.0"],
      [48, "00000000:1B:00.0"],
    ],
  );
  assert.deepEqual(
    (await import("../../src/gpu/kernel-log.ts")).DEFAULT_JOURNAL_COMMAND,
    ["journalctl", "-k", "-f", "-o", "json", "--lines=0"],
    "the real command starts at the end",
  );
});

test("neither source: unavailable, said once, with both reasons", async (t) => {
  const w = watch(t, { mode: "auto", kmsgPath: path.join(tempDir(t), "none"), journalCommand: [process.execPath, "-e", "console.log('No journal files were found.');process.exit(1)"] });
  await w.watcher.start();
  await waitUntil("the journal to give up", () => w.statuses.some((s) => s.source === "unavailable"));
  const last = w.statuses.at(-1)!;
  assert.equal(last.source, "unavailable");
  assert.match(last.source === "unavailable" ? last.reason : "", /cannot read .*none: ENOENT; .*exited with status 1: No journal files were found\./);
  assert.deepEqual(
    w.statuses.map((s) => s.source),
    ["journal", "unavailable"],
  );

  const missing = watch(t, { mode: "journal", journalCommand: ["/nonexistent/journalctl"] });
  await missing.watcher.start();
  await waitUntil("the missing journalctl", () => missing.statuses.some((s) => s.source === "unavailable"));
  assert.equal(missing.statuses.filter((s) => s.source === "unavailable").length, 1);
});

test("kmsg mode does not fall back; off reads nothing", async (t) => {
  const strict = watch(t, { mode: "kmsg", kmsgPath: path.join(tempDir(t), "none") });
  const s = await strict.watcher.start();
  assert.equal(s.source, "unavailable");
  const off = watch(t, { mode: "off" });
  assert.deepEqual(await off.watcher.start(), { source: "off" });
});

test("kmsg: a character split between two reads (a file read 16 KiB at a time) arrives whole", async (t) => {
  const file = path.join(tempDir(t), "kmsg");
  writeFileSync(file, "");
  const w = watch(t, { mode: "kmsg", kmsgPath: file });
  await w.watcher.start();
  const head = "4,2,2,-;NVRM: Xid (PCI:0000:3b:00): 13, pid=7, name=";
  // The padding record ends so that the two bytes of "é" lie either side of byte 16,384.
  const padding = `6,1,1,-;${"x".repeat(16_383 - head.length - "6,1,1,-;".length - 1)}\n`;
  assert.equal(Buffer.byteLength(padding + head), 16_383);
  appendFileSync(file, `${padding}${head}é, boom\n`);
  await waitUntil("the XID 13", () => w.events.length === 1);
  assert.ok(w.events[0]!.type === "xid");
  assert.equal(w.events[0]!.processName, "é");
});

test("journal: a line over 1 MiB is skipped whole with a note; its end is not read as a line of its own", async (t) => {
  let deliver: ((chunk: string) => void) | undefined;
  const child = { pid: 1, onOutput: (l: (chunk: string) => void) => (deliver = l), exited: new Promise<never>(() => undefined), kill: () => undefined, abandon: () => undefined };
  const w = watch(t, { mode: "journal", spawn: () => child });
  await w.watcher.start();
  const offBus = (bus: string) => JSON.stringify({ MESSAGE: `NVRM: GPU ${bus}: GPU has fallen off the bus.` });
  deliver!("x".repeat(1024 * 1024 + 1));
  deliver!(`${offBus("0000:18:00.0")}\n`);
  deliver!(`${offBus("0000:3b:00.0")}\n`);
  assert.deepEqual(w.events.map((e) => e.busId), ["00000000:3B:00.0"]);
  assert.deepEqual(w.notes, ["1 kernel log line longer than 1048576 characters skipped"]);
});
