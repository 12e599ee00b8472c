/**
 * Operations that cross the owner's own work — a stop while a start is under
 * way, a restart while a restart is already scheduled, an exit while a stop
 * waits for it — with fake processes and a clock the test moves: each ends in
 * the states the table allows, with exactly the processes it should have.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { VramHolder, VramProbe } from "../../src/supervisor/vram.ts";
import { deferred, fakeSupervisor as setup, flush } from "../helpers/fake-process.ts";
import { waitUntil } from "../helpers/wait.ts";

const MIN = 60_000;

test("stop during starting: the loading process is stopped, and nothing starts again", async (t) => {
  const { sup, owner, clock, spawner, path } = setup(t);
  await sup.start("b");
  assert.equal(owner.currentState, "starting");
  await sup.stop("b");
  assert.deepEqual(path(), ["starting", "stopping", "stopped"]);
  assert.deepEqual(spawner.last.signals, ["SIGTERM"]);
  assert.equal(owner.snapshot().lastExit?.class, "stopped");
  await clock.run(30 * MIN);
  assert.deepEqual(path(), ["starting", "stopping", "stopped"], "no startup timeout, no restart");
  assert.equal(spawner.children.length, 1);
  assert.deepEqual(spawner.running, []);
  assert.equal(clock.pendingTimers, 0, "no timer left behind");
});

test("stop while the spawn is still in flight: the process it brings is stopped at once, never left running", async (t) => {
  const { sup, spawner, path, clock } = setup(t);
  const release = spawner.hold();
  const starting = sup.start("b");
  // The start opens its log file (real I/O) before it asks for the spawn: wait until it has asked.
  await waitUntil("the start to ask for its spawn", () => spawner.requests === 1, { timeoutMs: 5_000, everyMs: 1 });
  const stopping = sup.stop("b");
  await flush();
  release();
  await Promise.all([starting, stopping]);
  assert.deepEqual(path(), ["starting", "stopping", "stopped"]);
  assert.equal(spawner.children.length, 1);
  assert.deepEqual(spawner.running, []);
  await clock.run(30 * MIN);
  assert.equal(spawner.children.length, 1);
});

test("stop before the start reached its spawn: the start is called off, nothing is spawned", async (t) => {
  const { sup, spawner, path } = setup(t);
  // The first start opens the log file before it spawns: the stop comes in while it does.
  const starting = sup.start("b");
  const stopping = sup.stop("b");
  await Promise.all([starting, stopping]);
  assert.deepEqual(path(), []);
  assert.equal(spawner.children.length, 0);
});

test("restart during backoff: one new process at once, and the scheduled restart does not start another", async (t) => {
  const { sup, owner, clock, spawner, path, serve } = setup(t);
  await serve();
  spawner.last.exit(3);
  await flush();
  assert.equal(owner.currentState, "backoff");
  await sup.restart("b");
  await flush();
  assert.deepEqual(path(), ["starting", "ready", "exited", "backoff", "starting", "ready"]);
  await clock.run(5_000);
  assert.equal(spawner.children.length, 2, "the backoff's own start was cancelled");
  assert.deepEqual(spawner.running, [spawner.children[1]]);
  assert.deepEqual(owner.snapshot().budget, { used: 1, burst: 5 }, "the crash counted; the operator's restart did not");
});

test("stop during backoff: stays stopped, the scheduled restart never comes", async (t) => {
  const { sup, clock, spawner, path, serve } = setup(t);
  await serve();
  spawner.last.exit(3);
  await flush();
  await sup.stop("b");
  assert.deepEqual(path(), ["starting", "ready", "exited", "backoff", "stopped"]);
  await clock.run(30 * MIN);
  assert.deepEqual(path(), ["starting", "ready", "exited", "backoff", "stopped"]);
  assert.equal(spawner.children.length, 1);
  assert.equal(clock.pendingTimers, 0);
});

test("reset while blocked on another process's GPU memory: one new process, the wait for the holder ends", async (t) => {
  // The holder is this test process: alive, and not in any group the owner spawned.
  const holder: VramHolder = { pid: process.pid, gpu: 0, usedMemoryMib: 80_000, processName: "python3 someone-elses-job.py" };
  let held = true;
  const vram: VramProbe = { holders: async () => (held ? [holder] : []) };
  const { sup, owner, clock, spawner, path, events } = setup(t, { vram, gpus: [0] });
  await sup.start("b");
  spawner.last.print("ValueError: Free memory on device (2.1/79.1 GiB) on startup is less than desired GPU memory utilization (0.9, 71.2 GiB).");
  spawner.last.exit(1);
  await events.state("b", "blocked");
  assert.deepEqual(path(), ["starting", "exited", "blocked"]);
  assert.deepEqual(owner.snapshot().budget, { used: 0, burst: 5 });
  await sup.reset("b");
  assert.deepEqual(path(), ["starting", "exited", "blocked", "starting"]);
  held = false;
  await clock.run(10_000);
  assert.equal(spawner.children.length, 2, "the blocked wait did not start another");
  assert.deepEqual(spawner.running, [spawner.children[1]]);
  assert.equal(owner.currentState, "starting");
});

test("a crash during stopping: the stop's exit, stopped, no restart", async (t) => {
  const { sup, owner, clock, spawner, path, serve } = setup(t);
  await serve();
  spawner.last.onSigterm = "ignore";
  const stopping = sup.stop("b");
  await flush();
  assert.equal(owner.currentState, "stopping");
  spawner.last.print("Segmentation fault");
  spawner.last.exit(139);
  await stopping;
  assert.deepEqual(path(), ["starting", "ready", "stopping", "stopped"]);
  assert.equal(owner.snapshot().lastExit?.class, "stopped");
  assert.deepEqual(spawner.last.signals, ["SIGTERM"], "no SIGKILL: it was gone before stop_timeout");
  await clock.run(30 * MIN);
  assert.equal(spawner.children.length, 1);
  assert.equal(clock.pendingTimers, 0);
});

test("a crash during a restart's stopping: exited, then exactly one new process", async (t) => {
  const { sup, clock, spawner, path, serve, owner } = setup(t);
  await serve();
  spawner.last.onSigterm = "ignore";
  const restarting = sup.restart("b");
  await flush();
  spawner.last.exit(139);
  await restarting;
  await flush();
  assert.deepEqual(path(), ["starting", "ready", "stopping", "exited", "starting", "ready"]);
  await clock.run(5_000);
  assert.equal(spawner.children.length, 2);
  assert.deepEqual(spawner.running, [spawner.children[1]]);
  assert.deepEqual(owner.snapshot().budget, { used: 0, burst: 5 });
});

test("restart while fatal: one try with the budget still spent; a failure is fatal again, and only reset clears it", async (t) => {
  const { sup, owner, clock, spawner, prober, path, serve } = setup(t, { process: { start_limit_burst: "1" } });
  await serve();
  prober.ready = false;
  spawner.last.exit(7);
  await flush();
  await clock.run(1_000);
  spawner.last.exit(7);
  await flush();
  assert.deepEqual(path(), ["starting", "ready", "exited", "backoff", "starting", "exited", "fatal"]);
  await sup.start("b");
  assert.equal(owner.currentState, "fatal", "start does not leave fatal");
  await sup.restart("b");
  assert.equal(owner.currentState, "starting");
  spawner.last.exit(7);
  await flush();
  assert.deepEqual(path().slice(7), ["starting", "exited", "fatal"]);
  await clock.run(30 * MIN);
  assert.equal(spawner.children.length, 3);
  assert.deepEqual(spawner.running, []);
  await sup.reset("b");
  spawner.last.exit(7);
  await flush();
  assert.deepEqual(path().slice(10), ["starting", "exited", "backoff"], "after reset a failure backs off again");
  assert.deepEqual(owner.snapshot().budget, { used: 1, burst: 1 });
});

test("stop while an exit is still being judged: stopped once it is, and the restart it would have scheduled never comes", async (t) => {
  const pressure = deferred<boolean>();
  const { sup, owner, clock, spawner, path, serve } = setup(t, { hostMemoryPressure: () => pressure.promise });
  await serve();
  // A SIGKILL nobody asked for: the owner asks whether the host is short of memory before judging.
  spawner.last.exit(null, "SIGKILL");
  await flush();
  const stopping = sup.stop("b");
  await flush();
  assert.equal(owner.currentState, "ready", "nothing happens on top of the exit being judged");
  pressure.resolve(false);
  await stopping;
  assert.deepEqual(path(), ["starting", "ready", "exited", "backoff", "stopped"]);
  await clock.run(30 * MIN);
  assert.equal(spawner.children.length, 1);
});

test("start while an exit is still being judged: exactly one new process, once the exit is judged", async (t) => {
  const pressure = deferred<boolean>();
  const { sup, owner, clock, spawner, path, serve } = setup(t, { hostMemoryPressure: () => pressure.promise });
  await serve();
  spawner.last.exit(null, "SIGKILL");
  await flush();
  const starting = sup.start("b");
  await flush();
  assert.equal(spawner.children.length, 1);
  pressure.resolve(true);
  await starting;
  await flush();
  assert.deepEqual(path(), ["starting", "ready", "exited", "backoff", "starting", "ready"]);
  assert.equal(owner.snapshot().lastExit?.class, "oom_killed");
  await clock.run(5_000);
  assert.equal(spawner.children.length, 2);
  assert.deepEqual(spawner.running, [spawner.children[1]]);
});

test("a program that cannot be spawned: starting, then backoff, and the next try after the delay", async (t) => {
  const { sup, clock, spawner, path, owner, events } = setup(t);
  spawner.failNext("cannot start /opt/fake/vllm: ENOENT");
  await sup.start("b");
  assert.deepEqual(path(), ["starting", "backoff"]);
  assert.equal(events.states("b")[1]!.exit?.class, "spawn_failed");
  assert.ok((await owner.logTail()).some((l) => /ENOENT/.test(l)));
  await clock.run(1_000);
  assert.deepEqual(path(), ["starting", "backoff", "starting"]);
  assert.equal(spawner.children.length, 1);
});
