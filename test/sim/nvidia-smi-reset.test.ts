/** `nvidia-smi -r` of the simulated nvidia-smi: refused while a process holds the GPU, otherwise the GPU's reset-only conditions are gone. */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { PassThrough } from "node:stream";
import { spawnSync } from "node:child_process";
import type { TestContext } from "node:test";
import { runIo, runLlmsup } from "../helpers/cli.ts";
import { tempDir } from "../helpers/tmp.ts";
import { defaultGpuState, readGpuState, writeGpuState, type SimGpuState } from "../../src/sim/gpu/state.ts";
import { runNvidiaSmi } from "../../src/sim/nvidia-smi/cli.ts";
import { parseResetArgs, resetGpus } from "../../src/sim/nvidia-smi/reset.ts";
import { runSimGpu } from "../../src/sim/gpu/cli.ts";

/** Two GPUs; GPU 1 asks for a reset in every way a reset cures. */
function faultyState(): SimGpuState {
  const s = defaultGpuState(2);
  const g = s.gpus[1]!;
  g.recovery_action = "Reset";
  g.requires_reset = true;
  g.ecc_uncorrected_volatile = 3;
  g.ecc_corrected_volatile = 17;
  g.retired_pages_pending = true;
  g.remapped_rows = { correctable: 1, uncorrectable: 2, pending: true, failure: false };
  return s;
}

async function stateFile(t: TestContext, state: SimGpuState): Promise<string> {
  const file = path.join(tempDir(t), "gpus.json");
  await writeGpuState(file, state);
  return file;
}

/** The simulated nvidia-smi in this process (the code path of the executable's `sim nvidia-smi`). */
function smi(file: string | undefined, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runIo((io) => runNvidiaSmi(args, io), file ? { LLMSUP_SIM_GPU_STATE: file } : {});
}

