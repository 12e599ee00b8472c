/** The supervisor against real simulated servers: start, readiness, crashes, budget, stops. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { Supervisor } from "../../src/supervisor/supervisor.ts";
import { isAlive } from "../../src/platform/procfs.ts";
import { pidAlive } from "../../src/sim/gpu/state.ts";
import { memoryLogger, realSupervisorDeps, superviseOne, testConfig } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";
import { LlmsupError } from "../../src/errors/error.ts";

test("start means readiness passed: llama-server's 503 Loading model is not a failure until startup_timeout", async (t) => {
  const { sup, events, port } = await superviseOne(t, { kind: "llamacpp", simArgs: ["--load-time", "1200ms"] });
  const t0 = Date.now();
  await sup.start("b");
  assert.equal(sup.snapshot()[0]!.state, "starting");
  // Once the port answers (process start-up takes a while on a busy machine), the server says "Loading model" for its load time.
  let snap = sup.snapshot()[0]!;
  while (snap.state === "starting" && !/^loading model/.test(snap.progress ?? "")) {
    await new Promise((r) => setTimeout(r, 25));
    snap = sup.snapshot()[0]!;
  }
  assert.equal(snap.state, "starting", "still starting while the model loads");
  assert.match(snap.progress ?? "", /^loading model \(for \d/);
  const ready = await events.state("b", "ready");
  assert.ok(ready.at - t0 >= 1_100, "ready only once /health says 200");
  assert.equal(events.states("b").filter((e) => e.to === "exited").length, 0);
  assert.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200);
  assert.deepEqual(sup.snapshot()[0]!.budget, { used: 0, burst: 5 });
});

test("startup timeout: the start is stopped and counted", async (t) => {
  const { sup, events: ev } = await superviseOne(t, {
    name: "slow",
    kind: "llamacpp",
    simArgs: ["--load-time", "30s"],
    process: `  restart_sec = "5s"\n  restart_max_delay = "5s"\n  startup_timeout = "800ms"\n  stop_timeout = "1s"`,
  });
  await sup.start("slow");
  const exited = await ev.state("slow", "exited");
  assert.equal(exited.exit?.class, "startup_timeout");
  assert.match(exited.reason, /not ready after 800ms/);
  const backoff = await ev.state("slow", "backoff");
  assert.deepEqual(backoff.budget, { used: 1, burst: 5 });
});

test("a crash is restarted after the configured delay, and the delays grow", async (t) => {
  const { sup, events } = await superviseOne(t, { kind: "llamacpp", simArgs: ["--load-time", "0s", "--crash-exit-code", "3", "--crash-after", "250ms"] });
  await sup.start("b");
  const first = await events.state("b", "backoff", { nth: 1 });
  const second = await events.state("b", "backoff", { nth: 2 });
  const third = await events.state("b", "backoff", { nth: 3 });
  assert.equal(first.exit?.class, "crash");
  assert.equal(first.exit?.code, 3);
  assert.match(first.reason, /restarting in \d+ms after: crashed \(exit status 3\)/);
  const delays = [first, second, third].map((e) => e.restartInMs!);
  assert.ok(delays[0]! >= 100 && delays[0]! <= 110, `first delay is restart_sec plus jitter: ${delays[0]}`);
  assert.ok(delays[1]! > delays[0]! && delays[2]! > delays[1]!, `delays grow: ${delays.join(", ")}`);
  // The restart happened no earlier than the delay.
  const restarted = await events.state("b", "starting", { nth: 2 });
  assert.ok(restarted.at - first.at >= first.restartInMs! - 5, "waited the backoff");
  assert.ok(restarted.generation === 2);
  assert.deepEqual(third.budget, { used: 3, burst: 5 });
});

test("a crash loop ends in fatal after the burst, with no further spawns until reset", async (t) => {
  const { sup, events } = await superviseOne(t, { kind: "llamacpp", simArgs: ["--crash-exit-code", "7"] });
  await sup.start("b");
  // Six simulator starts, each a Node process: on a loaded 2-core box that can take a while.
  const fatal = await events.state("b", "fatal", { ms: 30_000 });
  assert.match(fatal.reason, /restart budget spent: 6 failed starts within 1m \(start_limit_burst 5\)/);
  assert.match(fatal.reason, /llmsup reset b/);
  assert.equal(fatal.exit?.code, 7);
  const spawns = events.states("b").filter((e) => e.to === "starting").length;
  assert.equal(spawns, 6);
  await new Promise((r) => setTimeout(r, 700));
  assert.equal(events.states("b").filter((e) => e.to === "starting").length, spawns, "no spawn after fatal");
  await sup.start("b");
  assert.equal(sup.snapshot()[0]!.state, "fatal", "start does not leave fatal");
  await sup.reset("b");
  await events.state("b", "starting", { nth: spawns + 1 });
  assert.equal(sup.snapshot()[0]!.budget.used <= 1, true);
});

test("out of memory at load is classified as oom, with the line that says so", async (t) => {
  const { sup, events } = await superviseOne(t, { kind: "llamacpp", simArgs: ["--load-time", "0s", "--oom", "load"] });
  await sup.start("b");
  const exited = await events.state("b", "exited");
  assert.equal(exited.exit?.class, "oom");
  assert.match(exited.exit?.evidence ?? "", /cudaMalloc failed: out of memory/);
  assert.ok(exited.exit!.lastLines.some((l) => /llama_model_load: error loading model/.test(l)));
  assert.equal(exited.exit?.pid, exited.pid);
  assert.equal(exited.generation, 1);
});

test("wedge: /health says 200 but 1-token completions hang → found by the deep probe and restarted", async (t) => {
  const { sup, events, port } = await superviseOne(t, { kind: "llamacpp", simArgs: ["--load-time", "0s"], health: `  deep_interval = "100ms"\n  deep_timeout = "300ms"\n  wedge_failures = 2` });
  await sup.start("b");
  await events.state("b", "ready");
  const r = await fetch(`http://127.0.0.1:${port}/_sim/fault`, { method: "POST", body: JSON.stringify({ wedge: true }) });
  assert.equal(r.status, 200);
  const stopping = await events.state("b", "stopping");
  assert.match(stopping.reason, /wedged: 2 consecutive 1-token completions failed while \/health answered/);
  const exited = await events.state("b", "exited");
  assert.equal(exited.exit?.class, "wedged");
  const ready2 = await events.state("b", "ready", { nth: 2 });
  assert.equal(ready2.generation, 2, "a fresh process serves again");
  assert.equal(sup.snapshot()[0]!.budget.used, 1, "a wedge restart counts against the budget");
});

test("stop reaches grandchildren: vLLM's engine child goes with its process group", async (t) => {
  const { sup, events } = await superviseOne(t, { kind: "vllm", simArgs: ["--load-time", "0s", "--model", "m"] });
  await sup.start("b");
  const ready = await events.state("b", "ready");
  const parent = ready.pid!;
  const engine = Number(readFileSync(`/proc/${parent}/task/${parent}/children`, "utf8").trim().split(/\s+/)[0]);
  assert.ok(engine > 0 && (await isAlive(engine)), "the engine child runs");
  await sup.stop("b");
  const stopped = events.states("b").at(-1)!;
  assert.equal(stopped.to, "stopped");
  assert.equal(stopped.exit?.class, "stopped");
  assert.equal(await isAlive(parent), false);
  assert.equal(await isAlive(engine), false, "the grandchild is gone too");
});

test("a stop escalates to SIGKILL when SIGTERM is not enough", async (t) => {
  // A process that ignores SIGTERM.
  const script = `process.on("SIGTERM", () => {}); require("http").createServer((q, s) => s.end("ok")).listen({PORT}, "127.0.0.1"); setInterval(() => {}, 1000);`;
  const { sup, events, logLines } = await superviseOne(t, { name: "stubborn", kind: "vllm", command: JSON.stringify([process.execPath, "-e", script]), process: `  stop_timeout = "400ms"` });
  await sup.start("stubborn");
  await events.state("stubborn", "ready");
  const t0 = Date.now();
  await sup.stop("stubborn");
  assert.ok(Date.now() - t0 >= 380, "waited stop_timeout before SIGKILL");
  const stopped = events.states("stubborn").at(-1)!;
  assert.equal(stopped.to, "stopped");
  assert.equal(stopped.exit?.signal, "SIGKILL");
  assert.ok(logLines().some((l) => l.event === "backend.stop.sigkill"));
});

test("restart by the operator does not count against the budget; output goes to the log file and the tail", async (t) => {
  const { sup, events } = await superviseOne(t, { kind: "llamacpp", simArgs: ["--load-time", "0s"] });
  await sup.start("b");
  await events.state("b", "ready");
  await sup.restart("b");
  const ready2 = await events.state("b", "ready", { nth: 2 });
  assert.equal(ready2.generation, 2);
  assert.equal(sup.snapshot()[0]!.budget.used, 0);
  assert.ok((await sup.tail("b", 10)).some((l) => /main: server is listening on/.test(l)));
  const file = sup.snapshot()[0]!.logFile;
  assert.ok(existsSync(file));
  assert.equal(path.basename(file), "b.log");
  assert.equal(readFileSync(file, "utf8").match(/server is listening/g)?.length, 2, "both generations in the log file");
});

test("operations on unknown or remote backends are clear errors", async (t) => {
  const dir = tempDir(t);
  const config = testConfig(
    dir,
    `[[backend]]
name = "remote"
kind = "openai"
url = "http://127.0.0.1:9"
[[route]]
model = "m"
tiers = [{ backend = "remote", model = "m" }]
`,
  );
  const sup = new Supervisor(config, { ...realSupervisorDeps(), logger: memoryLogger().logger });
  assert.throws(() => sup.owner("nope"), (e: unknown) => e instanceof LlmsupError && e.code === "LLMSUP_E_BACKEND_UNKNOWN");
  assert.throws(() => sup.owner("remote"), (e: unknown) => e instanceof LlmsupError && e.code === "LLMSUP_E_BACKEND_NOT_MANAGED");
  assert.deepEqual(sup.snapshot(), []);
});

test("a program that cannot be started is a failed start with the reason in the tail", async (t) => {
  const { sup, events } = await superviseOne(t, { name: "missing", kind: "vllm", command: `["/nonexistent/vllm"]`, process: `  restart_sec = "5s"\n  restart_max_delay = "5s"` });
  await sup.start("missing");
  const backoff = await events.state("missing", "backoff");
  assert.equal(backoff.exit?.class, "spawn_failed");
  assert.match(backoff.reason, /cannot start \/nonexistent\/vllm: ENOENT/);
  assert.ok((await sup.tail("missing")).some((l) => /ENOENT/.test(l)));
});

test("a group member that ignores SIGTERM does not hold up the exit: exited at once, the restart only after the remains are killed, nothing left at the end", async (t) => {
  const marks = tempDir(t);
  // The leader starts a child in its own process group that ignores SIGTERM, serves, and (the first time only) exits 800ms later.
  const child = `process.on("SIGTERM", () => {}); require("fs").writeFileSync(process.argv[1], String(process.pid)); setInterval(() => {}, 1000);`;
  const leader = `
    const fs = require("fs"), path = require("path"), dir = ${JSON.stringify(marks)};
    const first = !fs.existsSync(path.join(dir, "first"));
    if (first) fs.writeFileSync(path.join(dir, "first"), "");
    const childFile = path.join(dir, first ? "child1" : "child2");
    require("child_process").spawn(process.execPath, ["-e", ${JSON.stringify(child)}, childFile], { stdio: "ignore" });
    const armed = setInterval(() => {
      if (!fs.existsSync(childFile) || fs.readFileSync(childFile, "utf8") === "") return;
      clearInterval(armed);
      require("http").createServer((q, s) => s.end("ok")).listen({PORT}, "127.0.0.1");
      if (first) setTimeout(() => { fs.writeFileSync(path.join(dir, "leader-exit"), String(Date.now())); process.exit(3); }, 800);
    }, 20);`;
  const { sup, events } = await superviseOne(t, { name: "grouped", kind: "vllm", command: JSON.stringify([process.execPath, "-e", leader]), process: `  stop_timeout = "2s"` });
  await sup.start("grouped");
  const ready = await events.state("grouped", "ready");
  const child1 = Number(readFileSync(path.join(marks, "child1"), "utf8"));
  assert.ok(await isAlive(child1), "the group member runs beside the leader");
  let atRestart: { child1Alive: boolean } | undefined;
  void events.waitFor("generation 2 starting", (e) => e.event === "backend.state" && e.to === "starting" && e.generation === 2, 20_000).then(() => {
    atRestart = { child1Alive: pidAlive(child1) };
  });

  const exited = await events.state("grouped", "exited");
  const leaderGone = Number(readFileSync(path.join(marks, "leader-exit"), "utf8"));
  assert.ok(exited.at - leaderGone < 1_000, `exited ${exited.at - leaderGone}ms after the leader's death, not after stop_timeout`);
  assert.equal(exited.pid, ready.pid);
  assert.equal(exited.exit?.code, 3);
  assert.equal(exited.exit?.class, "crash");
  const backoff = await events.state("grouped", "backoff");
  assert.ok(backoff.at - exited.at < 500, "the restart decision follows at once");
  assert.equal(sup.snapshot()[0]!.pid, undefined, "no pid while it is down");
  assert.ok(pidAlive(child1), "the member that ignores SIGTERM is still being waited for");

  const restarted = await events.state("grouped", "starting", { nth: 2, ms: 20_000 });
  assert.deepEqual(atRestart, { child1Alive: false }, "the next generation was spawned only once the remains were gone");
  assert.ok(restarted.at - exited.at >= 1_900, `the remains got stop_timeout after SIGTERM before SIGKILL (${restarted.at - exited.at}ms)`);
  await events.state("grouped", "ready", { nth: 2 });
  const child2 = Number(readFileSync(path.join(marks, "child2"), "utf8"));
  assert.ok(pidAlive(child2));

  await sup.stop("grouped");
  assert.equal(sup.snapshot()[0]!.state, "stopped");
  assert.deepEqual([pidAlive(child1), pidAlive(child2), pidAlive(restarted.pid!)], [false, false, false], "nothing of either generation is left running");
});
