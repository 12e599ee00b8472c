/** Exits a failover drill causes on purpose: recorded as the drill's, never a failed start. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { superviseOne } from "../helpers/supervise.ts";

test("an exit a drill announced is the drill's: class drill, its id in the reason, the budget untouched, restarted at once", async (t) => {
  const { sup, events } = await superviseOne(t, { kind: "llamacpp", simArgs: ["--load-time", "0s"] });
  await sup.start("b");
  await events.state("b", "ready");
  const mark = sup.expectDrillExit("b", { id: "d1", scenario: "backend-crash" });
  assert.equal(mark.pid, sup.snapshot()[0]!.pid);
  assert.equal(mark.generation, 1);
  process.kill(mark.pid, "SIGKILL");
  const exited = await events.state("b", "exited");
  assert.equal(exited.exit?.class, "drill");
  assert.deepEqual(exited.exit?.drill, { id: "d1", scenario: "backend-crash" });
  assert.match(exited.reason, /^caused by drill d1 \(backend-crash\): killed by SIGKILL \(the drill's\); restart budget untouched$/);
  const backoff = await events.state("b", "backoff");
  assert.deepEqual(backoff.budget, { used: 0, burst: 5 });
  assert.ok(backoff.restartInMs! < 150, `the first delay, not a grown one: ${backoff.restartInMs}`);
  const starting = await events.state("b", "starting", { nth: 2 });
  assert.match(starting.reason, /restart after drill d1 \(backend-crash\)/);
  await events.state("b", "ready", { nth: 2 });
  mark.end();
  assert.deepEqual(sup.snapshot()[0]!.budget, { used: 0, burst: 5 });
  assert.deepEqual(sup.owner("b").persisted().failures, [], "nothing for the next daemon to carry over");
  assert.equal(sup.snapshot()[0]!.lastExit?.class, "drill");
});

test("the restarted process is not the drill's: its own crash counts against the budget", async (t) => {
  const { sup, events } = await superviseOne(t, { kind: "llamacpp", simArgs: ["--load-time", "0s"] });
  await sup.start("b");
  await events.state("b", "ready");
  const mark = sup.expectDrillExit("b", { id: "d2", scenario: "backend-crash" });
  process.kill(mark.pid, "SIGKILL");
  const ready2 = await events.state("b", "ready", { nth: 2 });
  // Still inside the drill: a different generation is not what the drill broke.
  process.kill(ready2.pid!, "SIGKILL");
  const exited2 = await events.state("b", "exited", { nth: 2 });
  mark.end();
  assert.equal(exited2.exit?.class, "killed");
  assert.equal(exited2.exit?.drill, undefined);
  const backoff2 = await events.state("b", "backoff", { nth: 2 });
  assert.deepEqual(backoff2.budget, { used: 1, burst: 5 });
});

test("after the drill ended, an exit it did not cause counts as usual", async (t) => {
  const { sup, events } = await superviseOne(t, { kind: "llamacpp", simArgs: ["--load-time", "0s"] });
  await sup.start("b");
  await events.state("b", "ready");
  const mark = sup.expectDrillExit("b", { id: "d3", scenario: "backend-hang" });
  mark.end();
  process.kill(mark.pid, "SIGKILL");
  const exited = await events.state("b", "exited");
  assert.equal(exited.exit?.class, "killed");
  assert.deepEqual((await events.state("b", "backoff")).budget, { used: 1, burst: 5 });
});

test("a wedge restart llmsup asks for while a hang drill holds the backend is the drill's, even when the drill has ended by the time of the exit", async (t) => {
  const { sup, events, port } = await superviseOne(t, {
    kind: "llamacpp",
    simArgs: ["--load-time", "0s"],
    process: `  stop_timeout = "800ms"`,
    health: `  deep_interval = "100ms"\n  deep_timeout = "300ms"\n  wedge_failures = 2`,
  });
  await sup.start("b");
  await events.state("b", "ready");
  const mark = sup.expectDrillExit("b", { id: "d4", scenario: "backend-hang" });
  // /health answers, 1-token completions hang: the wedge path restarts it.
  const r = await fetch(`http://127.0.0.1:${port}/_sim/fault`, { method: "POST", body: JSON.stringify({ wedge: true }) });
  assert.equal(r.status, 200);
  const stopping = await events.state("b", "stopping");
  assert.match(stopping.reason, /wedged: .*\(during drill d4\)$/);
  // The drill ends before the process has even exited: what llmsup asked for during it stays the drill's.
  mark.end();
  const exited = await events.state("b", "exited");
  assert.equal(exited.exit?.class, "drill");
  assert.match(exited.reason, /^caused by drill d4 \(backend-hang\): liveness probes failed/);
  assert.deepEqual((await events.state("b", "backoff")).budget, { used: 0, burst: 5 });
  await events.state("b", "ready", { nth: 2 });
});

test("a drill cannot claim a backend that is not serving", async (t) => {
  const { sup } = await superviseOne(t, { kind: "llamacpp", simArgs: ["--load-time", "0s"] });
  assert.throws(() => sup.expectDrillExit("b", { id: "d5", scenario: "backend-crash" }), { code: "LLMSUP_E_DRILL_REFUSED", message: /needs b running and serving; it is stopped/ });
});
