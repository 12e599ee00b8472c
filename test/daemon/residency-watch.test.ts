/**
 * The check that GPU tiers run on their GPUs, on a clock the test moves: the
 * GPU monitor's reading (of unknown age) can only say "on the GPU"; an
 * absence is confirmed by a fresh reading before the backend is found on the
 * CPU, and only a fresh reading clears it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { validateConfigText } from "../../src/config/load.ts";
import { ResidencyWatch } from "../../src/daemon/residency-watch.ts";
import type { BackendState } from "../../src/supervisor/states.ts";
import type { VramHolder } from "../../src/supervisor/vram.ts";
import { flush, ManualClock } from "../helpers/clock.ts";
import { memoryLogger } from "../helpers/supervise.ts";

const CONFIG = (() => {
  // [gpu] interval 5s: a check at most every 10s; [health] deep_interval 60s: judged after 60s of serving.
  const v = validateConfigText(`[[backend]]\nname = "vllm-gpu0"\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\ngpus = [0]\n  [backend.process]\n  command = ["/opt/vllm/bin/python"]\n[[route]]\nmodel = "m"\ntiers = [{ backend = "vllm-gpu0", model = "m" }]\n`, { hostname: "box" });
  if (!v.ok) assert.fail(v.problems.map((p) => p.message).join("\n"));
  return v.config;
})();

const OFF = (pid: number) => `pid ${pid} is not on GPU 0 (nvidia-smi lists no memory of its process group): it is answering from the CPU, slowly`;

function setup() {
  const clock = new ManualClock();
  /** Pids in the GPU monitor's last reading, and in a fresh one; a fresh one fails while `smiDown`. */
  const world = { monitorPids: [] as number[], freshPids: [] as number[], smiDown: false, freshReadings: 0 };
  const proc = { pid: 4242, state: "ready" as BackendState, since: clock.now() };
  /** Process groups: vLLM 4242's engine child 4250 and a later generation's 5000/5010 in their groups, a stranger 777. */
  const groups = new Map([[4250, 4242], [5010, 5000], [777, 777]]);
  const reports: [string, string | undefined][] = [];
  const holder = (pid: number): VramHolder => ({ pid, gpu: 0, usedMemoryMib: 70_000 });
  const watch = new ResidencyWatch({
    clock,
    log: memoryLogger().logger,
    monitor: {
      snapshot: () => ({ processes: world.monitorPids.map((pid) => ({ pid })), gpus: [{ index: 0 }] }),
      vramProbe: () => ({
        holders: async () => {
          world.freshReadings++;
          if (world.smiDown) throw new Error("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver");
          return world.freshPids.map(holder);
        },
      }),
    },
    config: () => CONFIG,
    backends: () => [{ name: "vllm-gpu0", state: proc.state, pid: proc.pid }],
    servingSince: () => proc.since,
    report: (name, offGpu) => void reports.push([name, offGpu]),
    pgrpOf: async (pid) => groups.get(pid),
  });
  /** The next check, 10s on. */
  const check = async () => {
    clock.advance(10_000);
    watch.sampled();
    await flush();
  };
  return { world, proc, reports, check };
}

test("nothing is judged in the first minute of serving; then a fresh reading without its process group finds it on the CPU, once", async () => {
  const { world, reports, check } = setup();
  world.monitorPids = [777];
  for (let i = 0; i < 5; i++) await check();
  assert.deepEqual(reports, [], "50s of serving: not yet");
  assert.equal(world.freshReadings, 0);
  await check();
  assert.deepEqual(reports, [["vllm-gpu0", OFF(4242)]]);
  assert.equal(world.freshReadings, 1, "the monitor's reading only said it was missing: a fresh one confirmed it");
  await check();
  assert.deepEqual(reports, [["vllm-gpu0", OFF(4242)]], "said once");
});

test("the monitor's reading showing its process group is enough to say it is on the GPU: no fresh reading, no finding", async () => {
  const { world, reports, check } = setup();
  world.monitorPids = [4250, 777];
  for (let i = 0; i < 8; i++) await check();
  assert.deepEqual(reports, []);
  assert.equal(world.freshReadings, 0);
});

test("missing from the monitor's reading but in a fresh one: on the GPU (the monitor had not read it yet)", async () => {
  const { world, reports, check } = setup();
  world.freshPids = [4250];
  for (let i = 0; i < 8; i++) await check();
  assert.deepEqual(reports, []);
  assert.ok(world.freshReadings >= 1);
});

test("once found on the CPU, only a fresh reading clears it; an nvidia-smi that cannot tell leaves the finding standing", async () => {
  const { world, reports, check } = setup();
  for (let i = 0; i < 6; i++) await check();
  assert.deepEqual(reports, [["vllm-gpu0", OFF(4242)]]);
  world.monitorPids = [4250];
  await check();
  assert.deepEqual(reports.length, 1, "the monitor's reading may be from before: a fresh one still says it is missing");
  world.smiDown = true;
  world.freshPids = [4250];
  await check();
  assert.deepEqual(reports.length, 1, "cannot tell: the finding stands");
  world.smiDown = false;
  await check();
  assert.deepEqual(reports, [["vllm-gpu0", OFF(4242)], ["vllm-gpu0", undefined]]);
});

test("a finding goes with its process: a new process is judged afresh, after its own first minute", async () => {
  const { world, proc, reports, check } = setup();
  for (let i = 0; i < 6; i++) await check();
  assert.deepEqual(reports, [["vllm-gpu0", OFF(4242)]]);
  proc.state = "exited";
  await check();
  assert.deepEqual(reports.at(-1), ["vllm-gpu0", undefined], "not serving: nothing to say");
  Object.assign(proc, { pid: 5000, state: "ready", since: proc.since + 70_000 });
  world.freshPids = [];
  await check();
  assert.equal(reports.length, 2, "the new process has not served a minute yet");
  for (let i = 0; i < 6; i++) await check();
  assert.deepEqual(reports.at(-1), ["vllm-gpu0", OFF(5000)]);
});