/** A pid that is certainly gone: a child that has exited and been reaped. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  return Number(r.stdout);
}

test("nvidia-smi -r -i 1 (a real child process) resets GPU 1: the real success lines, exit 0, and only that GPU's reset-only conditions are cleared", async (t) => {
  const before = faultyState();
  before.gpus[0]!.ecc_uncorrected_volatile = 5;
  const file = await stateFile(t, before);
  const r = await runLlmsup(["sim", "nvidia-smi", "-r", "-i", "1"], { env: { LLMSUP_SIM_GPU_STATE: file } });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(r.stdout, "GPU 00000000:3B:00.0 was successfully reset.\nAll done.\n");
  assert.equal(r.stderr, "");
  const after = await readGpuState(file);
  const g = after.gpus[1]!;
  assert.deepEqual(
    [g.recovery_action, g.requires_reset, g.ecc_uncorrected_volatile, g.ecc_corrected_volatile, g.retired_pages_pending, g.remapped_rows],
    ["None", false, 0, 0, false, { correctable: 1, uncorrectable: 2, pending: false, failure: false }],
  );
  assert.deepEqual(after.gpus[0], before.gpus[0], "GPU 0 was not selected and keeps its counters");
  // The GPU then reads as healthy.
  const q = await smi(file, "--query-gpu=index,gpu_recovery_action,ecc.errors.uncorrected.volatile.total", "--format=csv,noheader,nounits", "-i", "1");
  assert.equal(q.stdout, "1, None, 0\n");
});

test("nvidia-smi --gpu-reset is refused while a live compute process holds the GPU: the real message, exit 255, and nothing is reset", async (t) => {
  const s = faultyState();
  s.processes.push({ pid: process.pid, gpu_uuid: s.gpus[1]!.uuid, used_memory_mib: 40000, process_name: "/usr/bin/python3" });
  const file = await stateFile(t, s);
  const r = await smi(file, "--gpu-reset", "--id=1");
  assert.equal(r.code, 255);
  assert.equal(
    r.stdout,
    "GPU 00000000:3B:00.0 is currently in use by another process.\n\n" +
      "1 device is currently being used by one or more other processes (e.g., Fabric Manager, CUDA application, graphics application such as an X server, or a monitoring application such as another instance of nvidia-smi). Please first kill all processes using this device and all compute applications running in the system.\n",
  );
  assert.deepEqual(await readGpuState(file), s, "the refused reset changed nothing");
});

test("a dead process still listed on the GPU does not hold it: the reset goes through", async (t) => {
  const s = faultyState();
  s.processes.push({ pid: deadPid(), gpu_uuid: s.gpus[1]!.uuid, used_memory_mib: 40000, process_name: "python3" });
  const file = await stateFile(t, s);
  const r = await smi(file, "-r", "-i", "00000000:3B:00.0");
  assert.equal(r.code, 0, r.stdout);
  assert.equal((await readGpuState(file)).gpus[1]!.recovery_action, "None");
});

test("without -i every GPU is reset, and a process on any of them refuses the whole reset, naming each busy GPU", () => {
  const s = faultyState();
  const all = resetGpus(s, { ids: null }, () => true);
  assert.equal(all.result !== "hang" && all.result.stdout, "GPU 00000000:1B:00.0 was successfully reset.\nGPU 00000000:3B:00.0 was successfully reset.\nAll done.\n");
  assert.equal(all.state?.gpus[1]!.recovery_action, "None");

  s.processes.push({ pid: 11, gpu_uuid: s.gpus[0]!.uuid, used_memory_mib: 1, process_name: "a" }, { pid: 12, gpu_uuid: s.gpus[1]!.uuid, used_memory_mib: 1, process_name: "b" });
  const busy = resetGpus(s, { ids: null }, () => true);
  assert.equal(busy.state, undefined);
  assert.ok(busy.result !== "hang");
  assert.equal(busy.result.exitCode, 255);
  assert.match(busy.result.stdout, /^GPU 00000000:1B:00\.0 is currently in use by another process\.\nGPU 00000000:3B:00\.0 is currently in use by another process\.\n\n2 devices are currently being used by one or more other processes .* Please first kill all processes using these devices and all compute applications running in the system\.\n$/);
});

test("-r answers like every other command when the driver fails, and an id naming no GPU finds no devices", () => {
  const lost = { ...faultyState(), failure: "gpu_lost" as const };
  const r = resetGpus(lost, { ids: ["1"] }, () => false);
  assert.ok(r.result !== "hang");
  assert.equal(r.result.exitCode, 15);
  assert.match(r.result.stdout, /GPU is lost\. Reboot the system to recover this GPU/);
  assert.equal(r.state, undefined);
  assert.equal(resetGpus({ ...faultyState(), failure: "hang" }, { ids: null }, () => false).result, "hang");
  const none = resetGpus(faultyState(), { ids: ["7"] }, () => false);
  assert.ok(none.result !== "hang");
  assert.deepEqual([none.result.stdout, none.result.exitCode], ["No devices were found\n", 6]);
});

test("-r with query options is an invalid combination (exit 2), and without a state file the driver is not loaded (exit 9)", async () => {
  const bad = parseResetArgs(["-r", "--query-gpu=index"]);
  assert.equal(bad.ok, false);
  assert.equal(!bad.ok && bad.result.exitCode, 2);
  assert.deepEqual(parseResetArgs(["-i", "0,1", "--gpu-reset"]), { ok: true, args: { ids: ["0", "1"] } });
  const r = await smi(undefined, "-r", "-i", "0");
  assert.equal(r.code, 9);
  assert.match(r.stdout, /^NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver/);
});

test("llmsup sim gpu set takes every recovery action nvidia-smi reports and refuses any other", async (t) => {
  const file = await stateFile(t, defaultGpuState(1));
  const io = () => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let err = "";
    stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    return { io: { stdout, stderr, env: {} }, err: () => err };
  };
  for (const action of ["Reset", "Reboot", "Drain P2P", "Drain and Reset", "None"]) {
    assert.equal(await runSimGpu(["set", "--state", file, "--gpu", "0", `recovery_action=${action}`], io().io), 0);
    assert.equal((await readGpuState(file)).gpus[0]!.recovery_action, action);
  }
  const bad = io();
  assert.equal(await runSimGpu(["set", "--state", file, "--gpu", "0", "recovery_action=Restart"], bad.io), 64);
  assert.match(bad.err(), /recovery_action must be one of "None", "Reset", "Reboot", "Drain P2P", "Drain and Reset"/);
  assert.equal((await readGpuState(file)).gpus[0]!.recovery_action, "None");
});
