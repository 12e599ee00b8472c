/** The pure nvidia-smi parsers against fixtures in the real output format. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { REPO_ROOT } from "../helpers/cli.ts";
import { APP_FIELDS, GPU_CANDIDATES, initialSelection, REMAP_CANDIDATES } from "../../src/gpu/fields.ts";
import { classifyFailure, interpret, loopExitFailure, parseComputeApps, parseGpuQuery, parseNumber, parseRemappedRows, readCell, splitRow } from "../../src/gpu/parse.ts";
import { normalizeBusId } from "../../src/gpu/bus-id.ts";
import { ERRORS } from "../../src/errors/registry.ts";

const fixture = (name: string) => readFileSync(path.join(REPO_ROOT, "test/fixtures/gpu", name), "utf8");
const GPU_FIELDS = initialSelection(GPU_CANDIDATES);
const REMAP_FIELDS = initialSelection(REMAP_CANDIDATES);

test("a healthy and a busy A100 read as typed samples; SW power cap is only a reason", () => {
  const { rows, failures, problems } = parseGpuQuery(fixture("query-gpu-a100x4.csv"), GPU_FIELDS);
  assert.deepEqual([rows.length, failures, problems], [4, [], []]);
  const [idle, busy, hot, braked] = rows;
  assert.deepEqual(idle, {
    index: 0,
    uuid: "GPU-8f6c9a3e-2b1d-4c7e-9f00-1a2b3c4d5e6f",
    name: "NVIDIA A100-SXM4-80GB",
    busId: "00000000:07:00.0",
    temperatureC: 33,
    memoryTemperatureC: 41,
    utilizationPct: 0,
    memoryUsedMib: 0,
    memoryTotalMib: 81920,
    powerDrawW: 61.34,
    powerLimitW: 400,
    pstate: "P0",
    reasons: { mask: 1, hwSlowdown: false, hwThermalSlowdown: false, swThermalSlowdown: false, hwPowerBrakeSlowdown: false, swPowerCap: false },
    eccUncorrected: 0,
    eccCorrected: 0,
    retiredPagesPending: false,
    recoveryAction: "None",
    requiresReset: false,
  });
  assert.equal(busy!.reasons.mask, 0x4);
  assert.equal(busy!.reasons.swPowerCap, true);
  assert.equal(hot!.reasons.mask, 0x48);
  assert.deepEqual([hot!.reasons.hwThermalSlowdown, hot!.reasons.hwSlowdown, hot!.eccUncorrected, hot!.retiredPagesPending, hot!.recoveryAction], [true, true, 2, true, "Reset"]);
  assert.deepEqual([braked!.reasons.hwPowerBrakeSlowdown, braked!.recoveryAction], [true, "Drain P2P"]);
});

test("[N/A], [Not Supported] and [Unknown Error] cells are no value, never zero", () => {
  const { rows, problems } = parseGpuQuery(fixture("query-gpu-na.csv"), GPU_FIELDS);
  assert.deepEqual(problems, []);
  const [rtx, t4] = rows;
  assert.equal(rtx!.memoryTemperatureC, undefined);
  assert.equal(rtx!.eccUncorrected, undefined);
  assert.equal(rtx!.retiredPagesPending, undefined);
  assert.equal(rtx!.recoveryAction, undefined);
  assert.equal(rtx!.requiresReset, false);
  assert.equal(t4!.memoryTemperatureC, undefined);
  assert.equal(t4!.powerDrawW, undefined);
  assert.equal(t4!.powerLimitW, 70);
  assert.equal(t4!.eccUncorrected, 0);
});

test("[GPU requires reset] marks the GPU, which keeps its place by line position", () => {
  const { rows } = parseGpuQuery(fixture("query-gpu-requires-reset.csv"), GPU_FIELDS);
  assert.equal(rows.length, 2);
  assert.equal(rows[0]!.requiresReset, false);
  assert.deepEqual([rows[1]!.index, rows[1]!.requiresReset, rows[1]!.uuid, rows[1]!.temperatureC], [1, true, undefined, undefined]);
  assert.deepEqual(readCell(" [GPU requires reset] "), { kind: "reset" });
});

test("a device-handle error among rows names its GPU; the other GPUs still read", () => {
  const text = fixture("query-gpu-lost-mixed.csv");
  const parsed = parseGpuQuery(text, GPU_FIELDS);
  assert.equal(parsed.rows.length, 1);
  assert.equal(parsed.rows[0]!.index, 1);
  assert.deepEqual(
    parsed.failures.map((f) => [f.kind, f.code, f.busId]),
    [["device_error", "LLMSUP_E_GPU_DEVICE_ERROR", "00000000:1B:00.0"]],
  );
  const outcome = interpret(parsed, text, 255);
  assert.ok(outcome.ok, "rows with a failing GPU are still an answer");
});

test("a loop's end is read from the failure line it printed, whatever its exit status; with none, from the status", () => {
  const lost = "Unable to determine the device handle for GPU 0000:1B:00.0: GPU is lost. Reboot the system to recover this GPU";
  assert.deepEqual([loopExitFailure(lost, 15).kind, loopExitFailure(lost, null).kind, loopExitFailure(lost, 0).kind], ["gpu_lost", "gpu_lost", "gpu_lost"]);
  assert.equal(loopExitFailure(`Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.54`, null).kind, "nvml_mismatch");
  assert.deepEqual(loopExitFailure("", 9), { kind: "failed", code: "LLMSUP_E_GPU_SMI_FAILED", message: "nvidia-smi exited with status 9 and printed nothing", exitCode: 9 });
  assert.equal(loopExitFailure("", 0).message, "the nvidia-smi loop ended on its own");
});

test("every whole-command failure is classified with a registered error code", () => {
  const blocks = fixture("failures.txt").split("---\n");
  assert.equal(blocks.length, 8);
  for (const block of blocks) {
    const [head, ...rest] = block.split("\n");
    const meta = Object.fromEntries(head!.split(" ").map((kv) => kv.split("=") as [string, string]));
    const output = rest.join("\n");
    const f = classifyFailure(output, Number(meta.exit));
    assert.equal(f.kind, meta.kind, output);
    assert.ok(f.code in ERRORS, f.code);
    assert.equal(f.exitCode, Number(meta.exit));
    if (meta.bus) assert.equal(f.busId, meta.bus);
    if (meta.field) assert.equal(f.field, meta.field);
    // Through the query interpreter too: a failing exit status with nothing readable is that failure.
    const outcome = interpret(parseGpuQuery(output, GPU_FIELDS), output, Number(meta.exit));
    assert.ok(!outcome.ok);
    assert.equal(outcome.failure.kind, meta.kind);
  }
  assert.equal(classifyFailure("", 1).message, "nvidia-smi exited with status 1 and printed nothing");
});

test("both device-handle spellings (GPU 0000:… and GPU0000:…) name the GPU", () => {
  const a = classifyFailure("Unable to determine the device handle for GPU 0000:02:00.0: GPU is lost. Reboot the system to recover this GPU\n", 15);
  const b = classifyFailure("Unable to determine the device handle for GPU0000:02:00.0: GPU is lost. Reboot the system to recover this GPU\n", 15);
  assert.deepEqual([a.kind, a.busId], ["gpu_lost", "00000000:02:00.0"]);
  assert.deepEqual([b.kind, b.busId], ["gpu_lost", "00000000:02:00.0"]);
});

test("unreadable output is a coded problem, not a crash", () => {
  const junk = "<html>502 Bad Gateway</html>\n";
  const parsed = parseGpuQuery(junk, GPU_FIELDS);
  assert.equal(parsed.rows.length, 0);
  assert.match(parsed.problems[0]!.message, /expected 22 comma-separated values, got 1/);
  const outcome = interpret(parsed, junk, 0);
  assert.ok(!outcome.ok);
  assert.equal(outcome.failure.code, "LLMSUP_E_GPU_SMI_OUTPUT");

  const badCell = parseGpuQuery("0, GPU-x, Some GPU, 00000000:01:00.0, hot, 41, 0, 0, 100, 1, 2, P0, 0x1, Not Active, Not Active, Not Active, Not Active, Maybe, 0, 0, No, None\n", GPU_FIELDS);
  assert.equal(badCell.rows.length, 1);
  assert.equal(badCell.rows[0]!.temperatureC, undefined);
  assert.deepEqual(
    badCell.problems.map((p) => p.message).sort(),
    ['clocks_event_reasons.sw_power_cap: unexpected value "Maybe"', 'temperature.gpu: unexpected value "hot"'],
  );
});

test("numbers tolerate units that slipped through; names with ', ' are joined back", () => {
  assert.equal(parseNumber("81559 MiB"), 81559);
  assert.equal(parseNumber("69.80 W"), 69.8);
  assert.equal(parseNumber("87 %"), 87);
  assert.equal(parseNumber("N/A"), undefined);
  assert.deepEqual(splitRow("1, GPU-x, Weird, Name, 00000000:01:00.0", [{ key: "a", name: "index" }, { key: "b", name: "uuid" }, { key: "c", name: "name", freeText: true }, { key: "d", name: "pci.bus_id" }]), [
    "1",
    "GPU-x",
    "Weird, Name",
    "00000000:01:00.0",
  ]);
  assert.equal(splitRow("1, 2", [{ key: "a", name: "a" }, { key: "b", name: "b" }, { key: "c", name: "c" }]), undefined);
});

test("compute apps: pids, GPU uuids, memory; [N/A] memory and odd names survive", () => {
  const { rows, problems } = parseComputeApps(fixture("compute-apps.csv"), APP_FIELDS);
  assert.deepEqual(problems, []);
  assert.deepEqual(rows, [
    { pid: 48213, gpuUuid: "GPU-0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5", usedMemoryMib: 74208, processName: "/opt/vllm/bin/python3" },
    { pid: 48390, gpuUuid: "GPU-1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718", usedMemoryMib: 80096, processName: "VLLM::EngineCore" },
    { pid: 51007, gpuUuid: "GPU-2a3b4c5d-6e7f-8091-a2b3-c4d5e6f70819", usedMemoryMib: 20476, processName: "/usr/local/bin/ollama_llama_server, runner --model x" },
    { pid: 3311, gpuUuid: "GPU-8f6c9a3e-2b1d-4c7e-9f00-1a2b3c4d5e6f", usedMemoryMib: undefined, processName: undefined },
  ]);
  assert.deepEqual(parseComputeApps("", APP_FIELDS).rows, [], "no processes: no lines at all");
  assert.ok(interpret(parseComputeApps("", APP_FIELDS), "", 0).ok);
});

test("remapped rows: pending and failure flags; GPUs without remapping read [N/A]", () => {
  const { rows, problems } = parseRemappedRows(fixture("remapped-rows.csv"), REMAP_FIELDS);
  assert.deepEqual(problems, []);
  assert.deepEqual(
    rows.map((r) => [r.busId, r.correctable, r.uncorrectable, r.pending, r.failure]),
    [
      ["00000000:07:00.0", 0, 0, false, false],
      ["00000000:0B:00.0", 3, 1, true, false],
      ["00000000:48:00.0", 0, 512, false, true],
      ["00000000:3B:00.0", undefined, undefined, undefined, undefined],
    ],
  );
});

test("bus ids in every spelling become nvidia-smi's form", () => {
  assert.equal(normalizeBusId("PCI:0000:3b:00"), "00000000:3B:00.0");
  assert.equal(normalizeBusId("0000:3b:00"), "00000000:3B:00.0");
  assert.equal(normalizeBusId("0000:18:00.0"), "00000000:18:00.0");
  assert.equal(normalizeBusId("00000000:3B:00.0"), "00000000:3B:00.0");
  assert.equal(normalizeBusId("0001:c1:00.1"), "00000001:C1:00.1");
  assert.equal(normalizeBusId("GPU-abc"), undefined);
});

test("a 400-digit reading is no number, not Infinity: the cell is a problem and the field has no value", () => {
  assert.equal(parseNumber("9".repeat(400)), undefined);
  assert.equal(parseNumber(`-${"9".repeat(400)}`), undefined);
  const row = `0, GPU-x, Some GPU, 00000000:01:00.0, ${"9".repeat(400)}, 41, 0, 0, 100, 1, 2, P0, 0x1, Not Active, Not Active, Not Active, Not Active, Not Active, 0, 0, No, None\n`;
  const { rows, problems } = parseGpuQuery(row, GPU_FIELDS);
  assert.equal(rows[0]!.temperatureC, undefined);
  assert.deepEqual(problems.map((p) => p.message), [`temperature.gpu: unexpected value "${"9".repeat(400)}"`]);
});

test("a compute process with a 400-digit pid is a problem, not a process with pid Infinity", () => {
  const { rows, problems } = parseComputeApps(`${"9".repeat(400)}, GPU-x, 100, python3\n`, APP_FIELDS);
  assert.deepEqual(rows, []);
  assert.equal(problems.length, 2);
  assert.match(problems[1]!.message, /a compute process without a readable pid and GPU uuid/);
});

test("4,000 device-handle heads on one line before a CR are classified in linear time (the reason runs to the line's end, no `$`)", () => {
  const head = "Unable to determine the device handle for GPU 0000:00:00: ";
  const output = `${head.repeat(4_000)}\rx`;
  const started = performance.now();
  const f = classifyFailure(output, 1);
  assert.ok(performance.now() - started < 500, "well under a second (the `.*$` form took seconds)");
  assert.deepEqual([f.kind, f.busId], ["device_error", "00000000:00:00.0"]);
});
