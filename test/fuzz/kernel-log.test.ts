/**
 * Fuzzing the kernel-log parsers and the watcher's line handling: random
 * kernel messages built from the pieces of real ones, random kmsg records,
 * random journal JSON, and log output cut into random reads. Nothing throws,
 * every number that comes out is a whole number a number holds exactly, and
 * lines come out the same however the output was cut.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { normalizeBusId } from "../../src/gpu/bus-id.ts";
import { KernelLogWatcher } from "../../src/gpu/kernel-log.ts";
import { LineSplitter } from "../../src/gpu/line-splitter.ts";
import type { ChildExit, ChildHandle } from "../../src/gpu/spawn.ts";
import { parseJournalLine, parseKernelMessage, parseKmsgRecord, type KernelGpuEvent } from "../../src/gpu/xid.ts";
import { realClock } from "../../src/platform/clock.ts";
import { cutAt, runs } from "./runs.ts";

const RUNS = runs(3_000);
const CANONICAL_BUS = /^[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.[0-7]$/;

const TOKENS = [
  "NVRM: ", "nvrm: ", "Xid ", "(", ")", "PCI:", "0000:3b:00", "0000:18:00.0", "00000000:3B:00.0", "1:2:3", ": ", ", ", ",", "pid=", "'", "<unknown>", "name=",
  "python3", "GPU ", "GPU", "at ", "fallen off the bus", "Fallen Off The Bus", "GPU has ", ".", "\n", "\r", "\u2028", " ", "79", "13", "48", "0", "x", "é", "[  12.345] ",
] as const;

/** Larger pieces: whole heads, GPU mentions and phrases, so that near-misses and repeats are common. */
const PHRASES = [
  "NVRM: ", "NVRM: Xid (PCI:0000:3b:00): 79", "NVRM: Xid (0000:1b:00): 13, ", ", pid=12, name=x, ", ", pid='<unknown>', name=<unknown>, ", "GPU 0000:18:00.0", "GPU at PCI:0000:18:00",
  "GPU0000:1b:00", "gpu 0001:c1:00.1 ", "fallen off the bus", " has ", "\n", "\r", "\u2028",
] as const;

/** A message made of the pieces of real XID and "fallen off the bus" lines, in any order. */
const kernelish = fc.oneof(
  fc.array(fc.constantFrom(...TOKENS), { maxLength: 24 }).map((ts) => ts.join("")),
  fc.array(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...PHRASES) }, { weight: 1, arbitrary: fc.constantFrom(...TOKENS) }), { maxLength: 8 }).map((ts) => ts.join("")),
);

/** The XID and "fallen off the bus" reading as one regular expression each: slow on long lines, but short lines are what it is asked about. */
function reference(text: string): KernelGpuEvent | undefined {
  const BUS = "[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\\.[0-7])?";
  const message = text.replace(/^\[\s*\d+\.\d+\]\s*/, "").trim();
  const xid = new RegExp(`NVRM: Xid \\((?:PCI:)?(${BUS})\\): (\\d+)(?:, ?(.*))?$`).exec(message);
  if (xid) {
    const rest = xid[3] ?? "";
    const pn = /^pid=(?:'?<unknown>'?|'?(\d+)'?), name=([^,]*),? ?(.*)$/.exec(rest);
    const name = pn?.[2]?.trim();
    return {
      type: "xid",
      xid: Number(xid[2]),
      busId: normalizeBusId(xid[1]!)!,
      pid: pn?.[1] !== undefined ? Number(pn[1]) : undefined,
      processName: name && name !== "<unknown>" ? name : undefined,
      detail: pn ? (pn[3] ?? "") : rest,
      message,
    };
  }
  const off = new RegExp(`NVRM: .*?GPU (?:at )?(?:PCI:)?(${BUS})\\b.*fallen off the bus`, "i").exec(message);
  return off ? { type: "fallen_off_bus", busId: normalizeBusId(off[1]!)!, message } : undefined;
}

function assertEvent(e: KernelGpuEvent | undefined): void {
  if (e === undefined) return;
  assert.ok(e.type === "xid" || e.type === "fallen_off_bus");
  assert.match(e.busId, CANONICAL_BUS);
  assert.equal(typeof e.message, "string");
  if (e.type === "xid") {
    assert.ok(Number.isSafeInteger(e.xid) && e.xid >= 0, `xid ${e.xid}`);
    assert.ok(e.pid === undefined || (Number.isSafeInteger(e.pid) && e.pid >= 0), `pid ${e.pid}`);
  }
}

