/** `llmsup gpus` as an operator runs it (in-process: test/helpers/cli.ts), against the simulated nvidia-smi. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { runCliInProcess } from "../helpers/cli.ts";
import { tempDir } from "../helpers/tmp.ts";
import { simBox } from "./helpers.ts";

const NO_CONFIG = { LLMSUP_CONFIG: "" };

test("a table of every GPU, its faults with what to do, and the processes holding memory", async (t) => {
  const box = await simBox(t, (s) => {
    s.gpus[1]!.clocks_event_reasons = 0x4 | 0x40;
    s.gpus[1]!.temperature_gpu = 91;
    s.processes.push({ pid: process.pid, gpu_uuid: s.gpus[1]!.uuid, used_memory_mib: 40_000, process_name: "/usr/bin/python3" });
  });
  const r = await runCliInProcess(["gpus", "--nvidia-smi", box.nvidiaSmi], { env: NO_CONFIG });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  const lines = r.stdout.split("\n");
  assert.match(lines[0]!, /^GPU\s+NAME\s+BUS ID\s+TEMP\s+UTIL\s+MEMORY MiB\s+POWER W\s+SLOWDOWN\s+CONDITION$/);
  assert.match(lines[1]!, /^0\s+NVIDIA H100 80GB HBM3\s+00000000:1B:00\.0\s+34°C\s+0%\s+4 \/ 81559\s+70 \/ 700\s+-\s+ok$/);
  assert.match(lines[2]!, /^1\s+NVIDIA H100 80GB HBM3\s+00000000:3B:00\.0\s+91°C\s+0%\s+40004 \/ 81559\s+71 \/ 700\s+sw_power_cap,hw_thermal_slowdown\s+degraded$/);
  assert.ok(r.stdout.includes("FAULTS\nGPU 1  degraded  thermal_slowdown: GPU 1: clocks slowed down for heat (thermal slowdown)\n    → check cooling"), r.stdout);
  assert.ok(r.stdout.includes("GPU 1  degraded  over_temperature: GPU 1: 91 °C, over the 87 °C limit"));
  assert.match(r.stdout, new RegExp(`\\n1\\s+${process.pid}\\s+40000\\s+/usr/bin/python3\\n`));
  assert.ok(!r.stdout.includes("\u001b["), "no colour without a TTY");

  const coloured = await runCliInProcess(["gpus", "--nvidia-smi", box.nvidiaSmi], { env: { ...NO_CONFIG, NO_COLOR: "", FORCE_COLOR: "1" } });
  assert.ok(coloured.stdout.includes("\u001b[33mdegraded\u001b[39m"));
});

test("--json: stable keys, [N/A] as null, a GPU that requires a reset is down", async (t) => {
  const box = await simBox(t, (s) => {
    s.gpus[0]!.temperature_memory = null;
    s.gpus[1]!.requires_reset = true;
  });
  const r = await runCliInProcess(["gpus", "--json", "--nvidia-smi", box.nvidiaSmi], { env: NO_CONFIG });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown> & { gpus: Record<string, unknown>[]; faults: Record<string, unknown>[] };
  assert.deepEqual(Object.keys(out), ["nvidia_smi", "at", "gpus", "faults", "processes", "dropped_fields", "warnings"]);
  assert.deepEqual(Object.keys(out.gpus[0]!), [
    "index",
    "uuid",
    "name",
    "bus_id",
    "condition",
    "sampled_at",
    "stale_since",
    "stale_fields",
    "temperature_c",
    "memory_temperature_c",
    "utilization_pct",
    "memory_used_mib",
    "memory_total_mib",
    "power_draw_w",
    "power_limit_w",
    "pstate",
    "clock_event_reasons",
    "ecc_uncorrected_volatile",
    "ecc_corrected_volatile",
    "retired_pages_pending",
    "recovery_action",
    "requires_reset",
    "remapped_rows",
    "faults",
    "processes",
  ]);
  assert.deepEqual([out.gpus[0]!.condition, out.gpus[0]!.memory_temperature_c, out.gpus[0]!.temperature_c], ["ok", null, 34]);
  assert.deepEqual([out.gpus[1]!.condition, out.gpus[1]!.requires_reset, out.gpus[1]!.temperature_c], ["down", true, null]);
  assert.deepEqual(
    out.faults.map((f) => [f.kind, f.gpu, f.severity]),
    [["requires_reset", 1, "down"]],
  );
});

test("an impossible reading is left out, marked stale and warned about; it makes no fault", async (t) => {
  const box = await simBox(t, (s) => {
    s.gpus[1]!.cells["temperature.gpu"] = "412";
    s.gpus[1]!.cells["power.draw"] = "-5.00";
  });
  const r = await runCliInProcess(["gpus", "--json", "--nvidia-smi", box.nvidiaSmi], { env: NO_CONFIG });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { gpus: Record<string, unknown>[]; faults: unknown[]; warnings: string[]; at: string };
  assert.deepEqual([out.gpus[1]!.temperature_c, out.gpus[1]!.power_draw_w, out.gpus[1]!.condition], [null, null, "ok"]);
  assert.deepEqual(out.gpus[1]!.stale_fields, [
    { field: "temperature_c", since: out.at, rejected: "412", why: "over 150 °C" },
    { field: "power_draw_w", since: out.at, rejected: "-5", why: "negative" },
  ]);
  assert.deepEqual(out.gpus[0]!.stale_fields, []);
  assert.deepEqual(out.faults, []);
  assert.deepEqual(out.warnings, ["GPU 1: temperature_c reads 412, over 150 °C: ignored", "GPU 1: power_draw_w reads -5, negative: ignored"]);

  const human = await runCliInProcess(["gpus", "--nvidia-smi", box.nvidiaSmi], { env: NO_CONFIG });
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout.split("\n")[2]!, /^1\s+NVIDIA H100 80GB HBM3\s+00000000:3B:00\.0\s+-\*\s+0%\s+4 \/ 81559\s+-\* \/ 700\s+-\s+ok$/);
  assert.match(human.stdout, /\nSTALE READINGS\nGPU 1  temperature_c read 412, over 150 °C: ignored since \S+; the last good value is shown\nGPU 1  power_draw_w read -5, negative/);
  assert.match(human.stderr, /warning GPU 1: temperature_c reads 412, over 150 °C: ignored/);
});

test("nvidia-smi missing or failing: exit 69 with the error code, in text and in JSON", async (t) => {
  const missing = await runCliInProcess(["gpus", "--nvidia-smi", "/nonexistent/nvidia-smi"], { env: NO_CONFIG });
  assert.equal(missing.code, 69);
  assert.equal(missing.stdout, "");
  assert.match(missing.stderr, /^llmsup gpus: error LLMSUP_E_GPU_SMI_MISSING: cannot run nvidia-smi at "\/nonexistent\/nvidia-smi": no such file\n/);

  const box = await simBox(t, (s) => {
    s.failure = "gpu_lost";
  });
  const lost = await runCliInProcess(["gpus", "--json", "--nvidia-smi", box.nvidiaSmi], { env: NO_CONFIG });
  assert.equal(lost.code, 69);
  const err = (JSON.parse(lost.stdout) as { error: Record<string, unknown> }).error;
  assert.deepEqual([err.code, err.kind, err.bus_id], ["LLMSUP_E_GPU_LOST", "gpu_lost", "00000000:1B:00.0"]);
  assert.match(String(err.message), /GPU is lost/);
});

test("config: [gpu] nvidia_smi and deadline come from --config; an explicit config that is missing is an error", async (t) => {
  const box = await simBox(t, (s) => {
    s.failure = "hang";
  });
  const dir = tempDir(t);
  const file = path.join(dir, "supervisor.toml");
  writeFileSync(
    file,
    `[gpu]\nnvidia_smi = "${box.nvidiaSmi}"\ndeadline = "700ms"\n\n[[backend]]\nname = "cloud"\nkind = "openai"\nurl = "https://api.example.com"\n\n[[route]]\nmodel = "m"\ntiers = [{ backend = "cloud", model = "m" }]\n`,
  );
  const started = Date.now();
  const hung = await runCliInProcess(["gpus", "--config", file]);
  assert.equal(hung.code, 69);
  assert.match(hung.stderr, /LLMSUP_E_GPU_UNRESPONSIVE: nvidia-smi did not answer within 700ms/);
  assert.ok(Date.now() - started < 5_000, "the command ends even though nvidia-smi never does");

  const absent = await runCliInProcess(["gpus", "--nvidia-smi", box.nvidiaSmi], { env: { LLMSUP_CONFIG: path.join(dir, "nope.toml") } });
  assert.equal(absent.code, 78);
  assert.match(absent.stderr, /LLMSUP_E_CONFIG_UNREADABLE/);
});
