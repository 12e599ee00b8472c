/**
 * The GPU monitor end to end: the simulated nvidia-smi in loop mode (a real
 * child process re-reading the state file every sample), a kernel log fed
 * from a file, faults raised and cleared as the simulated GPUs change.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { gpuSchema } from "../../src/config/schema.ts";
import { GpuMonitor } from "../../src/gpu/monitor.ts";
import { spawnChild, type ProgramSpawner } from "../../src/gpu/spawn.ts";
import { realClock } from "../../src/platform/clock.ts";
import type { ClearedFault, GpuFault, GpuSample } from "../../src/gpu/types.ts";
import { tempDir } from "../helpers/tmp.ts";
import { captureLogs, simBox, waitUntil, type SimBox } from "./helpers.ts";

const GPU_CONFIG = {
  ...gpuSchema.parse({}),
  enabled: true,
  interval: 100,
  deadline: 2_000,
  kernel_log: "kmsg" as const,
  temperature_limit: 87,
  memory_full: 0.98,
  sustain_samples: 3,
  clear_samples: 3,
  event_hold: 30 * 60_000,
};

interface Rig {
  monitor: GpuMonitor;
  box: SimBox;
  kmsg: string;
  raised: GpuFault[];
  cleared: ClearedFault[];
  samples: { at: number; gpus: readonly GpuSample[] }[];
  logs: Record<string, unknown>[];
  /** nvidia-smi processes alive now, and the most ever alive at once. */
  alive: () => number;
  maxAlive: () => number;
  spawned: () => number;
  active: () => string[];
}

/** Waits long enough for a loaded machine: these tests drive real processes. */
const wait = (what: string, check: () => boolean, timeoutMs = 10_000) => waitUntil(what, check, timeoutMs);

async function start(
  t: { after(fn: () => void | Promise<void>): void },
  prepare?: Parameters<typeof simBox>[1],
  { slowPollMs = 300, deadline = GPU_CONFIG.deadline }: { slowPollMs?: number; deadline?: number } = {},
): Promise<Rig> {
  const box = await simBox(t, prepare);
  const kmsg = path.join(tempDir(t), "kmsg");
  writeFileSync(kmsg, "6,1,100,-;NVRM: Xid (PCI:0000:1b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n");
  let alive = 0;
  let maxAlive = 0;
  let spawned = 0;
  const spawn: ProgramSpawner = (file, args) => {
    const child = spawnChild(file, args);
    spawned++;
    maxAlive = Math.max(maxAlive, ++alive);
    void child.exited.then(() => alive--);
    return child;
  };
  const { logs, logger } = captureLogs();
  const monitor = new GpuMonitor({
    config: { ...GPU_CONFIG, deadline, nvidia_smi: box.nvidiaSmi },
    logger,
    spawn,
    // Real processes (the simulated nvidia-smi) in real time.
    clock: realClock,
    kernelLog: { kmsgPath: kmsg, pollMs: 20 },
    slowPollMs,
  });
  const rig: Rig = {
    monitor,
    box,
    kmsg,
    raised: [],
    cleared: [],
    samples: [],
    logs,
    alive: () => alive,
    maxAlive: () => maxAlive,
    spawned: () => spawned,
    active: () => monitor.faults().map((f) => f.id).sort(),
  };
  monitor.on("fault.raised", (f) => rig.raised.push(f));
  monitor.on("fault.cleared", (f) => rig.cleared.push(f));
  monitor.on("sample", (gpus, at) => rig.samples.push({ at, gpus }));
  t.after(() => monitor.stop());
  await monitor.start();
  return rig;
}

test("a healthy box: samples stream from one loop process; the snapshot shows every GPU, its readings and its processes", async (t) => {
  const rig = await start(
    t,
    (s) => {
      s.processes.push({ pid: process.pid, gpu_uuid: s.gpus[1]!.uuid, used_memory_mib: 40_000, process_name: "/usr/bin/python3" });
    },
    { slowPollMs: 60_000 },
  );
  await wait("ten samples and the process list", () => rig.samples.length >= 10 && rig.monitor.snapshot().processes.length === 1);
  assert.deepEqual(rig.raised.filter((f) => f.kind.startsWith("xid_")), [], "boot history in the kernel log is not news");
  const snap = rig.monitor.snapshot();
  assert.equal(snap.nvidiaSmi.state, "sampling");
  assert.equal(snap.nvidiaSmi.remappedRows, true);
  assert.deepEqual(snap.kernelLog, { source: "kmsg", path: rig.kmsg });
  assert.deepEqual(
    snap.gpus.map((g) => [g.index, g.busId, g.condition, g.sample?.memoryUsedMib, g.processes.map((p) => p.pid)]),
    [
      [0, "00000000:1B:00.0", "ok", 4, []],
      [1, "00000000:3B:00.0", "ok", 40_004, [process.pid]],
    ],
  );
  // Probe, loop, remapped rows, compute apps: never a process per sample.
  assert.equal(rig.spawned(), 4, `${rig.spawned()} processes for ${rig.samples.length} samples`);
  assert.ok(rig.maxAlive() <= 2, "the loop and at most one one-shot query");
  assert.ok(rig.logs.some((l) => l.event === "gpu.nvidia_smi.fields"));
  assert.ok(rig.logs.some((l) => l.event === "gpu.kernel_log.source"));
});

