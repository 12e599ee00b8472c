/**
 * The monitor on manual time against scripted nvidia-smi and journal
 * processes: implausible readings (said once, shown stale), garbage-only
 * output (gpu_readings_stale), and an XID 79 that only evidence clears.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { gpuSchema } from "../../src/config/schema.ts";
import { isLlmsupError } from "../../src/errors/error.ts";
import { GpuMonitor } from "../../src/gpu/monitor.ts";
import { reportJson } from "../../src/gpu/report.ts";
import type { ClearedFault, GpuFault } from "../../src/gpu/types.ts";
import { flush, ManualClock } from "../helpers/clock.ts";
import { captureLogs, fakeSpawner, type FakeChild } from "./helpers.ts";

const INTERVAL = 5_000;

/** One `--query-gpu` row of GPU 0 in the monitor's field order. */
function row(over: { temperature?: string; power?: string; ecc?: string } = {}): string {
  return `0, GPU-0, Fake GPU, 00000000:1B:00.0, ${over.temperature ?? "40"}, 45, 0, 100, 81559, ${over.power ?? "70.00"}, 700.00, P0, 0x0000000000000001, Not Active, Not Active, Not Active, Not Active, Not Active, ${over.ecc ?? "0"}, 0, No, None\n`;
}

function rig(t: { after(fn: () => void | Promise<void>): void }) {
  const clock = new ManualClock(Date.UTC(2025, 5, 1, 14, 0, 0));
  const loops: FakeChild[] = [];
  const journals: FakeChild[] = [];
  const spawn = fakeSpawner((child) => {
    if (child.args.includes("-lms")) loops.push(child);
    else if (child.args[0] === "journalctl-fake") journals.push(child);
    else if (child.args[0]?.startsWith("--query-gpu=")) {
      queueMicrotask(() => {
        child.print(row());
        child.exit(0);
      });
    } else queueMicrotask(() => child.exit(0));
  });
  const { logs, logger } = captureLogs();
  const monitor = new GpuMonitor({
    config: { ...gpuSchema.parse({}), nvidia_smi: "nvidia-smi", interval: INTERVAL, deadline: 15_000, kernel_log: "journal", stale_samples: 3, event_hold: 30 * 60_000 },
    logger,
    // The journal reader's child is told apart by its program name.
    spawn: (file, args) => spawn(file, file === "journalctl-fake" ? [file, ...args] : args),
    clock,
    kernelLog: { journalCommand: ["journalctl-fake", "-f"] },
    slowPollMs: 3_600_000,
  });
  const raised: GpuFault[] = [];
  const cleared: ClearedFault[] = [];
  monitor.on("fault.raised", (f) => raised.push(f));
  monitor.on("fault.cleared", (f) => cleared.push(f));
  t.after(() => monitor.stop());
  /** One interval passes and the loop prints `text`. */
  const tick = async (text: string) => {
    clock.advance(INTERVAL);
    loops.at(-1)!.print(text);
    await flush();
  };
  return { clock, spawn, loops, journals, monitor, logs, raised, cleared, tick };
}

test("implausible readings: one warning per (GPU, field) with its code, the last good value shown stale since the first, and no fault either way", async (t) => {
  const r = rig(t);
  await r.monitor.start();
  await flush();
  assert.equal(r.loops.length, 1);
  await r.tick(row({ temperature: "41" }));
  for (let i = 0; i < 10; i++) await r.tick(row({ temperature: "412" }));
  const since = r.clock.now() - 9 * INTERVAL;
  await r.tick(row({ temperature: "413", power: "-5.00", ecc: "-3" }));
  await r.tick(row({ temperature: "414", power: "-5.00", ecc: "0" }));

  const warnings = r.logs.filter((l) => l.event === "gpu.reading.implausible");
  assert.deepEqual(
    warnings.map((l) => [l.gpu, l.field, l.value, l.code]),
    [
      [0, "temperature_c", "412", "LLMSUP_E_GPU_READING_IMPLAUSIBLE"],
      [0, "power_draw_w", "-5", "LLMSUP_E_GPU_READING_IMPLAUSIBLE"],
      [0, "ecc_uncorrected_volatile", "-3", "LLMSUP_E_GPU_READING_IMPLAUSIBLE"],
    ],
    "said once per (GPU, field), not once per sample",
  );
  assert.deepEqual(r.raised.map((f) => f.id), [], "no over-temperature, no ECC rise from −3 to 0");
  const snap = r.monitor.snapshot();
  assert.equal(snap.gpus[0]!.sample?.temperatureC, 41, "the last good value");
  assert.equal(snap.gpus[0]!.sample?.powerDrawW, 70);
  assert.equal(snap.gpus[0]!.condition, "ok");
  const json = reportJson(snap).gpus[0]!;
  assert.equal(json.temperature_c, 41);
  assert.deepEqual(json.stale_fields, [
    { field: "temperature_c", since: new Date(since).toISOString(), rejected: "414", why: "over 150 °C" },
    { field: "power_draw_w", since: new Date(r.clock.now() - INTERVAL).toISOString(), rejected: "-5", why: "negative" },
  ]);
  assert.equal(json.stale_since, null, "the GPU itself still gives plausible samples");

  await r.tick(row({ temperature: "42" }));
  const back = reportJson(r.monitor.snapshot()).gpus[0]!;
  assert.deepEqual([back.temperature_c, back.power_draw_w, back.stale_fields], [42, 70, []]);
});

