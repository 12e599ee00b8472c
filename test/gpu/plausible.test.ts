/** Plausibility: readings no GPU can give are no observation — they neither raise nor clear — and the view keeps the last good value, marked stale. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { carryForward, screen, type Reading } from "../../src/gpu/plausible.ts";
import { parseGpuQuery } from "../../src/gpu/parse.ts";
import { GPU_CANDIDATES, initialSelection } from "../../src/gpu/fields.ts";
import type { GpuSample } from "../../src/gpu/types.ts";
import { Box, CONFIG, gpu } from "./fault-box.ts";

const HUGE = Number(`9${"9".repeat(399)}`);

test("each impossible reading is rejected with its reason; the rest of the sample stays", () => {
  const cases: [Partial<GpuSample>, string, string][] = [
    [{ temperatureC: -5 }, "temperatureC", "negative"],
    [{ temperatureC: 151 }, "temperatureC", "over 150 °C"],
    [{ temperatureC: Number.NaN }, "temperatureC", "not a finite number"],
    [{ temperatureC: HUGE }, "temperatureC", "not a finite number"],
    [{ memoryTemperatureC: Number.NEGATIVE_INFINITY }, "memoryTemperatureC", "not a finite number"],
    [{ utilizationPct: 101 }, "utilizationPct", "over 100 %"],
    [{ utilizationPct: -1 }, "utilizationPct", "negative"],
    [{ memoryUsedMib: 90_000 }, "memoryUsedMib", "more than the 81559 MiB the GPU has"],
    [{ memoryUsedMib: -4 }, "memoryUsedMib", "negative"],
    [{ memoryTotalMib: -81559 }, "memoryTotalMib", "negative"],
    [{ powerDrawW: 2001 }, "powerDrawW", "over 2000 W, more than any GPU draws"],
    [{ powerDrawW: -70 }, "powerDrawW", "negative"],
    [{ powerLimitW: 70_000 }, "powerLimitW", "over 2000 W, more than any GPU draws"],
    [{ eccUncorrected: -3 }, "eccUncorrected", "negative"],
    [{ eccUncorrected: 2.5 }, "eccUncorrected", "not a whole number of errors"],
    [{ eccCorrected: -1 }, "eccCorrected", "negative"],
    [{ eccCorrected: 0.5 }, "eccCorrected", "not a whole number of errors"],
  ];
  for (const [over, field, why] of cases) {
    const s = screen(gpu(0, over));
    assert.deepEqual(
      s.rejected.map((r) => [r.field, r.why]),
      [[field, why]],
      JSON.stringify(over),
    );
    assert.equal((s.sample as unknown as Record<string, unknown>)[field], undefined, `${field} is left out`);
    assert.equal(s.sample.temperatureC === undefined, field === "temperatureC", "other readings are kept");
    assert.equal(s.valid, true);
  }
  assert.deepEqual(screen(gpu(0, { temperatureC: 150, utilizationPct: 100, powerDrawW: 2000, memoryUsedMib: 81559, eccUncorrected: 0 })).rejected, [], "the bounds themselves are plausible");
});

test("a 400-digit number in nvidia-smi's output reads as no value at all, and as no GPU index", () => {
  const fields = initialSelection(GPU_CANDIDATES).filter((f) => ["index", "temperature", "memoryUsed", "memoryTotal"].includes(f.key));
  const parsed = parseGpuQuery(`${"9".repeat(400)}, ${"9".repeat(400)}, 10, 100\n`, fields);
  assert.equal(parsed.rows[0]!.index, 0, "the row keeps its position");
  assert.equal(parsed.rows[0]!.temperatureC, undefined, "no reading, never Infinity");
  assert.ok(parsed.problems.some((p) => p.message.startsWith("temperature.gpu: unexpected value")), JSON.stringify(parsed.problems));
  assert.deepEqual(screen(parsed.rows[0]!).rejected, [], "nothing left for plausibility to reject");
});

test("a row with nothing plausible left says nothing about its GPU", () => {
  const empty = screen({ index: 0, uuid: "GPU-0", temperatureC: 900, powerDrawW: -1, reasons: {}, requiresReset: false });
  assert.equal(empty.valid, false);
  assert.equal(screen({ index: 0, reasons: {}, requiresReset: true }).valid, true, "[GPU requires reset] is an observation");
});

test("the view keeps the last good value of a rejected field, stale since the first rejection; a good reading ends it", () => {
  const t0 = 1_000;
  let r: Reading | undefined = carryForward(undefined, screen(gpu(0, { temperatureC: 41 })), t0);
  r = carryForward(r, screen(gpu(0, { temperatureC: 400, utilizationPct: 55 })), t0 + 5_000);
  assert.equal(r?.sample.temperatureC, 41);
  assert.equal(r?.sample.utilizationPct, 55);
  assert.deepEqual(r?.stale.get("temperatureC"), { since: t0 + 5_000, why: "over 150 °C", rejected: 400 });
  r = carryForward(r, screen(gpu(0, { temperatureC: 401 })), t0 + 10_000);
  assert.deepEqual(r?.stale.get("temperatureC"), { since: t0 + 5_000, why: "over 150 °C", rejected: 401 }, "stale since the first of the run");
  assert.equal(r?.at, t0 + 10_000);
  const same = carryForward(r, screen({ index: 0, temperatureC: -1, reasons: {}, requiresReset: false }), t0 + 15_000);
  assert.equal(same, r, "a sample that says nothing leaves the reading as it was");
  r = carryForward(r, screen(gpu(0, { temperatureC: 42 })), t0 + 20_000);
  assert.equal(r?.sample.temperatureC, 42);
  assert.equal(r?.stale.size, 0);
  const first = carryForward(undefined, screen(gpu(0, { temperatureC: 400 })), t0);
  assert.equal(first?.sample.temperatureC, undefined, "no good value yet: none is shown");
  assert.equal(first?.stale.has("temperatureC"), true);
});

test("an impossible temperature neither raises over_temperature nor clears it", () => {
  const box = new Box();
  box.samples(5, gpu(0, { temperatureC: 400 }));
  assert.deepEqual(box.raised.map((f) => f.id), [], "400 °C is a misreading, not heat");
  box.samples(3, gpu(0, { temperatureC: 95 }));
  assert.deepEqual(box.active(), ["over_temperature@gpu0"]);
  box.samples(5, gpu(0, { temperatureC: -40 }));
  box.samples(5, gpu(0, { temperatureC: Number.NaN }));
  assert.deepEqual(box.active(), ["over_temperature@gpu0"], "nor does an impossible one clear it");
  assert.deepEqual(box.cleared.map((f) => f.id), []);
});

test("impossible utilisation, memory or power readings raise nothing and clear nothing", () => {
  const box = new Box();
  box.samples(3, gpu(0, { memoryUsedMib: 81_000 }));
  assert.deepEqual(box.active(), ["memory_full@gpu0"]);
  box.samples(5, gpu(0, { memoryUsedMib: 120_000 }));
  box.samples(5, gpu(0, { memoryUsedMib: -1 }));
  assert.deepEqual(box.active(), ["memory_full@gpu0"], "memory used over the total is no reading");
  box.samples(5, gpu(0, { memoryUsedMib: 81_000, utilizationPct: 250, powerDrawW: 50_000, powerLimitW: -700 }));
  assert.deepEqual(box.raised.map((f) => f.id), ["memory_full@gpu0"]);
  assert.deepEqual(box.cleared.map((f) => f.id), []);
});

test("negative ECC counters are no reading: no spurious rise from −3 to 0 later, and no reset seen", () => {
  const box = new Box();
  box.samples(1, gpu(0, { eccUncorrected: 2 }));
  box.kernel("NVRM: Xid (PCI:0000:1b:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE)");
  box.samples(2, gpu(0, { eccUncorrected: -3 }));
  assert.deepEqual(box.active(), ["xid_ecc_uncontained@gpu0"], "−3 is not the counter going back down (no reset)");
  box.samples(1, gpu(0, { eccUncorrected: 2 }));
  box.samples(1, gpu(0, { eccUncorrected: 2.5 }));
  box.samples(1, gpu(0, { eccUncorrected: 2 }));
  assert.deepEqual(box.raised.map((f) => f.id), ["xid_ecc_uncontained@gpu0"], "no rise out of an impossible count");

  const fresh = new Box();
  fresh.samples(1, gpu(0, { eccUncorrected: -3 }));
  fresh.samples(1, gpu(0, { eccUncorrected: 0 }));
  assert.deepEqual(fresh.raised, [], "no 'rose from −3 to 0'");
});

test("nvidia-smi printing only garbage: gpu_readings_stale after stale_samples samples, cleared when plausible readings return", () => {
  const box = new Box({ ...CONFIG, staleSamples: 3 });
  box.samples(2, gpu(0), gpu(1));
  const garbage = { type: "sample", gpus: [] } as const;
  box.feed(garbage);
  box.feed(garbage);
  assert.deepEqual(box.raised.map((f) => f.id), [], "two garbage samples are not yet stale");
  box.feed(garbage);
  assert.deepEqual(
    box.raised.map((f) => [f.id, f.severity, f.code]),
    [
      ["gpu_readings_stale@gpu0", "degraded", "LLMSUP_E_GPU_READING_IMPLAUSIBLE"],
      ["gpu_readings_stale@gpu1", "degraded", "LLMSUP_E_GPU_READING_IMPLAUSIBLE"],
    ],
  );
  assert.match(box.raised[0]!.reason, /^GPU 0: no plausible reading from nvidia-smi for 3 samples in a row/);
  assert.match(box.raised[0]!.action, /nvidia-smi by hand/);
  assert.equal(box.raised[0]!.since, box.now - 2_000, "stale since the first sample without a reading");
  for (let i = 0; i < 5; i++) box.feed(garbage);
  assert.equal(box.raised.length, 2, "one fact per GPU");

  // Rows whose every reading is impossible are garbage too.
  box.samples(1, gpu(0), { index: 1, temperatureC: 900, powerDrawW: -5, reasons: {}, requiresReset: false });
  assert.deepEqual(box.cleared.map((f) => [f.id, f.clearReason]), [["gpu_readings_stale@gpu0", "nvidia-smi gives plausible readings again"]]);
  assert.deepEqual(box.active(), ["gpu_readings_stale@gpu1"]);
  box.samples(1, gpu(0), gpu(1));
  assert.deepEqual(box.active(), []);
});

test("garbage while a GPU is lost is not also stale readings: the lost GPU is the fact", () => {
  const box = new Box();
  box.samples(1, gpu(0), gpu(1));
  box.feed({ type: "failure", failure: { kind: "gpu_lost", code: "LLMSUP_E_GPU_LOST", busId: "00000000:3B:00.0", message: "Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost." } });
  box.samples(5, gpu(0));
  assert.deepEqual(box.active(), ["gpu_lost@gpu1"]);
});

test("a GPU index printed twice is a fault, and the rows count as the worst of them (an over-temperature is not hidden)", () => {
  const box = new Box();
  box.samples(1, gpu(0), gpu(1));
  box.samples(3, gpu(0), gpu(1, { temperatureC: 95 }), gpu(1, { temperatureC: 40, uuid: "GPU-9" }));
  assert.deepEqual(
    box.raised.map((f) => [f.id, f.severity]),
    [
      ["duplicate_gpu_index@gpu1", "degraded"],
      ["over_temperature@gpu1", "degraded"],
    ],
  );
  assert.match(box.raised[0]!.reason, /^GPU 1: nvidia-smi printed 2 rows for this index in one sample/);
  assert.equal(box.state.gpus.get(1)?.uuid, "GPU-1", "which row is GPU 1 cannot be told: its identity is kept");
  box.samples(3, gpu(0), gpu(1));
  assert.deepEqual(box.active(), []);
});
