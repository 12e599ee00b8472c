/** Kernel-log parsing: kmsg records, journal lines, XIDs in both formats, "fallen off the bus", the XID table. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { REPO_ROOT } from "../helpers/cli.ts";
import { parseJournalLine, parseKernelMessage, parseKmsgRecord, xidInfo, type KernelGpuEvent } from "../../src/gpu/xid.ts";

const fixture = (name: string) => readFileSync(path.join(REPO_ROOT, "test/fixtures/gpu", name), "utf8");

function events(): KernelGpuEvent[] {
  return fixture("kmsg.txt")
    .split("\n")
    .map(parseKmsgRecord)
    .flatMap((r) => (r ? [parseKernelMessage(r.message)] : []))
    .filter((e): e is KernelGpuEvent => e !== undefined);
}

test("kmsg records: priority, sequence, timestamp and message; continuation lines are not records", () => {
  assert.deepEqual(parseKmsgRecord("4,1360,1412345678,-;NVRM: Xid (PCI:0000:bb:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus."), {
    priority: 4,
    seq: 1360,
    usec: 1412345678,
    message: "NVRM: Xid (PCI:0000:bb:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
  });
  assert.equal(parseKmsgRecord(" SUBSYSTEM=pci"), undefined);
  assert.equal(parseKmsgRecord("4,12,34,-,caller=T123;msg")?.message, "msg");
  assert.equal(parseKmsgRecord("6,1,2,-;tab\\x09here")?.message, "tab\there");
});

test("every XID line of the fixture is found, with its bus id in nvidia-smi's form, and nothing else is", () => {
  const found = events();
  assert.deepEqual(
    found.map((e) => (e.type === "xid" ? e.xid : "off-bus")),
    [13, 31, 43, 45, 48, 95, 140, 61, 62, 63, 64, 74, 79, "off-bus", 92, 94, 109, 119, 120, 13, 43],
  );
  assert.ok(found.every((e) => /^00000000:[0-9A-F]{2}:00\.0$/.test(e.busId)), JSON.stringify(found.map((e) => e.busId)));
});

test("XID lines: pid and process name when given, <unknown> when not, the older format without PCI:", () => {
  const app = parseKernelMessage("NVRM: Xid (PCI:0000:3b:00): 13, pid=48213, name=python3, Graphics SM Warp Exception on (GPC 0, TPC 0, SM 0): Out Of Range Address");
  assert.deepEqual(app, {
    type: "xid",
    xid: 13,
    busId: "00000000:3B:00.0",
    pid: 48213,
    processName: "python3",
    detail: "Graphics SM Warp Exception on (GPC 0, TPC 0, SM 0): Out Of Range Address",
    message: "NVRM: Xid (PCI:0000:3b:00): 13, pid=48213, name=python3, Graphics SM Warp Exception on (GPC 0, TPC 0, SM 0): Out Of Range Address",
  });
  const unknown = parseKernelMessage("NVRM: Xid (PCI:0000:1b:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE) has been detected");
  assert.ok(unknown?.type === "xid");
  assert.deepEqual([unknown.pid, unknown.processName, unknown.busId], [undefined, undefined, "00000000:1B:00.0"]);
  const old = parseKernelMessage("NVRM: Xid (0000:3b:00): 13, 0002 00000000 0000a1c0 00000d94 00000000 00000000");
  assert.ok(old?.type === "xid");
  assert.deepEqual([old.xid, old.busId, old.pid, old.detail], [13, "00000000:3B:00.0", undefined, "0002 00000000 0000a1c0 00000d94 00000000 00000000"]);
  assert.equal(parseKernelMessage("[ 1412.345678] NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.")?.busId, "00000000:3B:00.0");
});

test('"fallen off the bus" lines in both spellings', () => {
  assert.deepEqual(parseKernelMessage("NVRM: GPU 0000:18:00.0: GPU has fallen off the bus."), {
    type: "fallen_off_bus",
    busId: "00000000:18:00.0",
    message: "NVRM: GPU 0000:18:00.0: GPU has fallen off the bus.",
  });
  assert.equal(parseKernelMessage("NVRM: GPU at PCI:0000:18:00: GPU has fallen off the bus.")?.busId, "00000000:18:00.0");
  assert.equal(parseKernelMessage("NVRM: GPU at PCI:0000:18:00: GPU-5ca1ab1e-1000-4000-8000-deadbeef0000"), undefined);
  assert.equal(parseKernelMessage("usb 1-1: new high-speed USB device"), undefined);
});

test("the XID table: class, severity and action", () => {
  const table: [number, string, string][] = [
    [13, "app_error", "log"],
    [31, "app_error", "log"],
    [43, "app_error", "log"],
    [45, "cleanup", "log"],
    [48, "ecc_uncontained", "down"],
    [95, "ecc_uncontained", "down"],
    [140, "ecc_uncontained", "down"],
    [61, "microcontroller_warning", "degraded"],
    [62, "microcontroller_halt", "down"],
    [63, "row_remap_pending", "degraded"],
    [64, "row_remap_failure", "down"],
    [74, "nvlink", "down"],
    [79, "fallen_off_bus", "down"],
    [92, "sbe_rate", "log"],
    [94, "contained_memory", "degraded"],
    [109, "driver_timeout", "down"],
    [119, "driver_timeout", "down"],
    [120, "driver_timeout", "down"],
    [154, "unclassified", "log"],
  ];
  for (const [xid, cls, severity] of table) {
    const info = xidInfo(xid);
    assert.deepEqual([info.class, info.severity], [cls, severity], `XID ${xid}`);
    assert.ok(info.action.length > 5);
  }
  assert.match(xidInfo(79).action, /reboot/);
});

test("journal lines: MESSAGE as text or as bytes; other lines are ignored", () => {
  const lines = fixture("journal.jsonl").trim().split("\n");
  const messages = lines.map(parseJournalLine);
  assert.equal(messages[0], "NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.");
  assert.equal(parseKernelMessage(messages[1]!), undefined);
  const bytes = parseKernelMessage(messages[2]!);
  assert.ok(bytes?.type === "xid");
  assert.deepEqual([bytes.xid, bytes.busId, bytes.pid], [48, "00000000:1B:00.0", 123]);
  assert.equal(parseJournalLine("-- No entries --"), undefined);
  assert.equal(parseJournalLine('{"__CURSOR":"x"}'), undefined);
});

test("400-digit numbers: an XID of 400 digits is no XID, a 400-digit pid is no pid, kmsg numbers past 2^53 are no record", () => {
  assert.equal(parseKernelMessage(`NVRM: Xid (PCI:0000:3b:00): ${"9".repeat(400)}, pid=1, name=x, boom`), undefined);
  const e = parseKernelMessage(`NVRM: Xid (PCI:0000:3b:00): 13, pid=${"9".repeat(400)}, name=python3, boom`);
  assert.ok(e?.type === "xid");
  assert.deepEqual([e.xid, e.pid, e.processName], [13, undefined, "python3"]);
  assert.equal(parseKmsgRecord(`4,${"9".repeat(400)},1,-;NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.`), undefined);
  assert.equal(parseKmsgRecord("4,9007199254740993,1,-;msg"), undefined);
  assert.equal(parseKmsgRecord("4,9007199254740991,1,-;msg")?.seq, 9007199254740991);
});

test("kmsg: UTF-8 written as \\xNN bytes reads as its characters; a record from a CRLF file is still a record", () => {
  assert.equal(parseKmsgRecord("4,7,8,-;NVRM: Xid (PCI:0000:3b:00): 13, pid=5, name=caf\\xc3\\xa9 \\xf0\\x9f\\x8c\\x8d, boom")?.message, "NVRM: Xid (PCI:0000:3b:00): 13, pid=5, name=café 🌍, boom");
  assert.equal(parseKmsgRecord("4,7,8,-;back\\x5cslash")?.message, "back\\slash");
  const crlf = parseKmsgRecord("3,5000,2000000000,-;NVRM: GPU 0000:18:00.0: GPU has fallen off the bus.\r");
  assert.equal(crlf?.seq, 5000);
  assert.equal(parseKernelMessage(crlf.message)?.type, "fallen_off_bus");
});

test("journal: a MESSAGE array holding numbers that are not bytes (1.5, -1, 300) is no message", () => {
  assert.equal(parseJournalLine(JSON.stringify({ MESSAGE: [78, 86, 1.5] })), undefined);
  assert.equal(parseJournalLine(JSON.stringify({ MESSAGE: [-1] })), undefined);
  assert.equal(parseJournalLine(JSON.stringify({ MESSAGE: [300] })), undefined);
  assert.equal(parseJournalLine(JSON.stringify({ MESSAGE: [78, 86, 82, 77] })), "NVRM");
});

test("long lines are read in linear time: 8,000 XID heads before a line break, 8,000 GPU mentions without the phrase", () => {
  const heads = `${"NVRM: Xid (0000:00:00): 1, ".repeat(8_000)}\nx`;
  const mentions = `NVRM: ${"GPU 0000:00:00 ".repeat(8_000)}`;
  const phraseFirst = `fallen off the bus NVRM: ${"GPU 0000:00:00 ".repeat(8_000)}`;
  for (const text of [heads, mentions, phraseFirst]) {
    const started = performance.now();
    assert.equal(parseKernelMessage(text), undefined);
    // The single-regex forms took from 4 to 30 seconds on these.
    assert.ok(performance.now() - started < 500, `${text.slice(0, 30)}… in well under a second`);
  }
  assert.equal(parseKernelMessage(`NVRM: ${"GPU 0000:00:00 ".repeat(8_000)}GPU has fallen off the bus.`)?.busId, "00000000:00:00.0");
});