test("thermal slowdown: raised after sustain_samples hot samples, once, and cleared when it ends", async (t) => {
  const rig = await start(t);
  await wait("samples", () => rig.samples.length >= 2);
  await rig.box.set((s) => {
    s.gpus[1]!.clocks_event_reasons = 0x4 | 0x20; // SW power cap (normal) + SW thermal slowdown
    s.gpus[1]!.temperature_gpu = 92;
  });
  await wait("the thermal fault", () => rig.raised.some((f) => f.id === "thermal_slowdown@gpu1"));
  const hotSamples = rig.samples.filter((s) => s.gpus[1]?.reasons.swThermalSlowdown === true).length;
  assert.ok(hotSamples >= 3, `raised after ${hotSamples} hot samples`);
  await wait("over temperature too", () => rig.active().includes("over_temperature@gpu1"));
  await rig.box.set((s) => {
    s.gpus[1]!.clocks_event_reasons = 0x4;
    s.gpus[1]!.temperature_gpu = 60;
  });
  await wait("both to clear", () => rig.active().length === 0);
  assert.deepEqual(rig.raised.map((f) => f.id).sort(), ["over_temperature@gpu1", "thermal_slowdown@gpu1"]);
  assert.deepEqual(rig.cleared.map((f) => f.id).sort(), ["over_temperature@gpu1", "thermal_slowdown@gpu1"]);
  assert.ok(!rig.raised.some((f) => f.kind === "power_brake" || f.kind === "hw_slowdown"), "SW power cap is not a fault");
  const log = rig.logs.find((l) => l.event === "gpu.fault.raised");
  assert.equal((log?.fault as GpuFault | undefined)?.kind !== undefined, true);
  assert.ok(rig.logs.some((l) => l.event === "gpu.fault.cleared"));
});

test("a hung driver: driver_unresponsive within the deadline, the monitor keeps serving, and no pile of processes", async (t) => {
  const rig = await start(t, undefined, { deadline: 700 });
  // A loaded machine can start the first nvidia-smi slower than 700 ms: wait until that has cleared too.
  await wait("samples and no fault", () => rig.samples.length >= 2 && rig.active().length === 0);
  const before = rig.raised.length;
  const clearedBefore = rig.cleared.length;
  await rig.box.set((s) => {
    s.failure = "hang";
  });
  await wait("driver_unresponsive", () => rig.raised.slice(before).some((f) => f.id === "driver_unresponsive@all"));
  const fault = rig.raised.slice(before).find((f) => f.id === "driver_unresponsive@all")!;
  const lastSample = Math.max(...rig.samples.map((s) => s.at).filter((at) => at <= fault.since));
  const late = fault.since - lastSample;
  assert.ok(late >= 700 && late < 700 + 500, `reported ${late} ms after the last sample (deadline 700 ms)`);
  assert.equal(fault.severity, "down");
  assert.ok(rig.logs.some((l) => l.event === "gpu.driver.unresponsive"));

  // Still serving: snapshots answer, the kernel log is still read.
  assert.equal(rig.monitor.snapshot().gpus[0]!.condition, "down");
  appendFileSync(rig.kmsg, "4,2,200,-;NVRM: Xid (PCI:0000:3b:00): 119, pid='<unknown>', name=<unknown>, Timeout after 6s of waiting for RPC response from GPU1 GSP!\n");
  await wait("the XID while nvidia-smi hangs", () => rig.active().includes("xid_driver_timeout@gpu1"));

  const spawnedBefore = rig.spawned();
  await new Promise((r) => setTimeout(r, 1_500));
  assert.ok(rig.spawned() - spawnedBefore <= 3, `${rig.spawned() - spawnedBefore} processes in 1.5 s of hang`);
  assert.ok(rig.maxAlive() <= 2, `at most ${rig.maxAlive()} nvidia-smi alive at once`);
  assert.equal(rig.raised.slice(before).filter((f) => f.id === "driver_unresponsive@all").length, 1, "one fact, not a stream");

  await rig.box.set((s) => {
    s.failure = null;
  });
  await wait("recovery", () => rig.cleared.slice(clearedBefore).some((f) => f.id === "driver_unresponsive@all"));
  assert.equal(rig.monitor.snapshot().nvidiaSmi.state, "sampling");
});