test("fuzz: kernel messages built from XID and off-the-bus pieces read as the one-regex reading does (in linear time), and every event is well formed", () => {
  fc.assert(
    fc.property(kernelish, (text) => {
      const e = parseKernelMessage(text);
      assert.deepEqual(e, reference(text));
      assertEvent(e);
    }),
    { numRuns: runs(8_000) },
  );
});

test("fuzz: any text, 400-digit XIDs and pids included, gives no event or a well-formed one, never Infinity", () => {
  const digits = fc.oneof(fc.nat().map(String), fc.integer({ min: 16, max: 400 }).map((n) => "9".repeat(n)));
  const xidLine = fc
    .tuple(fc.constantFrom("PCI:0000:3b:00", "0000:1b:00", "0001:c1:00.1"), digits, digits, fc.string({ unit: "binary", maxLength: 20 }))
    .map(([bus, xid, pid, rest]) => `NVRM: Xid (${bus}): ${xid}, pid=${pid}, name=${rest}`);
  fc.assert(
    fc.property(fc.oneof(xidLine, kernelish, fc.string({ unit: "binary", maxLength: 200 })), (text) => assertEvent(parseKernelMessage(text))),
    { numRuns: RUNS },
  );
});

/** A message as /dev/kmsg writes it: each byte below 0x20, from 0x7f up, and the backslash as \xNN. */
function kmsgEscape(message: string): string {
  return [...Buffer.from(message, "utf8")].map((b) => (b < 0x20 || b >= 0x7f || b === 0x5c ? `\\x${b.toString(16).padStart(2, "0")}` : String.fromCharCode(b))).join("");
}

test("fuzz: kmsg records read back what was written; any other line is no record; numbers are whole and exact, priority 0-7", () => {
  const head = fc.tuple(fc.nat({ max: 191 }), fc.maxSafeNat(), fc.maxSafeNat(), fc.constantFrom("-", "c", "-,caller=T123"));
  // As the kernel writes them (any text, escaped), and as a file might hold them (unescaped, a CR or U+2028 within).
  const escaped = fc.tuple(head, fc.string({ unit: "grapheme", maxLength: 30 })).map(([[prefix, seq, usec, flags], message]) => ({ line: `${prefix},${seq},${usec},${flags};${kmsgEscape(message)}`, want: { priority: prefix & 7, seq, usec, message } }));
  const plain = fc
    .tuple(head, fc.string({ unit: "binary", maxLength: 30 }).map((m) => m.replace(/[\n\\]/g, " ")))
    .map(([[prefix, seq, usec, flags], message]) => ({ line: `${prefix},${seq},${usec},${flags};${message}`, want: { priority: prefix & 7, seq, usec, message } }));
  fc.assert(
    fc.property(fc.oneof(escaped, plain), ({ line, want }) => assert.deepEqual(parseKmsgRecord(line), want)),
    { numRuns: RUNS },
  );
  const junk = fc.oneof(
    fc.string({ unit: "binary", maxLength: 80 }),
    fc.tuple(fc.integer({ min: 1, max: 400 }), fc.string({ maxLength: 20 })).map(([n, m]) => `${"9".repeat(n)},${"9".repeat(n)},${"8".repeat(n)},-;${m}\\x4e\\xZZ\\x`),
  );
  fc.assert(
    fc.property(junk, (line) => {
      const r = parseKmsgRecord(line);
      if (r === undefined) return;
      for (const n of [r.seq, r.usec]) assert.ok(Number.isSafeInteger(n) && n >= 0);
      assert.ok(r.priority >= 0 && r.priority <= 7);
      assert.equal(typeof r.message, "string");
    }),
    { numRuns: RUNS },
  );
});

test("fuzz: journal lines give MESSAGE when it is text or bytes (0-255), and nothing for any other line or value", () => {
  const value = fc.oneof(
    fc.string({ unit: "binary", maxLength: 40 }),
    fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 40 }),
    fc.array(fc.oneof(fc.integer({ min: -300, max: 300 }), fc.double(), fc.constant(1e300)), { minLength: 1, maxLength: 8 }),
    fc.jsonValue({ maxDepth: 3 }),
  );
  const line = fc.oneof(
    fc.tuple(value, fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 })).map(([message, rest]) => ({ line: JSON.stringify({ ...rest, MESSAGE: message }), message })),
    fc.string({ unit: "binary", maxLength: 80 }).map((line) => ({ line, message: undefined as unknown })),
    fc.constantFrom("-- No entries --", "[]", "null", "3", '"MESSAGE"', "{", '{"MESSAGE":').map((line) => ({ line, message: undefined as unknown })),
  );
  fc.assert(
    fc.property(line, ({ line: l, message }) => {
      const got = parseJournalLine(l);
      if (typeof message === "string") assert.equal(got, message);
      else if (Array.isArray(message) && message.every((b) => Number.isInteger(b) && (b as number) >= 0 && (b as number) <= 255)) assert.equal(got, Buffer.from(message as number[]).toString("utf8"));
      else if (message !== undefined) assert.equal(got, undefined, `MESSAGE ${JSON.stringify(message)} is no message`);
      else assert.ok(got === undefined || typeof got === "string");
    }),
    { numRuns: RUNS },
  );
});

