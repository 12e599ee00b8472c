/** `llmsup sim gpu ...`: driving the simulated GPU state file. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { runIo } from "../helpers/cli.ts";
import { tempDir } from "../helpers/tmp.ts";
import { runSimGpu } from "../../src/sim/gpu/cli.ts";
import { defaultGpuState, readGpuState } from "../../src/sim/gpu/state.ts";

function simGpu(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runIo((io) => runSimGpu(args, io));
}

test("init writes a healthy box and show prints it", async (t) => {
  const file = path.join(tempDir(t), "gpus.json");
  assert.equal((await simGpu("init", "--state", file, "--gpus", "4")).code, 0);
  assert.deepEqual(await readGpuState(file), defaultGpuState(4));
  const shown = await simGpu("show", "--state", file);
  assert.equal(shown.code, 0);
  assert.deepEqual(JSON.parse(shown.stdout), defaultGpuState(4));
  assert.equal((await simGpu("init", `--state=${file}`)).code, 0);
  assert.equal((await readGpuState(file)).gpus.length, 2);
});

test("set changes one GPU's fields, nested keys and cell overrides", async (t) => {
  const file = path.join(tempDir(t), "gpus.json");
  await simGpu("init", "--state", file);
  const r = await simGpu(
    "set",
    "--state",
    file,
    "--gpu",
    "1",
    "temperature_gpu=95",
    "clocks_event_reasons=0x40",
    "remapped_rows.pending=true",
    'cells.power.draw="[Unknown Error]"',
    "cells.clocks_event_reasons.active=[Not Supported]",
    "temperature_memory=null",
    "recovery_action=Drain and Reset",
    "requires_reset=true",
  );
  assert.equal(r.code, 0, r.stderr);
  const s = await readGpuState(file);
  const g = s.gpus[1]!;
  assert.equal(g.temperature_gpu, 95);
  assert.equal(g.clocks_event_reasons, 0x40);
  assert.equal(g.remapped_rows?.pending, true);
  assert.deepEqual(g.cells, { "power.draw": "[Unknown Error]", "clocks_event_reasons.active": "[Not Supported]" });
  assert.equal(g.temperature_memory, null);
  assert.equal(g.recovery_action, "Drain and Reset");
  assert.equal(g.requires_reset, true);
  assert.deepEqual(s.gpus[0], defaultGpuState(2).gpus[0], "GPU 0 untouched");

  // A remapped-rows key on a GPU without remapping creates the counters; cells.X=null removes an override.
  await simGpu("set", "--state", file, "--gpu", "0", "remapped_rows=null");
  await simGpu("set", "--state", file, "--gpu", "0", "remapped_rows.failure=true");
  await simGpu("set", "--state", file, "--gpu", "1", "cells.power.draw=null");
  const after = await readGpuState(file);
  assert.deepEqual(after.gpus[0]!.remapped_rows, { correctable: 0, uncorrectable: 0, pending: false, failure: true });
  assert.deepEqual(after.gpus[1]!.cells, { "clocks_event_reasons.active": "[Not Supported]" });
});

test("set without --gpu changes top-level fields", async (t) => {
  const file = path.join(tempDir(t), "gpus.json");
  await simGpu("init", "--state", file);
  assert.equal((await simGpu("set", "--state", file, "failure=gpu_lost", "failure_bus_id=00000000:3B:00.0", "old_driver=true")).code, 0);
  let s = await readGpuState(file);
  assert.deepEqual([s.failure, s.failure_bus_id, s.old_driver], ["gpu_lost", "00000000:3B:00.0", true]);
  assert.equal((await simGpu("set", "--state", file, "failure=null", "driver_version=535.161.08")).code, 0);
  s = await readGpuState(file);
  assert.deepEqual([s.failure, s.driver_version], [null, "535.161.08"]);
});

test("usage errors exit 64 with a message on stderr and leave the state alone", async (t) => {
  const file = path.join(tempDir(t), "gpus.json");
  await simGpu("init", "--state", file);
  const before = readFileSync(file, "utf8");
  const cases: [string[], RegExp][] = [
    [["frobnicate", "--state", file], /unknown subcommand "frobnicate"/],
    [[], /missing subcommand/],
    [["show"], /--state FILE is required/],
    [["set", "--state", file, "--gpu", "0", "bogus=1"], /unknown GPU key "bogus"/],
    [["set", "--state", file, "--gpu", "0", "remapped_rows.bogus=1"], /unknown GPU key "remapped_rows.bogus"/],
    [["set", "--state", file, "temperature_gpu=1"], /unknown state key "temperature_gpu"/],
    [["set", "--state", file, "--gpu", "0", "temperature_gpu=hot"], /temperature_gpu expects a number, got "hot"/],
    [["set", "--state", file, "--gpu", "0", "remapped_rows.pending=maybe"], /remapped_rows.pending expects a boolean/],
    [["set", "--state", file, "failure=exploded"], /failure must be null or one of/],
    [["set", "--state", file, "--gpu", "5", "pstate=P8"], /no GPU with index 5/],
    [["set", "--state", file, "--gpu", "0"], /at least one key=value/],
    [["set", "--state", file, "--gpu", "0", "pstate"], /expected key=value/],
    [["init", "--state", file, "--gpus", "0"], /between 1 and 8/],
    [["init", "--state", file, "--colour", "red"], /unknown option --colour/],
    [["wrapper", "--state", file], /--out PATH is required/],
  ];
  for (const [args, says] of cases) {
    const r = await simGpu(...args);
    assert.equal(r.code, 64, args.join(" "));
    assert.equal(r.stdout, "");
    assert.match(r.stderr, says);
  }
  assert.equal(readFileSync(file, "utf8"), before);
});

test("wrapper writes an executable sh script running this llmsup with the state file", async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, "gpus.json");
  const out = path.join(dir, "bin", "..", "nvidia-smi");
  await simGpu("init", "--state", file);
  const r = await simGpu("wrapper", "--state", file, "--out", out);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${path.join(dir, "nvidia-smi")}\n`);
  assert.equal(statSync(path.join(dir, "nvidia-smi")).mode & 0o777, 0o755);
  const script = readFileSync(path.join(dir, "nvidia-smi"), "utf8");
  assert.match(script, /^#!\/bin\/sh\n/);
  assert.ok(script.includes(`'${process.execPath}'`));
  assert.ok(script.includes(`/src/cli/main.ts' sim nvidia-smi --sim-state '${file}' "$@"`), script);
});