test("a GPU lost mid-loop, then back: gpu_lost raised on that GPU and cleared", async (t) => {
  const rig = await start(t, (s) => {
    s.failure_bus_id = s.gpus[1]!.pci_bus_id;
  });
  await wait("samples", () => rig.samples.length >= 2);
  await rig.box.set((s) => {
    s.failure = "gpu_lost";
  });
  await wait("gpu_lost", () => rig.active().includes("gpu_lost@gpu1"));
  const f = rig.monitor.faults().find((x) => x.id === "gpu_lost@gpu1")!;
  assert.deepEqual([f.severity, f.code, f.busId], ["down", "LLMSUP_E_GPU_LOST", "00000000:3B:00.0"]);
  assert.equal(rig.monitor.snapshot().gpus[1]!.condition, "down");
  assert.equal(rig.monitor.snapshot().gpus[0]!.condition, "ok");
  await rig.box.set((s) => {
    s.failure = null;
  });
  await wait("gpu_lost to clear", () => rig.cleared.some((x) => x.id === "gpu_lost@gpu1"));
});

test("no driver at start: driver_not_loaded until the driver answers", async (t) => {
  const rig = await start(t, (s) => {
    s.failure = "driver_not_loaded";
  });
  await wait("driver_not_loaded", () => rig.active().includes("driver_not_loaded@all"));
  assert.equal(rig.monitor.snapshot().nvidiaSmi.state, "failing");
  assert.equal(rig.monitor.snapshot().nvidiaSmi.lastFailure?.code, "LLMSUP_E_GPU_DRIVER_NOT_LOADED");
  await rig.box.set((s) => {
    s.failure = null;
  });
  await wait("it to clear", () => rig.active().length === 0 && rig.cleared.length === 1);
});

test("an old driver with [N/A] cells and a GPU that requires a reset", async (t) => {
  const rig = await start(t, (s) => {
    s.old_driver = true;
    s.gpus[0]!.temperature_memory = null;
    s.gpus[0]!.cells["power.draw"] = "[Unknown Error]";
    s.gpus[1]!.requires_reset = true;
  });
  await wait("requires_reset", () => rig.active().includes("requires_reset@gpu1"));
  const snap = rig.monitor.snapshot();
  assert.ok(snap.nvidiaSmi.fields.includes("clocks_throttle_reasons.active"));
  assert.deepEqual(snap.nvidiaSmi.dropped, ["gpu_recovery_action"]);
  assert.deepEqual([snap.gpus[0]!.sample?.memoryTemperatureC, snap.gpus[0]!.sample?.powerDrawW, snap.gpus[0]!.condition], [undefined, undefined, "ok"]);
  await rig.box.set((s) => {
    s.gpus[1]!.requires_reset = false;
  });
  await wait("requires_reset to clear", () => rig.cleared.some((f) => f.id === "requires_reset@gpu1"));
  assert.equal(rig.monitor.snapshot().gpus[1]!.busId, "00000000:3B:00.0");
});

test("row remap pending from --query-remapped-rows, and XIDs from the kernel log mapped to GPU indexes", async (t) => {
  const rig = await start(t);
  await wait("samples", () => rig.samples.length >= 2);
  await rig.box.set((s) => {
    s.gpus[0]!.remapped_rows = { correctable: 0, uncorrectable: 1, pending: true, failure: false };
  });
  appendFileSync(rig.kmsg, "4,3,300,-;NVRM: Xid (PCI:0000:1b:00): 63, pid='<unknown>', name=<unknown>, Row Remapper: New row marked for remapping, reset gpu to activate.\n");
  appendFileSync(rig.kmsg, "4,4,400,-;NVRM: Xid (0000:3b:00): 13, 0002 00000000 0000a1c0 00000d94 00000000 00000000\n");
  await wait("both remap facts", () => rig.active().includes("row_remap_pending@gpu0") && rig.active().includes("xid_row_remap_pending@gpu0"));
  assert.ok(!rig.active().some((id) => id.startsWith("xid_app_error")), "a single XID 13 is only logged");
  assert.ok(rig.logs.some((l) => l.event === "gpu.xid" && l.xid === 13 && l.disposition === "log"));
});
