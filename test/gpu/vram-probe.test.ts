/** The supervisor's VramProbe against the simulated nvidia-smi. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { isLlmsupError } from "../../src/errors/error.ts";
import type { SmiRun } from "../../src/gpu/runner.ts";
import { SmiVramProbe } from "../../src/gpu/vram-probe.ts";
import { realSmiRunner, simBox } from "./helpers.ts";

test("holders: the processes on the asked GPUs, by nvidia-smi index, with their memory", async (t) => {
  const box = await simBox(
    t,
    (s) => {
      s.processes.push({ pid: process.pid, gpu_uuid: s.gpus[1]!.uuid, used_memory_mib: 40_000, process_name: "VLLM::EngineCore" });
      s.processes.push({ pid: process.ppid, gpu_uuid: s.gpus[2]!.uuid, used_memory_mib: 1_234, process_name: "/usr/bin/python3" });
    },
    3,
  );
  const runner = realSmiRunner(box.nvidiaSmi, 5_000);
  const calls: string[][] = [];
  const probe = new SmiVramProbe({ runner: { query: (a: readonly string[]): Promise<SmiRun> => (calls.push([...a]), runner.query(a)) } });
  assert.deepEqual(await probe.holders([1]), [{ pid: process.pid, gpu: 1, usedMemoryMib: 40_000, processName: "VLLM::EngineCore" }]);
  assert.deepEqual(await probe.holders([0]), []);
  assert.deepEqual(
    (await probe.holders([0, 1, 2])).map((h) => [h.gpu, h.pid]),
    [
      [1, process.pid],
      [2, process.ppid],
    ],
  );
  assert.ok(calls.some((c) => c[0] === "--query-gpu=index,uuid"), "without a monitor it asks for the numbering");

  // With a monitor's GPU map, one query is enough.
  calls.length = 0;
  const known = new SmiVramProbe({
    runner: { query: (a: readonly string[]): Promise<SmiRun> => (calls.push([...a]), runner.query(a)) },
    gpus: () => new Map([[1, { uuid: "GPU-5ca1ab1f-1001-4001-8001-deadbeef0001" }], [2, { uuid: "GPU-5ca1ab20-1002-4002-8002-deadbeef0002" }]]),
  });
  assert.equal((await known.holders([1])).length, 1);
  assert.equal(calls.length, 1);
});

test("a failing or hung nvidia-smi rejects with a coded error: cannot tell is never nobody", async (t) => {
  const box = await simBox(t, (s) => {
    s.failure = "driver_not_loaded";
  });
  const probe = new SmiVramProbe({ runner: realSmiRunner(box.nvidiaSmi, 500) });
  await assert.rejects(probe.holders([0]), (e) => isLlmsupError(e) && e.code === "LLMSUP_E_GPU_DRIVER_NOT_LOADED" && /cannot tell which processes hold GPU memory/.test(e.message));

  await box.set((s) => {
    s.failure = "hang";
  });
  const started = Date.now();
  await assert.rejects(probe.holders([0]), (e) => isLlmsupError(e) && e.code === "LLMSUP_E_GPU_UNRESPONSIVE");
  assert.ok(Date.now() - started < 2_000);

  const missing = new SmiVramProbe({ runner: realSmiRunner("/nonexistent/nvidia-smi", 500) });
  await assert.rejects(missing.holders([0]), (e) => isLlmsupError(e) && e.code === "LLMSUP_E_GPU_SMI_MISSING");
});
