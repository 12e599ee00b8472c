/**
 * Fuzzing the nvidia-smi parsers: random CSV with random cells ([N/A],
 * [GPU requires reset], 400-digit and negative numbers, NaN, unicode, names
 * with ", ", CRLF) and random text. Nothing throws; every line becomes a row,
 * a recognised failure or a problem; every number that comes out is finite;
 * every failure carries a registered code.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ERRORS } from "../../src/errors/registry.ts";
import { APP_FIELDS, GPU_CANDIDATES, initialSelection, REMAP_CANDIDATES, type SelectedField } from "../../src/gpu/fields.ts";
import { classifyFailure, interpret, loopExitFailure, parseComputeApps, parseGpuQuery, parseRemappedRows, type Parsed } from "../../src/gpu/parse.ts";
import type { SmiFailure } from "../../src/gpu/types.ts";
import { runs } from "./runs.ts";

const GPU_FIELDS = initialSelection(GPU_CANDIDATES);
const REMAP_FIELDS = initialSelection(REMAP_CANDIDATES);
const RUNS = runs(2_500);

const CELLS = [
  "[N/A]", "[Not Supported]", "[Unknown Error]", "[GPU requires reset]", "[Insufficient Permissions]", "N/A", "", " ",
  "9".repeat(400), `-${"9".repeat(400)}`, `${"9".repeat(400)}.5`, "-5", "-0", "0", "42", "69.80 W", "81559 MiB", "87 %", "1500 MHz", "NaN", "Infinity", "-Infinity", "1e5", "0x",
  "0x0000000000000044", "0xFFFFFFFFFFFFFFFF", "0x1ffffffffffffffff", "Active", "Not Active", "Yes", "No", "P0", "None", "Reset", "Drain P2P",
  "00000000:3B:00.0", "0000:18:00", "GPU-8f6c9a3e-2b1d-4c7e-9f00-1a2b3c4d5e6f", "NVIDIA A100-SXM4-80GB", "python3, --model x", "世界 🌍", "\u0000", "[", "]", "[[N/A]]",
] as const;

const cell = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...CELLS) }, { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 12 }).map((s) => s.replace(/\n/g, " ")) });

const FAILURE_LINES = [
  "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.",
  "Unable to determine the device handle for GPU 0000:1B:00.0: GPU is lost. Reboot the system to recover this GPU",
  "Unable to determine the device handle for GPU0000:02:00.0: Unknown Error",
  "Failed to initialize NVML: Driver/library version mismatch",
  "No devices were found",
  'Field "clocks_event_reasons.active" is not a valid field to query.',
  "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.",
] as const;

/** One line: a row of about the right number of cells, a failure line, or anything at all. */
const line = (width: number) =>
  fc.oneof(
    { weight: 6, arbitrary: fc.array(cell, { minLength: Math.max(0, width - 2), maxLength: width + 2 }).map((cells) => cells.join(", ")) },
    { weight: 1, arbitrary: fc.constantFrom(...FAILURE_LINES) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 60 }).map((s) => s.replace(/\n/g, " ")) },
  );

/** Lines ended by LF or CRLF, blank ones among them. */
const csv = (width: number) =>
  fc
    .array(fc.tuple(fc.oneof({ weight: 8, arbitrary: line(width) }, { weight: 1, arbitrary: fc.constantFrom("", "   ") }), fc.constantFrom("\n", "\r\n")), { maxLength: 10 })
    .map((ls) => ls.map(([l, end]) => l + end).join(""));

const exitCode = fc.oneof(fc.constant(null), fc.integer({ min: -1, max: 300 }));

