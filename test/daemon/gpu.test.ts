/** GPU faults reach the router: a GPU that needs a reset takes the tiers on it out of service until it is back. */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { writeFileSync, readFileSync } from "node:fs";
import { writeWrapper } from "../../src/sim/gpu/cli.ts";
import { defaultGpuState, updateGpuState, writeGpuState } from "../../src/sim/gpu/state.ts";
import { startDaemon, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";

test("a GPU fault takes the backend on that GPU DOWN, the route falls back, and comes back when the fault clears", async (t) => {
  const files = await writeDaemonConfig(
    t,
    [
      { name: "primary", kind: "llamacpp", extra: "gpus = [0]", args: ["--gpus", "0"] },
      { name: "fallback", kind: "llamacpp" },
    ],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`,
  );
  const state = path.join(files.dir, "gpus.json");
  await writeGpuState(state, defaultGpuState(2));
  const smi = await writeWrapper(state, path.join(files.dir, "nvidia-smi"));
  writeFileSync(files.config, readFileSync(files.config, "utf8").replace("[gpu]\nenabled = false\n", `[gpu]\nnvidia_smi = "${smi}"\ninterval = "300ms"\ndeadline = "3s"\nkernel_log = "off"\nsustain_samples = 1\nclear_samples = 1\n`));
  // The simulated llama-server loads onto the simulated GPU 0 (and is seen there, not on the CPU).
  const d = await startDaemon(t, files, { LLMSUP_SIM_GPU_STATE: state });
  const ok = await waitStatus(d, "ready on tier 0 with GPUs sampled", (s, code) => code === 0 && s.backends.every((b) => b.state === "ready"));
  assert.equal(ok.json.router.routes[0]!.serving_tier, 0);

  await updateGpuState(state, (s) => {
    s.gpus[0]!.requires_reset = true;
  });
  const degraded = await waitStatus(d, "fallback after the GPU fault", (s) => s.router.routes[0]!.serving_tier === 1);
  assert.equal(degraded.code, 1);
  const primary = degraded.json.backends.find((b) => b.name === "primary")! as unknown as { state: string; health: string; health_reason: string };
  assert.equal(primary.state, "ready", "the process itself is fine");
  assert.equal(primary.health, "down");
  assert.match(primary.health_reason, /^GPU 0: /);
  const human = await d.cli("status");
  assert.match(human.stdout, /GPUs/);
  assert.match(human.stdout, /0 NVIDIA H100 80GB HBM3 .* down/);

  await updateGpuState(state, (s) => {
    s.gpus[0]!.requires_reset = false;
  });
  const back = await waitStatus(d, "back on tier 0", (s) => s.router.routes[0]!.serving_tier === 0);
  assert.equal(back.code, 0);
  assert.ok(back.json.events.some((e) => e.kind === "gpu_fault") && back.json.events.some((e) => e.kind === "gpu_clear"));
});
