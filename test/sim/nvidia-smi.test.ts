/**
 * The simulated nvidia-smi through real child processes, compared with the
 * real tool's output byte for byte (formats taken from the real tool's output).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { statSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { TestContext } from "node:test";
import { CLI_ENTRY, REPO_ROOT, runLlmsup } from "../helpers/cli.ts";
import { tempDir } from "../helpers/tmp.ts";
import { defaultGpuState, readGpuState, updateGpuState, writeGpuState } from "../../src/sim/gpu/state.ts";
import type { SimGpuState } from "../../src/sim/gpu/state.ts";
import { runSimGpu } from "../../src/sim/gpu/cli.ts";
import { parseSmiArgs, renderSample } from "../../src/sim/nvidia-smi/format.ts";
import { PassThrough } from "node:stream";

const UUID0 = "GPU-5ca1ab1e-1000-4000-8000-deadbeef0000";
const UUID1 = "GPU-5ca1ab1f-1001-4001-8001-deadbeef0001";

const REFERENCE_FIELDS = [
  "index",
  "uuid",
  "name",
  "pci.bus_id",
  "temperature.gpu",
  "temperature.memory",
  "utilization.gpu",
  "memory.used",
  "memory.total",
  "power.draw",
  "power.limit",
  "pstate",
  "clocks_event_reasons.active",
  "clocks_event_reasons.hw_slowdown",
  "clocks_event_reasons.hw_thermal_slowdown",
  "clocks_event_reasons.sw_thermal_slowdown",
  "clocks_event_reasons.hw_power_brake_slowdown",
  "clocks_event_reasons.sw_power_cap",
  "ecc.errors.uncorrected.volatile.total",
  "ecc.errors.corrected.volatile.total",
  "retired_pages.pending",
  "gpu_recovery_action",
].join(",");

/** Two H100s; GPU 1 is busy (87 %, SW power cap, 512.3 W) and holds 40000 MiB for this test process. */
function busyState(): SimGpuState {
  const s = defaultGpuState(2);
  const g1 = s.gpus[1]!;
  g1.utilization_gpu = 87;
  g1.clocks_event_reasons = 0x4;
  g1.power_draw_w = 512.3;
  s.processes.push({ pid: process.pid, gpu_uuid: UUID1, used_memory_mib: 40000, process_name: "/usr/bin/python3" });
  return s;
}

async function stateFile(t: TestContext, state: SimGpuState): Promise<string> {
  const file = path.join(tempDir(t), "gpus.json");
  await writeGpuState(file, state);
  return file;
}

function smi(file: string, ...args: string[]) {
  return runLlmsup(["sim", "nvidia-smi", ...args], { env: { LLMSUP_SIM_GPU_STATE: file } });
}

