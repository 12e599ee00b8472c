/** A GPU tier answering from the CPU: its process holds no GPU memory while it serves, so it is degraded until it is back on its GPU. */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { readFileSync, writeFileSync } from "node:fs";
import { writeWrapper } from "../../src/sim/gpu/cli.ts";
import { defaultGpuState, readGpuState, writeGpuState } from "../../src/sim/gpu/state.ts";
import { startDaemon, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";
import { tempDir } from "../helpers/tmp.ts";

type BackendStatus = { name: string; state: string; pid: number | null; health: string; health_reason: string };

test("a llama.cpp GPU tier that loaded onto the CPU is degraded, naming its pid and GPU, and healthy again once its process holds GPU memory", async (t) => {
  const gpuDir = tempDir(t);
  const state = path.join(gpuDir, "gpus.json");
  await writeGpuState(state, defaultGpuState(1));
  const smi = await writeWrapper(state, path.join(gpuDir, "nvidia-smi"));
  const files = await writeDaemonConfig(
    t,
    [{ name: "primary", kind: "llamacpp", extra: "gpus = [0]", args: ["--on-cpu", "--gpus", "0", "--gpu-state", state, "--model-mib", "5000"] }],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }]\n`,
    // Still [health]: a process is judged once it has served deep_interval.
    `deep_interval = "1s"\n`,
  );
  writeFileSync(files.config, readFileSync(files.config, "utf8").replace("[gpu]\nenabled = false\n", `[gpu]\nnvidia_smi = "${smi}"\ninterval = "300ms"\ndeadline = "3s"\nkernel_log = "off"\n`));
  const d = await startDaemon(t, files);

  const primary = (s: { backends: unknown[] }) => s.backends.find((b) => (b as BackendStatus).name === "primary") as BackendStatus;
  const degraded = await waitStatus(d, "primary degraded for answering from the CPU", (s) => primary(s).state === "ready" && primary(s).health === "degraded", 20_000);
  const p = primary(degraded.json);
  assert.equal(p.health_reason, `pid ${p.pid} is not on GPU 0 (nvidia-smi lists no memory of its process group): it is answering from the CPU, slowly`);
  assert.deepEqual((await readGpuState(state)).processes, [], "nothing of it on the GPU");
  const r = await fetch(`http://127.0.0.1:${files.ports.primary}/health`);
  assert.equal(r.status, 200, "it answers all the same");

  // Back on the GPU: its process takes the memory again, and the next fresh reading clears the finding.
  assert.equal((await fetch(`http://127.0.0.1:${files.ports.primary}/_sim/fault`, { method: "DELETE" })).status, 200);
  const back = await waitStatus(d, "primary healthy on its GPU", (s) => primary(s).health === "healthy", 20_000);
  assert.equal(primary(back.json).pid, p.pid, "the same process: no restart");
  assert.deepEqual((await readGpuState(state)).processes.map((x) => [x.pid, x.used_memory_mib]), [[p.pid, 5000]]);
});
