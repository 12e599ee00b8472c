/** `llmsup sim gpu hog`: a stranger's process holding GPU memory, as the simulated nvidia-smi lists it, until it is stopped. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { defaultGpuState, readGpuState, withoutDeadProcesses, writeGpuState } from "../../src/sim/gpu/state.ts";
import { CLI_ENTRY, REPO_ROOT, runLlmsup } from "../helpers/cli.ts";
import { tempDir } from "../helpers/tmp.ts";
import { waitUntil } from "../helpers/wait.ts";

test("sim gpu hog holds the memory it says on the GPU it names while it runs, and lets go when stopped (SIGINT) or killed (-9)", async (t) => {
  const state = path.join(tempDir(t), "gpus.json");
  await writeGpuState(state, defaultGpuState(2));
  for (const signal of ["SIGINT", "SIGKILL"] as const) {
    const child = spawn(process.execPath, [CLI_ENTRY, "sim", "gpu", "hog", "--state", state, "--gpu", "1", "--mib", "20000", "--name", "python3 train.py"], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    t.after(() => child.kill("SIGKILL"));
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    await waitUntil("the hog says it holds the memory", () => out.includes("holds 20000 MiB on GPU 1"));
    const held = withoutDeadProcesses(await readGpuState(state));
    const s = await readGpuState(state);
    assert.deepEqual(
      held.processes.map((p) => [p.pid, p.gpu_uuid, p.used_memory_mib, p.process_name]),
      [[child.pid, s.gpus[1]!.uuid, 20000, "python3 train.py"]],
    );
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill(signal);
    const code = await exited;
    if (signal === "SIGINT") assert.equal(code, 0, "a stopped hog exits cleanly");
    assert.deepEqual(withoutDeadProcesses(await readGpuState(state)).processes, [], `${signal}: nothing is listed any more`);
  }
});

test("sim gpu hog refuses a GPU the state does not have and a missing --mib, with the usage", async (t) => {
  const state = path.join(tempDir(t), "gpus.json");
  await writeGpuState(state, defaultGpuState(1));
  const noGpu = await runLlmsup(["sim", "gpu", "hog", "--state", state, "--gpu", "3", "--mib", "100"]);
  assert.equal(noGpu.code, 64);
  assert.match(noGpu.stderr, /no GPU with index 3/);
  const noMib = await runLlmsup(["sim", "gpu", "hog", "--state", state, "--gpu", "0"]);
  assert.equal(noMib.code, 64);
  assert.match(noMib.stderr, /hog needs --gpu I and --mib N/);
});
