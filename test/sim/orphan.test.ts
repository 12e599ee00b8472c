/** The vLLM orphan case: an engine child that survives its parent keeps the GPU memory listed until it is really gone. */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { defaultGpuState, pidAlive, writeGpuState } from "../../src/sim/gpu/state.ts";
import { runLlmsup } from "../helpers/cli.ts";
import { startSim } from "../helpers/sim.ts";
import { tempDir } from "../helpers/tmp.ts";

async function computeApps(state: string): Promise<{ pid: number; uuid: string; mib: number }[]> {
  const r = await runLlmsup(["sim", "nvidia-smi", "--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits"], { env: { LLMSUP_SIM_GPU_STATE: state } });
  assert.equal(r.code, 0, r.stdout);
  return r.stdout
    .trim()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => {
      const [pid, uuid, mib] = l.split(", ");
      return { pid: Number(pid), uuid: uuid!, mib: Number(mib) };
    });
}

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test("SIGKILL of the vLLM API server leaves its engine holding the GPU memory until the engine's pid is gone", async (t) => {
  const dir = tempDir(t);
  const state = path.join(dir, "gpus.json");
  await writeGpuState(state, defaultGpuState(2));
  const args = ["--kind", "vllm", "--port", "0", "--load-time", "0s", "--gpus", "0", "--gpu-state", state, "--model", "m"];

  const first = await startSim(t, args);
  const apps = await computeApps(state);
  assert.equal(apps.length, 1);
  const engine = apps[0]!;
  assert.notEqual(engine.pid, first.pid, "the memory belongs to the engine child, not the API server");
  assert.equal(engine.mib, Math.round(81559 * 0.9));
  assert.equal(engine.uuid, defaultGpuState(2).gpus[0]!.uuid);

  process.kill(first.pid, "SIGKILL");
  assert.deepEqual(await first.exited, { code: null, signal: "SIGKILL" });
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(pidAlive(engine.pid), "the engine survived its parent");
  assert.deepEqual(await computeApps(state), [engine], "its memory is still listed");

  // A new vLLM on the same GPU cannot get its memory: vLLM's own refusal.
  const second = await startSim(t, args, { waitFor: "nothing" });
  assert.deepEqual(await second.exited, { code: 1, signal: null });
  assert.match(second.stderr(), /ValueError: Free memory on device \(\d+\.\d+\/79\.65 GiB\) on startup is less than desired GPU memory utilization \(0\.9, 71\.68 GiB\)/);

  // The orphan still belongs to the first process group: killing the group frees the GPU.
  first.killGroup("SIGKILL");
  await until("the engine to die", () => !pidAlive(engine.pid));
  assert.deepEqual(await computeApps(state), []);
  const third = await startSim(t, args);
  assert.equal((await computeApps(state)).length, 1);
  third.killGroup("SIGTERM");
  await third.exited;
});

test("a stop of the process group takes the engine along and removes its memory cleanly", async (t) => {
  const dir = tempDir(t);
  const state = path.join(dir, "gpus.json");
  await writeGpuState(state, defaultGpuState(1));
  const sim = await startSim(t, ["--kind", "vllm", "--port", "0", "--load-time", "0s", "--gpus", "0", "--gpu-state", state, "--model", "m"]);
  const [engine] = await computeApps(state);
  assert.ok(engine);
  sim.killGroup("SIGTERM");
  assert.deepEqual(await sim.exited, { code: 0, signal: null });
  await until("the engine to exit", () => !pidAlive(engine.pid));
  const raw = JSON.parse(await (await import("node:fs/promises")).readFile(state, "utf8")) as { processes: unknown[] };
  assert.deepEqual(raw.processes, [], "a clean exit unregisters the memory");
});

test("llama-server and Ollama hold memory in their own process; a clean exit releases it", async (t) => {
  const dir = tempDir(t);
  const state = path.join(dir, "gpus.json");
  await writeGpuState(state, defaultGpuState(2));
  const llama = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", "--gpu-state", state, "--gpus", "1", "--model-mib", "5000"]);
  await until("llama-server to load", async () => (await fetch(`${llama.url}/health`)).status === 200);
  assert.deepEqual(await computeApps(state), [{ pid: llama.pid, uuid: defaultGpuState(2).gpus[1]!.uuid, mib: 5000 }]);
  const ollama = await startSim(t, ["--kind", "ollama", "--port", "0", "--load-time", "0s", "--gpu-state", state, "--gpus", "1", "--model-mib", "3000"], { env: { CUDA_VISIBLE_DEVICES: "1" } });
  assert.equal((await computeApps(state)).length, 1, "Ollama holds nothing before a model loads");
  await fetch(`${ollama.url}/api/generate`, { method: "POST", body: JSON.stringify({ model: "llama3.1:8b" }) });
  assert.deepEqual((await computeApps(state)).map((a) => [a.pid, a.mib]).sort(), [[llama.pid, 5000], [ollama.pid, 3000]].sort());
  llama.killGroup("SIGTERM");
  ollama.killGroup("SIGTERM");
  await Promise.all([llama.exited, ollama.exited]);
  assert.deepEqual(await computeApps(state), []);
});

test("llama-server refuses to load into a GPU without room: cudaMalloc failed", async (t) => {
  const dir = tempDir(t);
  const state = path.join(dir, "gpus.json");
  const s = defaultGpuState(1);
  s.processes.push({ pid: process.pid, gpu_uuid: s.gpus[0]!.uuid, used_memory_mib: 80_000, process_name: "foreign" });
  await writeGpuState(state, s);
  const sim = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", "--gpu-state", state, "--gpus", "0", "--model-mib", "5000"]);
  assert.deepEqual(await sim.exited, { code: 1, signal: null });
  assert.match(sim.stderr(), /allocating 5000\.00 MiB on device 0: cudaMalloc failed: out of memory/);
});
