/** `llmsup gpus clear` against a running daemon, through its real control socket, on a simulated GPU box. */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { readFileSync, writeFileSync } from "node:fs";
import { writeWrapper } from "../../src/sim/gpu/cli.ts";
import { defaultGpuState, updateGpuState, writeGpuState } from "../../src/sim/gpu/state.ts";
import { startDaemon, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";

interface GpusJson {
  gpus: { gpus: { index: number; faults: { id: string; recovery: string | null }[] }[]; faults: { id: string }[] } | null;
}

test("an ECC rise waits for a reset; `llmsup gpus clear 0 --reason` clears it with the reason, says when there is nothing left, and refuses an unknown GPU", async (t) => {
  const files = await writeDaemonConfig(
    t,
    [{ name: "primary", kind: "llamacpp", extra: "gpus = [0]" }],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }]\n`,
  );
  const state = path.join(files.dir, "gpus.json");
  await writeGpuState(state, defaultGpuState(2));
  const smi = await writeWrapper(state, path.join(files.dir, "nvidia-smi"));
  writeFileSync(files.config, readFileSync(files.config, "utf8").replace("[gpu]\nenabled = false\n", `[gpu]\nnvidia_smi = "${smi}"\ninterval = "200ms"\ndeadline = "3s"\nkernel_log = "off"\nevent_hold = "1s"\n`));
  const d = await startDaemon(t, files);
  await waitStatus(d, "GPUs sampled", (s) => ((s as unknown as GpusJson).gpus?.gpus.length ?? 0) === 2);

  await updateGpuState(state, (s) => {
    s.gpus[0]!.ecc_uncorrected_volatile = 2;
  });
  const raised = await waitStatus(d, "the ECC rise", (s) => ((s as unknown as GpusJson).gpus?.faults ?? []).some((f) => f.id === "ecc_uncorrected@gpu0"));
  assert.deepEqual(
    (raised.json as unknown as GpusJson).gpus!.gpus[0]!.faults.map((f) => [f.id, f.recovery]),
    [["ecc_uncorrected@gpu0", "reset_gpu"]],
  );
  // Far past event_hold (1s): an ECC rise is not cleared by time.
  await new Promise((r) => setTimeout(r, 2_500));
  const still = await waitStatus(d, "status", () => true);
  assert.deepEqual(((still.json as unknown as GpusJson).gpus?.faults ?? []).map((f) => f.id), ["ecc_uncorrected@gpu0"]);

  const clear = await d.cli("gpus", "clear", "0", "--reason", "drained and reset by hand");
  assert.equal(clear.code, 0, clear.stderr);
  assert.match(clear.stdout, /^GPU 0: cleared 1 fault:\n {2}ecc_uncorrected: GPU 0: uncorrected ECC errors rose from 0 to 2\n {2}\(cleared by the operator: drained and reset by hand \([^)]+\)\)\n$/);
  const after = await waitStatus(d, "the clear in status and events", (s) => ((s as unknown as GpusJson).gpus?.faults ?? []).length === 0 && s.events.some((e) => e.kind === "gpu_clear"));
  assert.match(after.json.events.find((e) => e.kind === "gpu_clear")!.summary, /^GPU 0: cleared: uncorrected ECC errors rose from 0 to 2/);

  const nothing = await d.cli("gpus", "clear", "0");
  assert.equal(nothing.code, 0, nothing.stderr);
  assert.match(nothing.stdout, /^GPU 0: no event fault to clear/);

  const json = await d.cli("gpus", "clear", "--all", "--json");
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), { ok: true, gpu: null, cleared: [] });

  const unknown = await d.cli("gpus", "clear", "7");
  assert.equal(unknown.code, 64);
  assert.match(unknown.stderr, /^llmsup gpus clear 7: LLMSUP_E_GPU_UNKNOWN: no GPU 7 \(GPUs: 0, 1\)\n$/);

  const neither = await d.cli("gpus", "clear");
  assert.equal(neither.code, 64);
  assert.match(neither.stderr, /name one GPU by its index/);
});
