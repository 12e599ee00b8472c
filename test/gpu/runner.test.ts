/** Running nvidia-smi: deadlines, one at a time, the hung-process rule, loop mode. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { isLlmsupError } from "../../src/errors/error.ts";
import { failureFromLine } from "../../src/gpu/parse.ts";
import { FAILURE_GRACE_MS, SmiRunner, type LoopExit } from "../../src/gpu/runner.ts";
import { flush, ManualClock } from "../helpers/clock.ts";
import { fakeSpawner, realSmiRunner, simBox, waitUntil } from "./helpers.ts";

function rig(onSpawn?: Parameters<typeof fakeSpawner>[0]) {
  const clock = new ManualClock(0);
  const spawn = fakeSpawner(onSpawn);
  const runner = new SmiRunner({ path: "nvidia-smi", deadlineMs: 15_000, spawn, clock });
  return { clock, spawn, runner };
}

async function rejection(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    assert.ok(isLlmsupError(e), String(e));
    return { code: e.code, message: e.message };
  }
  assert.fail("expected a rejection");
}

test("a query resolves with the output and the exit status, whatever they are", async () => {
  const { spawn, runner, clock } = rig((c) => {
    queueMicrotask(() => {
      c.print("No devices were found\n");
      c.exit(6);
    });
  });
  const run = await runner.query(["--query-gpu=index", "--format=csv,noheader,nounits"]);
  assert.deepEqual([run.output, run.exitCode], ["No devices were found\n", 6]);
  assert.deepEqual(spawn.children[0]!.args, ["--query-gpu=index", "--format=csv,noheader,nounits"]);
  assert.equal(clock.pendingTimers, 0, "the deadline timer is gone");
});

test("queries run one at a time", async () => {
  const { spawn, runner } = rig();
  const a = runner.query(["a"]);
  const b = runner.query(["b"]);
  await flush();
  assert.equal(spawn.children.length, 1, "the second waits for the first");
  spawn.children[0]!.exit(0);
  await a;
  await flush();
  assert.equal(spawn.children.length, 2);
  spawn.children[1]!.exit(0);
  await b;
});

test("a query past its deadline is driver_unresponsive; a stuck process blocks every new one until it really exits", async () => {
  const { spawn, runner, clock } = rig((c) => {
    c.killable = false; // asleep in the driver: SIGKILL does nothing
  });
  const first = runner.query(["--query-gpu=index"]);
  await flush();
  clock.advance(14_999);
  await flush();
  assert.equal(spawn.children[0]!.signals.length, 0, "not before the deadline");
  clock.advance(1);
  const err = await rejection(first);
  assert.equal(err.code, "LLMSUP_E_GPU_UNRESPONSIVE");
  assert.match(err.message, /did not answer within 15s/);
  const stuck = spawn.children[0]!;
  assert.deepEqual(stuck.signals, ["SIGKILL"]);
  assert.ok(stuck.abandoned, "let go of, not waited on");
  assert.deepEqual(runner.stuck(), { pid: stuck.pid, since: 15_000, what: "query" });

  clock.advance(60_000);
  for (let i = 0; i < 5; i++) {
    const pending = runner.query(["--query-compute-apps=pid"]);
    await flush();
    assert.equal(spawn.children.length, 1, "refused without starting another process");
    const refused = await rejection(pending);
    assert.equal(refused.code, "LLMSUP_E_GPU_UNRESPONSIVE");
    assert.match(refused.message, /pid \d+\) has been stuck for 1m; not starting another/);
  }
  assert.throws(() => runner.startLoop(["-lms", "1000"], { linesPerSample: 1, overdueMs: 1000 }, { sample() {}, overdue() {}, exit() {} }), /stuck/);
  assert.equal(spawn.children.length, 1, "no pile of processes");

  stuck.exit(null, "SIGKILL"); // the driver let go at last
  await flush();
  assert.equal(runner.stuck(), undefined);
  const next = runner.query(["--query-gpu=index"]);
  await flush();
  assert.equal(spawn.children.length, 2);
  spawn.children[1]!.print("0\n");
  spawn.children[1]!.exit(0);
  assert.equal((await next).output, "0\n");
});

test("a missing nvidia-smi is LLMSUP_E_GPU_SMI_MISSING", async () => {
  const runner = realSmiRunner("/nonexistent/nvidia-smi", 5_000);
  const err = await rejection(runner.query(["-L"]));
  assert.equal(err.code, "LLMSUP_E_GPU_SMI_MISSING");
  assert.match(err.message, /cannot run nvidia-smi at "\/nonexistent\/nvidia-smi": no such file/);
});

test("loop mode: lines are grouped into samples, each sample re-arms the deadline, a missed one is reported and killed", async () => {
  const { spawn, runner, clock } = rig();
  const samples: string[][] = [];
  const overdue: number[] = [];
  const exits: LoopExit[] = [];
  runner.startLoop(["--query-gpu=index,temperature.gpu", "-lms", "5000"], { linesPerSample: 2, overdueMs: 15_000, startsSample: (l) => l.startsWith("0, ") }, {
    sample: (lines) => samples.push([...lines]),
    overdue: (ms) => overdue.push(ms),
    exit: (e) => exits.push(e),
  });
  const child = spawn.children[0]!;
  child.print("0, 34\n1, 3");
  child.print("5\n0, 36\n");
  assert.deepEqual(samples, [["0, 34", "1, 35"]]);
  clock.advance(10_000);
  child.print("1, 37\n");
  assert.deepEqual(samples[1], ["0, 36", "1, 37"]);
  // A GPU went missing from the output: the next "0, " line closes the short sample.
  child.print("0, 38\n0, 39\n1, 40\n");
  assert.deepEqual(samples.slice(2), [["0, 38"], ["0, 39", "1, 40"]]);

  clock.advance(14_999);
  assert.deepEqual(overdue, []);
  clock.advance(1);
  assert.deepEqual(overdue, [15_000]);
  assert.deepEqual(child.signals, ["SIGKILL"]);
  await flush();
  assert.equal(exits.length, 1);
  assert.equal(exits[0]!.overdue, true);
});

test("loop mode: the end of the process carries the error it printed", async () => {
  const { spawn, runner } = rig();
  const exits: LoopExit[] = [];
  runner.startLoop(["-lms", "100"], { linesPerSample: 2, overdueMs: 15_000 }, { sample() {}, overdue() {}, exit: (e) => exits.push(e) });
  spawn.children[0]!.print("0, 34\n1, 35\nUnable to determine the device handle for GPU 0000:3B:00.0: GPU is lost. Reboot the system to recover this GPU\n");
  spawn.children[0]!.exit(15);
  await flush();
  assert.equal(exits[0]!.code, 15);
  assert.equal(exits[0]!.leftover, "Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost. Reboot the system to recover this GPU");
  assert.equal(exits[0]!.overdue, false);
});

const DRIVER = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.";
const isFailure = (l: string) => failureFromLine(l) !== undefined;

test("loop mode on one GPU: a failure line ends the sample stream; it is never a sample and the exit carries it", async () => {
  const { spawn, runner } = rig();
  const samples: string[][] = [];
  const exits: LoopExit[] = [];
  runner.startLoop(["-lms", "100"], { linesPerSample: 1, overdueMs: 15_000, startsSample: (l) => l.startsWith("0, "), endsStream: isFailure }, {
    sample: (lines) => samples.push([...lines]),
    overdue() {},
    exit: (e) => exits.push(e),
  });
  const child = spawn.children[0]!;
  child.print("0, 34\n");
  child.print(`${DRIVER}\n`);
  child.exit(9);
  await flush();
  assert.deepEqual(samples, [["0, 34"]]);
  assert.deepEqual([exits[0]!.code, exits[0]!.leftover, exits[0]!.stopped], [9, DRIVER, false]);
  assert.deepEqual(child.signals, [], "it ended by itself: not signalled");
});

test("loop mode on four GPUs: the rows before a failure line are no sample either; a loop that goes on is sent SIGTERM after the grace", async () => {
  const { spawn, runner, clock } = rig();
  const samples: string[][] = [];
  const exits: LoopExit[] = [];
  runner.startLoop(["-lms", "100"], { linesPerSample: 4, overdueMs: 15_000, startsSample: (l) => l.startsWith("0, "), endsStream: isFailure }, {
    sample: (lines) => samples.push([...lines]),
    overdue() {},
    exit: (e) => exits.push(e),
  });
  const child = spawn.children[0]!;
  child.print("0, 34\n1, 35\n2, 36\n3, 37\n0, 34\n");
  child.print("Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost. Reboot the system to recover this GPU\n2, 36\n3, 37\n0, 34\n1, 35\n");
  assert.deepEqual(samples, [["0, 34", "1, 35", "2, 36", "3, 37"]]);
  clock.advance(FAILURE_GRACE_MS - 1);
  assert.deepEqual(child.signals, []);
  clock.advance(1);
  assert.deepEqual(child.signals, ["SIGTERM"]);
  await flush();
  assert.equal(samples.length, 1, "nothing after the failure line became a sample");
  assert.equal(exits[0]!.signal, "SIGTERM");
  assert.equal(exits[0]!.leftover.split("\n")[1], "Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost. Reboot the system to recover this GPU");
  assert.equal(exits[0]!.overdue, false);
});

test("against the simulated nvidia-smi: a hang costs one deadline and leaves no process behind", async (t) => {
  const box = await simBox(t, (s) => {
    s.failure = "hang";
  });
  const runner = realSmiRunner(box.nvidiaSmi, 600);
  const started = Date.now();
  const err = await rejection(runner.query(["--query-gpu=index", "--format=csv,noheader,nounits"]));
  const took = Date.now() - started;
  assert.equal(err.code, "LLMSUP_E_GPU_UNRESPONSIVE");
  assert.ok(took >= 590 && took < 2_000, `took ${took} ms`);
  // The simulator, unlike a driver-stuck nvidia-smi, dies of SIGKILL: the runner notices and allows the next one.
  await waitUntil("the killed process to be reaped", () => runner.stuck() === undefined);
  await box.set((s) => {
    s.failure = null;
  });
  const ok = await runner.query(["--query-gpu=index,pci.bus_id", "--format=csv,noheader,nounits"]);
  assert.deepEqual([ok.exitCode, ok.output], [0, "0, 00000000:1B:00.0\n1, 00000000:3B:00.0\n"]);
});
