/** No restart into held VRAM: the supervisor with the real nvidia-smi probe over the simulated GPUs. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { GpuMonitor } from "../../src/gpu/monitor.ts";
import { spawnChild } from "../../src/gpu/spawn.ts";
import { realClock } from "../../src/platform/clock.ts";
import { writeWrapper } from "../../src/sim/gpu/cli.ts";
import { defaultGpuState, pidAlive, registerProcess, writeGpuState } from "../../src/sim/gpu/state.ts";
import { Supervisor } from "../../src/supervisor/supervisor.ts";
import { freePort } from "../helpers/sim.ts";
import { EventLog, memoryLogger, realSupervisorDeps, simCommand, testConfig } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";

/** One backend of `kind` (named after it) on GPU 0 of a simulated one-GPU box, the supervisor with the real nvidia-smi probe. */
async function setup(t: { after(fn: () => unknown): void }, kind: "vllm" | "llamacpp" | "ollama" = "vllm") {
  const dir = tempDir(t);
  const state = path.join(dir, "gpus.json");
  await writeGpuState(state, defaultGpuState(1));
  const smi = await writeWrapper(state, path.join(dir, "nvidia-smi"));
  const port = await freePort();
  const config = testConfig(
    dir,
    `[gpu]\nnvidia_smi = "${smi}"\ndeadline = "5s"\nkernel_log = "off"\n[[backend]]\nname = "${kind}"\nkind = "${kind}"\nurl = "http://127.0.0.1:${port}"\ngpus = [0]\n  [backend.process]\n  command = ${simCommand(["--kind", kind, "--port", port, "--load-time", "0s", "--model", "m", "--gpus", "0", "--gpu-state", state])}\n  restart_sec = "300ms"\n  restart_max_delay = "300ms"\n  start_limit_interval = "1m"\n  stop_timeout = "2s"\n\n[[route]]\nmodel = "m"\ntiers = [{ backend = "${kind}", model = "m" }]\n`,
  );
  // Real simulators and the simulated nvidia-smi, in real time: the real spawners and clock.
  const vram = new GpuMonitor({ config: config.gpu, spawn: spawnChild, clock: realClock }).vramProbe();
  const events = new EventLog();
  const sup = new Supervisor(config, { ...realSupervisorDeps(), logger: memoryLogger().logger, onEvent: events.push, vram, readinessPollMs: 50 });
  t.after(() => sup.stopAll());
  return { sup, events, vram, state };
}

test("SIGKILL of the vLLM API server: the next generation starts only once the old engine is gone and its VRAM released", async (t) => {
  const { sup, events, vram } = await setup(t);
  await sup.start("vllm");
  const ready = await events.state("vllm", "ready");
  const [engine] = await vram.holders([0]);
  assert.ok(engine && engine.pid !== ready.pid, "the engine child holds the memory");
  let atRestart: { engineAlive: boolean } | undefined;
  events.waitFor("generation 2 starting", (e) => e.event === "backend.state" && e.to === "starting" && e.generation === 2).then(() => {
    atRestart = { engineAlive: pidAlive(engine.pid) };
  });
  process.kill(ready.pid!, "SIGKILL");
  const exited = await events.state("vllm", "exited");
  assert.equal(exited.exit?.class, "killed");
  await events.state("vllm", "ready", { nth: 2, ms: 15_000 });
  assert.deepEqual(atRestart, { engineAlive: false }, "the orphaned engine was gone before the new process was spawned");
  const holders = await vram.holders([0]);
  assert.equal(holders.length, 1);
  assert.notEqual(holders[0]!.pid, engine.pid);
});

/** A live process that is not the supervisor's, listed as holding 80000 MiB on GPU 0 of `state`. */
async function foreignHolder(t: { after(fn: () => unknown): void }, state: string): Promise<number> {
  const foreign = spawn("sleep", ["60"], { detached: true, stdio: "ignore" });
  t.after(() => {
    try {
      process.kill(foreign.pid!, "SIGKILL");
    } catch {
      /* gone */
    }
  });
  await registerProcess(state, foreign.pid!, [0], 80_000, "python3 someone-elses-job.py");
  return foreign.pid!;
}

test("a foreign process holding the VRAM: gpu_occupied with its pid, the restart budget untouched, started once it is gone", async (t) => {
  const { sup, events, state } = await setup(t);
  const foreign = { pid: await foreignHolder(t, state) };
  await sup.start("vllm");
  const blocked = await events.state("vllm", "blocked", { ms: 15_000 });
  assert.match(blocked.reason, new RegExp(`^gpu_occupied: pid ${foreign.pid} \\(python3 someone-elses-job\\.py\\) holds 80000 MiB on GPU 0`));
  assert.equal(blocked.holder?.pid, foreign.pid);
  assert.equal(blocked.exit?.class, "gpu_occupied");
  assert.deepEqual(sup.snapshot()[0]!.budget, { used: 0, burst: 5 }, "not counted as a failed start");
  process.kill(foreign.pid!, "SIGKILL");
  const ready = await events.state("vllm", "ready", { ms: 15_000 });
  assert.match(events.states("vllm").find((e) => e.to === "starting" && e.generation === 2)!.reason, new RegExp(`GPU memory released by pid ${foreign.pid}`));
  assert.equal(ready.generation, 2);
  assert.equal(sup.snapshot()[0]!.budget.used, 0);
});

for (const [kind, exitClass, evidence] of [
  ["llamacpp", "oom", /cudaMalloc failed: out of memory/],
  ["ollama", "start_failed", /llama runner process has terminated: cudaMalloc failed: out of memory/],
] as const) {
  test(`${kind}: out of GPU memory at load while a foreign process holds it → blocked naming the holder (${exitClass}), one start and no budget spent, started once it is gone`, async (t) => {
    const { sup, events, state } = await setup(t, kind);
    const foreign = await foreignHolder(t, state);
    await sup.start(kind);
    const blocked = await events.state(kind, "blocked", { ms: 15_000 });
    assert.equal(blocked.reason, `${exitClass}: pid ${foreign} (python3 someone-elses-job.py) holds 80000 MiB on GPU 0; waiting for it to go (restart budget untouched)`);
    assert.deepEqual(blocked.holder, { pid: foreign, gpu: 0, usedMemoryMib: 80_000, processName: "python3 someone-elses-job.py" });
    assert.equal(blocked.exit?.class, exitClass);
    assert.match(exitClass === "oom" ? (blocked.exit?.evidence ?? "") : (blocked.exit?.reason ?? ""), evidence);
    assert.deepEqual(sup.snapshot()[0]!.budget, { used: 0, burst: 5 }, "not counted as a failed start");
    // It waits: no restart loop while the holder lives.
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal(events.states(kind).filter((e) => e.to === "starting").length, 1);
    assert.equal(sup.snapshot()[0]!.state, "blocked");
    process.kill(foreign, "SIGKILL");
    const ready = await events.state(kind, "ready", { ms: 15_000 });
    assert.equal(ready.generation, 2);
    assert.match(events.states(kind).find((e) => e.to === "starting" && e.generation === 2)!.reason, new RegExp(`GPU memory released by pid ${foreign}`));
    assert.equal(sup.snapshot()[0]!.budget.used, 0);
  });
}