// ------------------------------------------------------------------ the watcher's line handling

/** Cuts `text` at `at` (positions taken modulo its length). */
function cutText(text: string, at: readonly number[]): string[] {
  const points = [...new Set(at.map((a) => a % (text.length + 1)))].sort((a, b) => a - b);
  return cutAt(points, (from, to) => text.slice(from, to));
}

test("fuzz: the line splitter gives the same lines, and skips the same overlong ones, however the text is cut, holding at most its limit", () => {
  const lines = fc.array(fc.oneof(fc.string({ unit: "binary", maxLength: 30 }), fc.integer({ min: 0, max: 200 }).map((n) => "x".repeat(n))), { maxLength: 10 });
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 120 }), lines, fc.array(fc.nat(), { maxLength: 20 }), (max, ls, at) => {
      const text = ls.join("\n");
      const pieces = text.split("\n");
      pieces.pop(); // the unfinished last line
      const want = { lines: pieces.filter((l) => l.length <= max), skipped: pieces.filter((l) => l.length > max).length };
      const s = new LineSplitter(max);
      const got = { lines: [] as string[], skipped: 0 };
      for (const piece of cutText(text, at)) {
        const r = s.push(piece);
        got.lines.push(...r.lines);
        got.skipped += r.skipped;
        assert.ok(s.held <= max, `held ${s.held}, limit ${max}`);
      }
      assert.deepEqual(got, want);
    }),
    { numRuns: RUNS },
  );
});

test("fuzz: bytes cut inside a character come out as the same lines as the whole (kmsg read from a FIFO or a file)", () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom("é", "🌍", "世", "a", "\n"), { maxLength: 40 }), fc.array(fc.nat(), { maxLength: 12 }), (chars, at) => {
      const bytes = Buffer.from(chars.join(""), "utf8");
      const whole = new LineSplitter().pushBytes(bytes).lines;
      const s = new LineSplitter();
      const got: string[] = [];
      const points = [...new Set(at.map((a) => a % (bytes.length + 1)))].sort((a, b) => a - b);
      let from = 0;
      for (const p of [...points, bytes.length]) {
        got.push(...s.pushBytes(bytes.subarray(from, p)).lines);
        from = p;
      }
      assert.deepEqual(got, whole);
      assert.ok(got.every((l) => !l.includes("\ufffd")), "no character was broken");
    }),
    { numRuns: RUNS },
  );
});

test("fuzz: journalctl output cut into random reads gives the watcher the events its whole lines hold, in order", async () => {
  const journalLine = fc.oneof(
    fc.constantFrom(
      "NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
      "NVRM: GPU 0000:18:00.0: GPU has fallen off the bus.",
      "NVRM: Xid (0000:1b:00): 48, An uncorrectable double bit error",
      "usb 1-1: new high-speed USB device",
    ).map((m) => JSON.stringify({ MESSAGE: m, __CURSOR: "c" })),
    kernelish.map((m) => JSON.stringify({ MESSAGE: m })),
    kernelish.map((m) => JSON.stringify({ MESSAGE: [...Buffer.from(m, "utf8")] })),
    fc.string({ unit: "binary", maxLength: 40 }).map((s) => s.replace(/\n/g, " ")),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(journalLine, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 16 }), async (ls, at) => {
      const text = ls.map((l) => `${l}\n`).join("");
      const want = ls.flatMap((l) => {
        const m = parseJournalLine(l);
        const e = m === undefined ? undefined : parseKernelMessage(m);
        return e ? [e] : [];
      });
      let deliver: ((chunk: string) => void) | undefined;
      const child: ChildHandle = {
        pid: 1,
        onOutput: (l) => (deliver = l),
        exited: new Promise<ChildExit>(() => undefined),
        kill: () => undefined,
        abandon: () => undefined,
      };
      const events: KernelGpuEvent[] = [];
      const w = new KernelLogWatcher({ mode: "journal", spawn: () => child, clock: realClock, onEvent: (e) => events.push(e), onStatus: () => undefined });
      await w.start();
      for (const piece of cutText(text, at)) deliver!(piece);
      await w.stop();
      assert.deepEqual(events, want);
    }),
    { numRuns: runs(600) },
  );
});
