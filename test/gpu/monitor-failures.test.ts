/**
 * nvidia-smi failing in loop mode, read right on any number of GPUs: the
 * simulated nvidia-smi as a real child process prints its error line and
 * exits; the monitor raises one fault for it, keeps it (re-probes that fail
 * the same way change nothing), and clears it once when the GPUs answer again.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { gpuSchema } from "../../src/config/schema.ts";
import { GpuMonitor } from "../../src/gpu/monitor.ts";
import { spawnChild, type ProgramSpawner } from "../../src/gpu/spawn.ts";
import { realClock } from "../../src/platform/clock.ts";
import type { SimSmiFailure } from "../../src/sim/gpu/state.ts";
import type { ClearedFault, GpuFault } from "../../src/gpu/types.ts";
import { simBox, waitUntil } from "./helpers.ts";

const CASES: readonly [SimSmiFailure, string, string][] = [
  ["driver_not_loaded", "driver_not_loaded@all", "LLMSUP_E_GPU_DRIVER_NOT_LOADED"],
  ["gpu_lost", "gpu_lost@gpu0", "LLMSUP_E_GPU_LOST"],
];

for (const gpus of [1, 4]) {
  for (const [failure, id, code] of CASES) {
    test(`${failure} in loop mode on ${gpus === 1 ? "one GPU" : `${gpus} GPUs`}: exactly one raise while it lasts, exactly one clear after`, async (t) => {
      const box = await simBox(t, () => {}, gpus);
      let spawned = 0;
      const spawn: ProgramSpawner = (file, args) => {
        spawned++;
        return spawnChild(file, args);
      };
      const monitor = new GpuMonitor({
        config: { ...gpuSchema.parse({}), nvidia_smi: box.nvidiaSmi, interval: 100, deadline: 3_000, kernel_log: "off", sustain_samples: 3, clear_samples: 3 },
        spawn,
        // Real processes (the simulated nvidia-smi) in real time.
        clock: realClock,
        slowPollMs: 3_600_000,
      });
      const raised: GpuFault[] = [];
      const cleared: ClearedFault[] = [];
      let samples = 0;
      monitor.on("fault.raised", (f) => raised.push(f));
      monitor.on("fault.cleared", (f) => cleared.push(f));
      monitor.on("sample", () => samples++);
      t.after(() => monitor.stop());
      await monitor.start();
      await waitUntil("samples", () => samples >= 3, 10_000);

      await box.set((s) => {
        s.failure = failure;
        s.failure_bus_id = s.gpus[0]!.pci_bus_id;
      });
      await waitUntil(id, () => raised.some((f) => f.id === id), 10_000);
      assert.equal(monitor.snapshot().nvidiaSmi.lastFailure?.code, code);
      // Let it fail again and again: every re-probe fails the same way.
      const before = spawned;
      await waitUntil("four re-probes", () => spawned >= before + 4, 15_000);
      assert.deepEqual(
        raised.map((f) => f.id),
        [id],
        "one raise, nothing else (never nvidia_smi_failed)",
      );
      assert.deepEqual(cleared.map((f) => f.id), [], "never cleared while it lasts");
      assert.equal(monitor.snapshot().gpus[0]!.condition, "down");
      assert.deepEqual(monitor.faults().map((f) => f.id), [id]);

      await box.set((s) => {
        s.failure = null;
      });
      await waitUntil(`${id} to clear`, () => cleared.some((f) => f.id === id), 15_000);
      const after = samples;
      await waitUntil("more samples", () => samples >= after + 5, 10_000);
      await sleep(200);
      assert.deepEqual(raised.map((f) => f.id), [id], "one raise in all");
      assert.deepEqual(cleared.map((f) => f.id), [id], "one clear in all");
      assert.deepEqual(monitor.faults(), []);
      assert.equal(monitor.snapshot().nvidiaSmi.state, "sampling");
    });
  }
}
