/** Where a simulated server's model sits: on its GPUs (needing room there), or on the CPU (holding no GPU memory, still answering). */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { defaultGpuState, readGpuState, withoutDeadProcesses, writeGpuState } from "../../src/sim/gpu/state.ts";
import { startSim } from "../helpers/sim.ts";
import { tempDir } from "../helpers/tmp.ts";
import { waitUntil } from "../helpers/wait.ts";

/** A one-GPU state file; `foreignMib`: memory a live process that is not a simulator holds on it. */
async function gpuState(t: { after(fn: () => unknown): void }, foreignMib = 0): Promise<string> {
  const file = path.join(tempDir(t), "gpus.json");
  const s = defaultGpuState(1);
  if (foreignMib > 0) s.processes.push({ pid: process.pid, gpu_uuid: s.gpus[0]!.uuid, used_memory_mib: foreignMib, process_name: "python3 someone-elses-job.py" });
  await writeGpuState(file, s);
  return file;
}

/** pid → MiB of the live processes listed on the GPU. */
async function listed(file: string): Promise<Record<number, number>> {
  return Object.fromEntries(withoutDeadProcesses(await readGpuState(file)).processes.map((p) => [p.pid, p.used_memory_mib]));
}

async function answers(url: string, model: string): Promise<boolean> {
  const r = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 2 }) });
  await r.arrayBuffer();
  return r.status === 200;
}

for (const kind of ["vllm", "llamacpp"] as const) {
  test(`${kind}: the on_cpu fault drops the process's GPU memory while it keeps answering; cleared, the memory is taken again`, async (t) => {
    const state = await gpuState(t);
    const sim = await startSim(t, ["--kind", kind, "--port", "0", "--load-time", "0s", "--gpus", "0", "--gpu-state", state, "--model", "m", "--model-mib", "5000"]);
    await waitUntil("the model on the GPU", async () => Object.keys(await listed(state)).length === 1);
    const [holder, mib] = Object.entries(await listed(state))[0]!;
    await sim.setFault({ on_cpu: true });
    await waitUntil("its GPU memory dropped", async () => Object.keys(await listed(state)).length === 0);
    assert.ok(await answers(sim.url, "m"), "still answering from the CPU");
    assert.equal((await fetch(`${sim.url}/health`)).status, 200);
    await fetch(`${sim.url}/_sim/fault`, { method: "DELETE" });
    await waitUntil("its GPU memory taken again", async () => (await listed(state))[Number(holder)] === mib);
  });
}

test("llamacpp --on-cpu: the model loads onto the CPU even with no room on the GPU, lists nothing there, and answers", async (t) => {
  const state = await gpuState(t, 80_000);
  const sim = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", "--gpus", "0", "--gpu-state", state, "--model-mib", "5000", "--on-cpu"]);
  await waitUntil("llama-server to load", async () => (await fetch(`${sim.url}/health`)).status === 200);
  assert.match(sim.stdout(), /offloaded 0\/33 layers to GPU/);
  assert.deepEqual(await listed(state), { [process.pid]: 80_000 });
  assert.ok(await answers(sim.url, "m"));
});

test("Ollama: a model load with no room on the GPU fails with the runner's out-of-memory error, and the server stays up", async (t) => {
  const state = await gpuState(t, 80_000);
  const sim = await startSim(t, ["--kind", "ollama", "--port", "0", "--load-time", "0s", "--gpus", "0", "--gpu-state", state, "--model", "m", "--model-mib", "5000"]);
  const r = await fetch(`${sim.url}/api/generate`, { method: "POST", body: JSON.stringify({ model: "m" }) });
  assert.equal(r.status, 500);
  assert.match(await r.text(), /llama runner process has terminated: cudaMalloc failed: out of memory/);
  assert.match(sim.stderr(), /allocating 5000\.00 MiB on device 0: cudaMalloc failed: out of memory/);
  assert.equal((await fetch(`${sim.url}/`)).status, 200);
  assert.deepEqual(await listed(state), { [process.pid]: 80_000 }, "nothing of Ollama's is listed");
});

test("Ollama: on_cpu drops the loaded model's GPU memory, /api/ps shows it all off the GPU (size_vram 0), and it still answers", async (t) => {
  const state = await gpuState(t);
  const sim = await startSim(t, ["--kind", "ollama", "--port", "0", "--load-time", "0s", "--gpus", "0", "--gpu-state", state, "--model", "m", "--model-mib", "3000"]);
  await fetch(`${sim.url}/api/generate`, { method: "POST", body: JSON.stringify({ model: "m" }) });
  assert.deepEqual(await listed(state), { [sim.pid]: 3000 });
  await sim.setFault({ on_cpu: true });
  await waitUntil("its GPU memory dropped", async () => Object.keys(await listed(state)).length === 0);
  const ps = (await (await fetch(`${sim.url}/api/ps`)).json()) as { models: { size: number; size_vram: number }[] };
  assert.equal(ps.models.length, 1);
  assert.equal(ps.models[0]!.size_vram, 0);
  assert.ok(ps.models[0]!.size > 0);
  assert.ok(await answers(sim.url, "m"));
});
