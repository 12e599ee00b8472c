/**
 * The monitor against an nvidia-smi that no signal can end (asleep in a
 * wedged driver), on manual time: one stuck process, one fact, no pile of
 * new processes, and the monitor keeps answering.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { gpuSchema } from "../../src/config/schema.ts";
import { isLlmsupError } from "../../src/errors/error.ts";
import { GpuMonitor } from "../../src/gpu/monitor.ts";
import type { ClearedFault, GpuFault } from "../../src/gpu/types.ts";
import { flush, ManualClock } from "../helpers/clock.ts";
import { fakeSpawner, type FakeChild } from "./helpers.ts";

const ROW = "0, GPU-0, Fake GPU, 00000000:1B:00.0, 40, 45, 0, 100, 81559, 70.00, 700.00, P0, 0x0000000000000001, Not Active, Not Active, Not Active, Not Active, Not Active, 0, 0, No, None\n";

test("a loop process stuck in the driver: driver_unresponsive once, no new nvidia-smi until it exits, then recovery", async (t) => {
  const clock = new ManualClock(0);
  const loops: FakeChild[] = [];
  const spawn = fakeSpawner((child) => {
    if (child.args.includes("-lms")) {
      child.killable = false;
      loops.push(child);
    } else if (child.args[0]?.startsWith("--query-gpu=")) {
      queueMicrotask(() => {
        child.print(ROW);
        child.exit(0);
      });
    } else queueMicrotask(() => child.exit(0));
  });
  const monitor = new GpuMonitor({
    config: { ...gpuSchema.parse({}), nvidia_smi: "nvidia-smi", interval: 5_000, deadline: 15_000, kernel_log: "off", temperature_limit: 87, memory_full: 0.98, sustain_samples: 3, clear_samples: 3, event_hold: 1_800_000 },
    spawn,
    clock,
    slowPollMs: 3_600_000,
  });
  t.after(() => monitor.stop());
  const raised: GpuFault[] = [];
  const cleared: ClearedFault[] = [];
  monitor.on("fault.raised", (f) => raised.push(f));
  monitor.on("fault.cleared", (f) => cleared.push(f));
  await monitor.start();
  await flush();
  assert.equal(loops.length, 1, "probe answered, loop started");
  const loop = loops[0]!;
  assert.deepEqual(loop.args.slice(-2), ["-lms", "5000"]);

  clock.advance(5_000);
  loop.print(ROW);
  await flush();
  assert.equal(monitor.snapshot().gpus[0]!.condition, "ok");

  // The driver wedges: no sample for the deadline.
  clock.advance(14_999);
  assert.equal(raised.length, 0);
  clock.advance(1);
  assert.deepEqual(raised.map((f) => [f.id, f.severity, f.code]), [["driver_unresponsive@all", "down", "LLMSUP_E_GPU_UNRESPONSIVE"]]);
  assert.deepEqual(loop.signals, ["SIGKILL"]);
  assert.ok(loop.abandoned);

  // An hour passes with the process stuck: nothing new is started, nothing new is raised, the monitor answers.
  const spawnedBefore = spawn.children.length;
  for (let i = 0; i < 720; i++) clock.advance(5_000);
  await flush();
  assert.equal(spawn.children.length, spawnedBefore, "no pile of nvidia-smi processes");
  assert.equal(raised.length, 1, "one fact, not a stream");
  assert.equal(monitor.snapshot().nvidiaSmi.state, "unresponsive");
  assert.equal(monitor.snapshot().gpus[0]!.condition, "down");
  // The supervisor's VRAM check is refused at once instead of starting another process.
  await assert.rejects(monitor.vramProbe().holders([0]), (e) => isLlmsupError(e) && e.code === "LLMSUP_E_GPU_UNRESPONSIVE" && /stuck for 1h/.test(e.message));
  assert.equal(spawn.children.length, spawnedBefore);

  // The driver lets go: the monitor probes again and samples; the fault clears after clear_samples.
  loop.exit(null, "SIGKILL");
  await flush();
  clock.advance(5_000);
  await flush();
  assert.equal(loops.length, 2, "a new loop after a new probe");
  for (let i = 0; i < 2; i++) {
    clock.advance(5_000);
    loops[1]!.print(ROW);
    await flush();
  }
  assert.deepEqual(cleared.map((f) => [f.id, f.clearReason]), [["driver_unresponsive@all", "not seen for 3 samples"]]);
  assert.equal(monitor.snapshot().gpus[0]!.condition, "ok");
});