/** A long-running simulated nvidia-smi whose output can be watched; killed at the end of the test. */
function startSmi(t: TestContext, file: string, ...args: string[]) {
  const child: ChildProcess = spawn(process.execPath, [CLI_ENTRY, "sim", "nvidia-smi", ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, LLMSUP_SIM_GPU_STATE: file },
    stdio: ["ignore", "pipe", "pipe"],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  let stdout = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    child,
    exited,
    stdout: () => stdout,
    async waitFor(what: string, ok: (out: string) => boolean, timeoutMs = 5_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!ok(stdout)) {
        if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; stdout so far:\n${stdout}`);
        await sleep(20);
      }
    },
  };
}

test("--format=csv prints the header with units and values with units, one line per GPU", async (t) => {
  const file = await stateFile(t, busyState());
  const r = await smi(file, `--query-gpu=${REFERENCE_FIELDS}`, "--format=csv");
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(r.stderr, "");
  assert.equal(
    r.stdout,
    "index, uuid, name, pci.bus_id, temperature.gpu, temperature.memory, utilization.gpu [%], memory.used [MiB], memory.total [MiB], power.draw [W], power.limit [W], pstate, clocks_event_reasons.active, clocks_event_reasons.hw_slowdown, clocks_event_reasons.hw_thermal_slowdown, clocks_event_reasons.sw_thermal_slowdown, clocks_event_reasons.hw_power_brake_slowdown, clocks_event_reasons.sw_power_cap, ecc.errors.uncorrected.volatile.total, ecc.errors.corrected.volatile.total, retired_pages.pending, gpu_recovery_action\n" +
      `0, ${UUID0}, NVIDIA H100 80GB HBM3, 00000000:1B:00.0, 34, 41, 0 %, 4 MiB, 81559 MiB, 69.80 W, 700.00 W, P0, 0x0000000000000001, Not Active, Not Active, Not Active, Not Active, Not Active, 0, 0, No, None\n` +
      `1, ${UUID1}, NVIDIA H100 80GB HBM3, 00000000:3B:00.0, 35, 42, 87 %, 40004 MiB, 81559 MiB, 512.30 W, 700.00 W, P0, 0x0000000000000004, Not Active, Not Active, Not Active, Not Active, Active, 0, 0, No, None\n`,
  );
});

test("--format=csv,noheader,nounits prints bare values; nounits alone keeps the header units", async (t) => {
  const file = await stateFile(t, busyState());
  const r = await smi(file, `--query-gpu=${REFERENCE_FIELDS}`, "--format=csv,noheader,nounits");
  assert.equal(r.code, 0, r.stdout);
  assert.equal(
    r.stdout,
    `0, ${UUID0}, NVIDIA H100 80GB HBM3, 00000000:1B:00.0, 34, 41, 0, 4, 81559, 69.80, 700.00, P0, 0x0000000000000001, Not Active, Not Active, Not Active, Not Active, Not Active, 0, 0, No, None\n` +
      `1, ${UUID1}, NVIDIA H100 80GB HBM3, 00000000:3B:00.0, 35, 42, 87, 40004, 81559, 512.30, 700.00, P0, 0x0000000000000004, Not Active, Not Active, Not Active, Not Active, Active, 0, 0, No, None\n`,
  );
  const u = await smi(file, "--query-gpu=memory.free,utilization.gpu,driver_version", "--format=csv,nounits");
  assert.equal(u.stdout, "memory.free [MiB], utilization.gpu [%], driver_version\n81555, 0, 550.54.15\n41555, 87, 550.54.15\n");
});

test("absent values read [N/A], cell overrides win, and a GPU needing a reset reads [GPU requires reset] everywhere", async (t) => {
  const s = busyState();
  const g0 = s.gpus[0]!;
  g0.temperature_memory = null;
  g0.ecc_uncorrected_volatile = null;
  g0.retired_pages_pending = null;
  g0.cells["power.draw"] = "[Unknown Error]";
  s.gpus[1]!.requires_reset = true;
  const file = await stateFile(t, s);
  const r = await smi(file, "--query-gpu=index,temperature.memory,ecc.errors.uncorrected.volatile.total,retired_pages.pending,power.draw,memory.used", "--format=csv");
  assert.equal(r.code, 0);
  assert.equal(
    r.stdout,
    "index, temperature.memory, ecc.errors.uncorrected.volatile.total, retired_pages.pending, power.draw [W], memory.used [MiB]\n" +
      "0, [N/A], [N/A], [N/A], [Unknown Error], 4 MiB\n" +
      "[GPU requires reset], [GPU requires reset], [GPU requires reset], [GPU requires reset], [GPU requires reset], [GPU requires reset]\n",
  );
});

test("one unknown field rejects the whole query: message on stdout, exit 2", async (t) => {
  const file = await stateFile(t, busyState());
  const r = await smi(file, "--query-gpu=index,temperature.hbm,uuid", "--format=csv,noheader,nounits");
  assert.equal(r.code, 2);
  assert.equal(r.stdout, 'Field "temperature.hbm" is not a valid field to query.\n\n');
  assert.equal(r.stderr, "");
  const apps = await smi(file, "--query-compute-apps=pid,memory.used", "--format=csv");
  assert.equal(apps.code, 2);
  assert.equal(apps.stdout, 'Field "memory.used" is not a valid field to query.\n\n');
});

test("an old driver knows only clocks_throttle_reasons.* and no gpu_recovery_action; a new one takes both names", async (t) => {
  const s = busyState();
  s.old_driver = true;
  const file = await stateFile(t, s);
  for (const field of ["clocks_event_reasons.active", "clocks_event_reasons.hw_slowdown", "gpu_recovery_action"]) {
    const r = await smi(file, `--query-gpu=index,${field}`, "--format=csv,noheader");
    assert.equal(r.code, 2, field);
    assert.equal(r.stdout, `Field "${field}" is not a valid field to query.\n\n`);
  }
  const old = await smi(file, "--query-gpu=index,clocks_throttle_reasons.active,clocks_throttle_reasons.sw_power_cap", "--format=csv");
  assert.equal(old.code, 0);
  assert.equal(
    old.stdout,
    "index, clocks_throttle_reasons.active, clocks_throttle_reasons.sw_power_cap\n0, 0x0000000000000001, Not Active\n1, 0x0000000000000004, Active\n",
  );

  await updateGpuState(file, (st) => {
    st.old_driver = false;
  });
  const both = await smi(file, "--query-gpu=clocks_throttle_reasons.active,clocks_event_reasons.active,gpu_recovery_action", "--format=csv,noheader");
  assert.equal(both.code, 0);
  assert.equal(both.stdout, "0x0000000000000001, 0x0000000000000001, None\n0x0000000000000004, 0x0000000000000004, None\n");
});

test("whole-command failures print the real messages with the real exit codes", async (t) => {
  const s = busyState();
  s.failure_bus_id = "00000000:3B:00.0";
  const file = await stateFile(t, s);
  const cases: [SimGpuState["failure"], string, number][] = [
    [
      "driver_not_loaded",
      "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n\n",
      9,
    ],
    ["no_devices", "No devices were found\n", 6],
    ["nvml_mismatch", "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.54\n", 18],
    ["gpu_lost", "Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost. Reboot the system to recover this GPU\n", 15],
    ["unknown_error", "Unable to determine the device handle for GPU0000:3B:00.0: Unknown Error\n", 255],
  ];
  for (const [failure, text, code] of cases) {
    await updateGpuState(file, (st) => {
      st.failure = failure;
    });
    const r = await smi(file, "--query-gpu=index,memory.used", "--format=csv,noheader,nounits");
    assert.equal(r.code, code, `${failure}: ${r.stdout}`);
    assert.equal(r.stdout, text, String(failure));
    assert.equal(r.stderr, "");
  }
});

test("no state file at all reads as no driver (exit 9)", async (t) => {
  const missing = path.join(tempDir(t), "absent.json");
  const r = await smi(missing, "--query-gpu=index", "--format=csv");
  assert.equal(r.code, 9);
  assert.match(r.stdout, /^NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver\./);
  const none = await runLlmsup(["sim", "nvidia-smi", "--query-gpu=index", "--format=csv"], { env: { LLMSUP_SIM_GPU_STATE: "" } });
  assert.equal(none.code, 9);
});

test("loop mode streams samples from one process, sees state changes, and exits when the GPU is lost", async (t) => {
  const file = await stateFile(t, busyState());
  const run = startSmi(t, file, "--query-gpu=index,temperature.gpu", "--format=csv", "-lms", "100");
  await run.waitFor("three samples", (out) => out.split("0, 34\n").length > 3);
  assert.ok(run.stdout().startsWith("index, temperature.gpu\n0, 34\n1, 35\n0, 34\n1, 35\n"), run.stdout());
  assert.equal(run.stdout().split("index, temperature.gpu").length, 2, "the header is printed once");

  await updateGpuState(file, (s) => {
    s.gpus[1]!.temperature_gpu = 95;
  });
  await run.waitFor("the new temperature", (out) => out.includes("1, 95\n"));

  await updateGpuState(file, (s) => {
    s.failure = "gpu_lost";
  });
  assert.equal(await run.exited, 15);
  assert.ok(run.stdout().endsWith("Unable to determine the device handle for GPU 0000:1B:00.0: GPU is lost. Reboot the system to recover this GPU\n"), run.stdout());
});

test("-l takes seconds and --loop-ms the long form", () => {
  const l = parseSmiArgs(["--query-gpu=index", "--format=csv", "-l", "2"]);
  assert.ok(l.ok);
  assert.equal(l.args.loopMs, 2000);
  const lms = parseSmiArgs(["--query-gpu", "index", "--format", "csv,noheader", "--loop-ms=250", "-i", "0,1"]);
  assert.ok(lms.ok);
  assert.deepEqual([lms.args.loopMs, lms.args.header, lms.args.ids], [250, false, ["0", "1"]]);
  const noFormat = parseSmiArgs(["--query-gpu=index"]);
  assert.ok(!noFormat.ok);
  assert.equal(noFormat.result.exitCode, 2);
});

test("a hung driver never prints and never exits", async (t) => {
  const s = busyState();
  s.failure = "hang";
  const file = await stateFile(t, s);
  const run = startSmi(t, file, "--query-gpu=index", "--format=csv,noheader");
  await sleep(1_500);
  assert.equal(run.child.exitCode, null);
  assert.equal(run.stdout(), "");
  run.child.kill("SIGKILL");
  await run.exited;
});

test("compute apps list registered processes GPU by GPU; a dead pid disappears, a live one stays", async (t) => {
  const dead = spawn(process.execPath, ["-e", ""]);
  const deadPid = dead.pid!;
  await new Promise((resolve) => dead.on("exit", resolve));
  const s = busyState();
  s.processes.unshift({ pid: deadPid, gpu_uuid: UUID1, used_memory_mib: 30000, process_name: "VLLM::EngineCore" });
  s.processes.push({ pid: process.pid, gpu_uuid: UUID0, used_memory_mib: 1234, process_name: "/usr/bin/python3" });
  const file = await stateFile(t, s);

  const r = await smi(file, "--query-compute-apps=pid,process_name,gpu_uuid,gpu_bus_id,gpu_name,used_memory", "--format=csv");
  assert.equal(r.code, 0, r.stdout);
  assert.equal(
    r.stdout,
    "pid, process_name, gpu_uuid, gpu_bus_id, gpu_name, used_gpu_memory [MiB]\n" +
      `${process.pid}, /usr/bin/python3, ${UUID0}, 00000000:1B:00.0, NVIDIA H100 80GB HBM3, 1234 MiB\n` +
      `${process.pid}, /usr/bin/python3, ${UUID1}, 00000000:3B:00.0, NVIDIA H100 80GB HBM3, 40000 MiB\n`,
  );
  // The dead process's memory is freed too.
  const mem = await smi(file, "--query-gpu=memory.used", "--format=csv,noheader,nounits");
  assert.equal(mem.stdout, "1238\n40004\n");
  const one = await smi(file, "--query-compute-apps=pid,used_gpu_memory", "--format=csv,noheader,nounits", "-i", UUID1);
  assert.equal(one.stdout, `${process.pid}, 40000\n`);
});

test("no compute apps: the header alone, or nothing at all with noheader", async (t) => {
  const file = await stateFile(t, defaultGpuState(2));
  const withHeader = await smi(file, "--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv");
  assert.deepEqual([withHeader.code, withHeader.stdout], [0, "pid, gpu_uuid, used_gpu_memory [MiB]\n"]);
  const bare = await smi(file, "--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits");
  assert.deepEqual([bare.code, bare.stdout], [0, ""]);
});

test("remapped rows: Yes/No flags, counts, and [N/A] for a GPU without row remapping", async (t) => {
  const s = defaultGpuState(3);
  s.gpus[1]!.remapped_rows = { correctable: 2, uncorrectable: 1, pending: true, failure: false };
  s.gpus[2]!.remapped_rows = null;
  const file = await stateFile(t, s);
  const r = await smi(
    file,
    "--query-remapped-rows=gpu_uuid,gpu_bus_id,remapped_rows.correctable,remapped_rows.uncorrectable,remapped_rows.pending,remapped_rows.failure",
    "--format=csv",
  );
  assert.equal(r.code, 0, r.stdout);
  const [h, a, b, c] = r.stdout.split("\n");
  assert.equal(h, "gpu_uuid, gpu_bus_id, remapped_rows.correctable, remapped_rows.uncorrectable, remapped_rows.pending, remapped_rows.failure");
  assert.equal(a, `${UUID0}, 00000000:1B:00.0, 0, 0, No, No`);
  assert.equal(b, `${UUID1}, 00000000:3B:00.0, 2, 1, Yes, No`);
  assert.equal(c, `${s.gpus[2]!.uuid}, 00000000:5D:00.0, [N/A], [N/A], [N/A], [N/A]`);
});

test("-i selects GPUs by index, UUID or bus id; an unknown id finds no device", () => {
  const s = busyState();
  const parse = (...a: string[]) => {
    const p = parseSmiArgs(["--query-gpu=index", "--format=csv,noheader", ...a]);
    assert.ok(p.ok);
    return p.args;
  };
  const out = (...a: string[]) => renderSample(parse(...a), s, { header: true });
  assert.deepEqual(out("-i", "1"), { stdout: "1\n", stderr: "", exitCode: 0 });
  assert.deepEqual(out(`--id=${UUID0}`), { stdout: "0\n", stderr: "", exitCode: 0 });
  assert.deepEqual(out("-i", "0000:3b:00.0"), { stdout: "1\n", stderr: "", exitCode: 0 });
  assert.deepEqual(out("-i", "7"), { stdout: "No devices were found\n", stderr: "", exitCode: 6 });
});

test("the generated wrapper is an executable nvidia-smi bound to the state file", async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, "gpus.json");
  await writeGpuState(file, busyState());
  const wrapper = path.join(dir, "nvidia-smi");
  const out = new PassThrough();
  const err = new PassThrough();
  const code = await runSimGpu(["wrapper", "--state", file, "--out", wrapper], { stdout: out, stderr: err, env: {} });
  assert.equal(code, 0);
  assert.equal(statSync(wrapper).mode & 0o777, 0o755);

  const run = (args: string[]) =>
    new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(wrapper, args, { env: { ...process.env, LLMSUP_SIM_GPU_STATE: "" } }, (error, stdout) => {
        resolve({ code: error ? Number(error.code) : 0, stdout });
      });
    });
  const r = await run(["--query-gpu=index,pci.bus_id,memory.used", "--format=csv,noheader,nounits"]);
  assert.deepEqual(r, { code: 0, stdout: "0, 00000000:1B:00.0, 4\n1, 00000000:3B:00.0, 40004\n" });

  await updateGpuState(file, (s) => {
    s.failure = "unknown_error";
  });
  const broken = await run(["--query-gpu=index", "--format=csv"]);
  assert.deepEqual(broken, { code: 255, stdout: "Unable to determine the device handle for GPU0000:1B:00.0: Unknown Error\n" });
  assert.equal((await readGpuState(file)).failure, "unknown_error");
});