test("nvidia-smi printing only garbage: gpu_readings_stale after stale_samples intervals, the last good sample shown stale since the first garbage; cleared when rows return", async (t) => {
  const r = rig(t);
  await r.monitor.start();
  await flush();
  await r.tick(row());
  const good = r.clock.now();
  await r.tick("NVSMI LOG garbled §§§\n");
  const first = r.clock.now();
  await r.tick("NVSMI LOG garbled §§§\n");
  assert.deepEqual(r.raised.map((f) => f.id), []);
  assert.equal(r.monitor.snapshot().gpus[0]!.staleSince, first);
  await r.tick("NVSMI LOG garbled §§§\n");
  assert.deepEqual(r.raised.map((f) => [f.id, f.severity, f.since]), [["gpu_readings_stale@gpu0", "degraded", first]]);
  for (let i = 0; i < 20; i++) await r.tick("NVSMI LOG garbled §§§\n");
  assert.equal(r.raised.length, 1, "one fact, however long it lasts");
  const snap = r.monitor.snapshot();
  assert.deepEqual([snap.gpus[0]!.condition, snap.gpus[0]!.sampledAt, snap.nvidiaSmi.lastSampleAt], ["degraded", good, good]);
  const json = reportJson(snap).gpus[0]!;
  assert.deepEqual([json.sampled_at, json.stale_since], [new Date(good).toISOString(), new Date(first).toISOString()]);
  assert.equal(r.logs.filter((l) => l.event === "gpu.nvidia_smi.output").length, 1, "the garbage line is said once");

  await r.tick(row());
  assert.deepEqual(r.cleared.map((f) => [f.id, f.clearReason]), [["gpu_readings_stale@gpu0", "nvidia-smi gives plausible readings again"]]);
  assert.equal(r.monitor.snapshot().gpus[0]!.staleSince, undefined);
});

test("XID 79 on manual time: held far past event_hold while the GPU reads fine; cleared when nvidia-smi loses the GPU and finds it again", async (t) => {
  const r = rig(t);
  await r.monitor.start();
  await flush();
  await r.tick(row());
  r.journals[0]!.print(`${JSON.stringify({ MESSAGE: "NVRM: Xid (PCI:0000:1b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus." })}\n`);
  await flush();
  assert.deepEqual(r.raised.map((f) => [f.id, f.recovery]), [["xid_fallen_off_bus@gpu0", "reboot"]]);
  for (let i = 0; i < (3 * 30 * 60_000) / INTERVAL; i++) await r.tick(row());
  assert.deepEqual(r.cleared.map((f) => f.id), [], "not by time: three event_holds later it is still there");
  assert.equal(r.monitor.snapshot().gpus[0]!.condition, "down");

  // The GPU drops out of nvidia-smi, then comes back (re-enumerated).
  r.loops.at(-1)!.print("Unable to determine the device handle for GPU 0000:1B:00.0: GPU is lost. Reboot the system to recover this GPU\n");
  r.loops.at(-1)!.exit(15);
  await flush();
  assert.deepEqual(r.raised.map((f) => f.id), ["xid_fallen_off_bus@gpu0", "gpu_lost@gpu0"]);
  await r.clock.run(INTERVAL);
  assert.deepEqual(
    r.cleared.map((f) => [f.id, f.clearReason]),
    [["xid_fallen_off_bus@gpu0", "the GPU was reset (GPU 0 answers nvidia-smi again after it was lost or missing (re-enumerated))"]],
  );
});

test("the operator clears a GPU's event faults through the monitor: what cleared comes back; an unknown GPU is LLMSUP_E_GPU_UNKNOWN", async (t) => {
  const r = rig(t);
  await r.monitor.start();
  await flush();
  await r.tick(row({ ecc: "1" }));
  await r.tick(row({ ecc: "3" }));
  assert.deepEqual(r.raised.map((f) => [f.id, f.recovery]), [["ecc_uncorrected@gpu0", "reset_gpu"]]);
  for (let i = 0; i < (2 * 30 * 60_000) / INTERVAL; i++) await r.tick(row({ ecc: "3" }));
  assert.deepEqual(r.cleared.map((f) => f.id), [], "an ECC rise waits for a reset");
  assert.throws(
    () => r.monitor.gpuWasReset(7, "operator", "typo"),
    (e) => isLlmsupError(e) && e.code === "LLMSUP_E_GPU_UNKNOWN" && e.message === "no GPU 7 (GPUs: 0)",
  );
  const done = r.monitor.gpuWasReset(0, "operator", "drained and reset by hand");
  assert.deepEqual(
    done.map((f) => [f.id, f.clearReason]),
    [["ecc_uncorrected@gpu0", "cleared by the operator: drained and reset by hand"]],
  );
  assert.deepEqual(r.cleared, done, "the clear is an event like every other");
  assert.deepEqual(r.monitor.gpuWasReset(0, "operator", "again"), []);
  assert.ok(r.logs.some((l) => l.event === "gpu.faults.reset" && l.by === "operator"));
});