function assertFailure(f: SmiFailure): void {
  assert.ok(f.code in ERRORS, `registered code ${f.code}`);
  assert.equal(typeof f.kind, "string");
  assert.equal(typeof f.message, "string");
  if (f.busId !== undefined) assert.match(f.busId, /^[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.[0-7]$/);
}

const finiteOrAbsent = (what: string, v: number | undefined) => assert.ok(v === undefined || Number.isFinite(v), `${what}: ${v}`);

/** The lines of `output` that are not blank, as given (a CR before the LF kept). */
const nonBlank = (output: string) => output.split("\n").filter((l) => l.replace(/\r$/, "").trim() !== "");

/**
 * Every line is exactly one of: a failure; a row (perhaps with problems about its cells); problems
 * and no row. The whole output parses as its lines parsed one by one, in order.
 */
function assertLineByLine<T>(output: string, fields: readonly SelectedField[], parse: (o: string) => Parsed<T>, comparable: (row: T) => unknown): Parsed<T> {
  const whole = parse(output);
  const rows: unknown[] = [];
  const failures: SmiFailure[] = [];
  const problems: string[] = [];
  for (const l of nonBlank(output)) {
    const one = parse(l);
    const kinds = [one.failures.length === 1 && one.rows.length === 0 && one.problems.length === 0, one.rows.length === 1 && one.failures.length === 0, one.rows.length === 0 && one.failures.length === 0 && one.problems.length > 0];
    assert.equal(kinds.filter(Boolean).length, 1, `${JSON.stringify(l)} became exactly one of a failure, a row or a problem (${fields.length} fields)`);
    rows.push(...one.rows.map(comparable));
    failures.push(...one.failures);
    problems.push(...one.problems.map((p) => p.message));
  }
  assert.deepEqual(whole.rows.map(comparable), rows);
  assert.deepEqual(whole.failures, failures);
  assert.deepEqual(whole.problems.map((p) => p.message), problems);
  const lines = nonBlank(output).map((l) => l.replace(/\r$/, ""));
  for (const p of whole.problems) assert.ok(lines.includes(p.line), "a problem quotes its line, without its line end");
  whole.failures.forEach(assertFailure);
  return whole;
}

/** interpret() never throws and answers rows, or a failure with a registered code. */
function assertInterpreted<T>(parsed: Parsed<T>, output: string, code: number | null): void {
  const outcome = interpret(parsed, output, code);
  if (!outcome.ok) {
    assertFailure(outcome.failure);
    assert.equal(outcome.failure.exitCode, code);
  } else assert.ok(outcome.parsed.rows.length > 0 || outcome.parsed.failures.length > 0 || code === 0);
}

test("fuzz: --query-gpu output of random cells: every line a row, a failure or a problem; indexes are whole, every number finite", () => {
  fc.assert(
    fc.property(csv(GPU_FIELDS.length), exitCode, (output, code) => {
      // The index of a row whose index cell is unreadable is its position in the output, not in a line of its own.
      const parsed = assertLineByLine(output, GPU_FIELDS, (o) => parseGpuQuery(o, GPU_FIELDS), (r) => ({ ...r, index: undefined }));
      for (const r of parsed.rows) {
        assert.ok(Number.isSafeInteger(r.index) && r.index >= 0, `index ${r.index}`);
        for (const k of ["temperatureC", "memoryTemperatureC", "utilizationPct", "memoryUsedMib", "memoryTotalMib", "powerDrawW", "powerLimitW", "eccUncorrected", "eccCorrected"] as const) finiteOrAbsent(k, r[k]);
        const mask = r.reasons.mask;
        assert.ok(mask === undefined || (Number.isInteger(mask) && mask >= 0 && mask <= 0xffffffff), `mask ${mask}`);
        assert.equal(typeof r.requiresReset, "boolean");
      }
      assertInterpreted(parsed, output, code);
    }),
    { numRuns: RUNS },
  );
});

test("fuzz: --query-compute-apps output (names with ', ' and anything else): every line a process, a failure or a problem; pids whole, memory finite", () => {
  fc.assert(
    fc.property(csv(APP_FIELDS.length), exitCode, (output, code) => {
      const parsed = assertLineByLine(output, APP_FIELDS, (o) => parseComputeApps(o, APP_FIELDS), (r) => r);
      for (const r of parsed.rows) {
        assert.ok(Number.isSafeInteger(r.pid) && r.pid >= 0, `pid ${r.pid}`);
        assert.ok(r.gpuUuid !== "");
        finiteOrAbsent("usedMemoryMib", r.usedMemoryMib);
      }
      assertInterpreted(parsed, output, code);
    }),
    { numRuns: RUNS },
  );
});

test("fuzz: --query-remapped-rows output: every line a GPU, a failure or a problem; counts finite", () => {
  fc.assert(
    fc.property(csv(REMAP_FIELDS.length), exitCode, (output, code) => {
      const parsed = assertLineByLine(output, REMAP_FIELDS, (o) => parseRemappedRows(o, REMAP_FIELDS), (r) => r);
      for (const r of parsed.rows) {
        finiteOrAbsent("correctable", r.correctable);
        finiteOrAbsent("uncorrectable", r.uncorrectable);
      }
      assertInterpreted(parsed, output, code);
    }),
    { numRuns: RUNS },
  );
});

test("fuzz: any text an nvidia-smi run printed, with any exit status, is classified as a failure with a registered code and one line of message", () => {
  const text = fc.oneof(csv(4), fc.string({ unit: "binary", maxLength: 200 }), fc.array(fc.constantFrom(...FAILURE_LINES, "", "\r", "junk"), { maxLength: 5 }).map((ls) => ls.join("\n")));
  fc.assert(
    fc.property(text, exitCode, (output, code) => {
      for (const f of [classifyFailure(output, code), loopExitFailure(output, code)]) {
        assertFailure(f);
        assert.equal(f.exitCode, code);
        assert.ok(!f.message.includes("\n"), `one line: ${JSON.stringify(f.message)}`);
      }
    }),
    { numRuns: RUNS },
  );
});
