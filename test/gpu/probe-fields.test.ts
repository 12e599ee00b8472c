/** Field probing against the simulated nvidia-smi: one bad field must not blind the monitor. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { GPU_CANDIDATES, REMAP_CANDIDATES, type CandidateField } from "../../src/gpu/fields.ts";
import { parseGpuQuery, parseRemappedRows } from "../../src/gpu/parse.ts";
import { probeFields } from "../../src/gpu/probe-fields.ts";
import type { SmiRun, SmiRunner } from "../../src/gpu/runner.ts";
import { realSmiRunner, simBox } from "./helpers.ts";

/** Counts the queries a probe makes. */
function counting(runner: SmiRunner) {
  const calls: string[][] = [];
  return {
    calls,
    query: (args: readonly string[]): Promise<SmiRun> => {
      calls.push([...args]);
      return runner.query(args);
    },
  };
}

test("a current driver answers the first query: every field, one process", async (t) => {
  const box = await simBox(t);
  const runner = counting(realSmiRunner(box.nvidiaSmi, 5_000));
  const probe = await probeFields(runner, "--query-gpu", GPU_CANDIDATES, parseGpuQuery);
  assert.ok(probe.ok);
  assert.equal(runner.calls.length, 1);
  assert.equal(probe.fields.length, GPU_CANDIDATES.length);
  assert.deepEqual([probe.dropped, probe.replaced], [[], []]);
  assert.equal(probe.parsed.rows.length, 2, "the probe's answer is a sample");
  assert.equal(probe.parsed.rows[1]!.recoveryAction, "None");
});

test("an old driver: clocks_throttle_reasons.* replace clocks_event_reasons.*, gpu_recovery_action is dropped, three queries", async (t) => {
  const box = await simBox(t, (s) => {
    s.old_driver = true;
    s.gpus[1]!.clocks_event_reasons = 0x44;
  });
  const runner = counting(realSmiRunner(box.nvidiaSmi, 5_000));
  const probe = await probeFields(runner, "--query-gpu", GPU_CANDIDATES, parseGpuQuery);
  assert.ok(probe.ok, JSON.stringify(probe));
  assert.equal(probe.attempts, 3);
  assert.equal(runner.calls.length, 3);
  assert.deepEqual(probe.dropped, ["gpu_recovery_action"]);
  assert.ok(probe.replaced.includes("clocks_event_reasons.hw_thermal_slowdown"));
  const names = probe.fields.map((f) => f.name);
  assert.ok(names.includes("clocks_throttle_reasons.hw_thermal_slowdown"));
  assert.ok(!names.some((n) => n.startsWith("clocks_event_reasons")));
  const hot = probe.parsed.rows[1]!;
  assert.deepEqual([hot.reasons.mask, hot.reasons.hwThermalSlowdown, hot.reasons.swPowerCap, hot.recoveryAction], [0x44, true, true, undefined]);
});

test("a field this nvidia-smi has never heard of is dropped, the rest still sampled", async (t) => {
  const box = await simBox(t);
  const candidates: CandidateField[] = [
    { key: "index", names: ["index"], required: true },
    { key: "fan", names: ["fan.speed"] },
    { key: "temperature", names: ["temperature.gpu"] },
  ];
  const runner = realSmiRunner(box.nvidiaSmi, 5_000);
  const probe = await probeFields(runner, "--query-gpu", candidates, (out, fields) => parseGpuQuery(out, fields as never));
  assert.ok(probe.ok);
  assert.deepEqual(probe.dropped, ["fan.speed"]);
  assert.deepEqual(probe.parsed.rows.map((r) => [r.index, r.temperatureC]), [[0, 34], [1, 35]]);
});

test("a failing driver fails the probe with its own failure, not a field error", async (t) => {
  const box = await simBox(t, (s) => {
    s.failure = "nvml_mismatch";
  });
  const probe = await probeFields(realSmiRunner(box.nvidiaSmi, 5_000), "--query-gpu", GPU_CANDIDATES, parseGpuQuery);
  assert.ok(!probe.ok);
  assert.deepEqual([probe.failure.kind, probe.failure.code, probe.failure.exitCode], ["nvml_mismatch", "LLMSUP_E_GPU_NVML_MISMATCH", 18]);
  assert.equal(probe.attempts, 1);
});

test("remapped rows probe: [N/A] on a GPU without remapping is fine", async (t) => {
  const box = await simBox(t, (s) => {
    s.gpus[0]!.remapped_rows = null;
    s.gpus[1]!.remapped_rows = { correctable: 0, uncorrectable: 2, pending: true, failure: false };
  });
  const probe = await probeFields(realSmiRunner(box.nvidiaSmi, 5_000), "--query-remapped-rows", REMAP_CANDIDATES, parseRemappedRows);
  assert.ok(probe.ok);
  assert.deepEqual(probe.parsed.rows.map((r) => [r.busId, r.pending]), [["00000000:1B:00.0", undefined], ["00000000:3B:00.0", true]]);
});
