/**
 * Router faults against a real daemon on simulated backends: each is seen by
 * the router as the real failure it imitates (the failure class of the
 * request's failover), falls over with no client error since a fallback
 * exists, comes back, is marked as a drill in the log, and costs no restart
 * budget; a drill with no fallback to take the traffic is refused; `llmsup
 * drill stop` ends one early; the daemon's stop ends one.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { DaemonEvent } from "../../src/daemon/daemon.ts";
import type { DrillReport } from "../../src/drills/report.ts";
import type { RouterEvent } from "../../src/router/router.ts";
import { drillDaemon } from "./helpers.ts";
import { startSim } from "../helpers/sim.ts";

type Failover = Extract<RouterEvent, { event: "router.failover" }>;

/** The failure class a request's move off tier 0 names, per fault, and the extra knobs that keep each test short. */
const FAMILIES = [
  { fault: "latency", cls: "ttft_timeout", args: ["--delay", "2s"] },
  { fault: "errors", cls: "server_error", args: ["--status", "502"] },
  { fault: "rate-limit", cls: "rate_limited", args: ["--retry-after", "1s"] },
  { fault: "stream-cut", cls: "stream_broken", args: ["--chunks", "3"] },
  { fault: "quality", cls: "quality", args: [] },
  { fault: "block", cls: "connect", args: [] },
] as const;

const failoversOffPrimary = (events: readonly DaemonEvent[], from: number) =>
  events.filter((e): e is Failover => e.event === "router.failover" && e.route === "llama" && e.from.backend === "primary" && e.at >= from);

for (const f of FAMILIES) {
  test(`router fault ${f.fault}: the router sees ${f.cls}, falls over with no client error, comes back; marked as a drill; no process touched, no budget spent`, { timeout: 90_000 }, async (t) => {
    const { daemon, events, cli, log } = await drillDaemon(t);
    const owner = daemon.supervisor.owner("primary");
    const pidBefore = owner.snapshot().pid;
    const budgetBefore = owner.snapshot().budget;
    const persistedBefore = owner.persisted().failures;
    const r = await cli("drill", f.fault, "--duration", "1500ms", ...f.args, "--json");
    const report = JSON.parse(r.stdout) as DrillReport;
    assert.equal(r.code, 0, `${r.stderr}\n${JSON.stringify(report, null, 1)}`);
    assert.equal(report.verdict, "pass");
    assert.equal(report.client_errors, 0);
    assert.ok(report.requests >= 4, `requests ${report.requests}`);
    assert.ok(report.fallback_answers > 0, "the fallback answered meanwhile");
    assert.ok((report.faults_injected ?? 0) > 0, "the fault hit attempts");
    assert.ok(report.failover_ms !== null && report.recovery_ms !== null && report.detection_ms !== null);
    assert.deepEqual(report.alert, { raised: true, delivered: true });
    assert.ok(report.alert_delivered_ms !== null && report.alert_delivered_ms >= report.failover_ms, "the mail went out after the route moved");
    assert.ok(report.router && report.router.fallback_answers > 0 && report.router.unanswered === 0, `router counters ${JSON.stringify(report.router)}`);

    // Seen as the real failure: the requests moved off tier 0 name its class.
    const injectedAt = Date.parse(report.injected_at);
    const moves = failoversOffPrimary(events, injectedAt);
    assert.ok(moves.some((e) => e.reason === f.cls), `a failover for ${f.cls}; saw ${JSON.stringify(moves.map((e) => [e.reason, e.detail]))}`);
    // Marked as a drill: each injection is logged with the drill's id, and the texts the router passes on carry the mark.
    const injected = log().filter((l) => l.event === "drill.fault.injected" && l.drill === report.id);
    assert.ok(injected.length > 0 && injected.every((l) => l.fault === f.fault && l.backend === "primary"));
    if (f.fault !== "stream-cut") assert.ok(moves.some((e) => e.detail.includes(`[drill ${report.id}: ${f.fault}]`)), JSON.stringify(moves.map((e) => e.detail)));
    assert.ok(log().some((l) => l.event === "drill.fault.ended" && l.drill === report.id));
    // The fault's window is in the daemon's history, among the failovers it caused.
    const history = (await cli("events", "--kind", "drill")).stdout;
    assert.match(history, new RegExp(`drill ${report.id}: ${f.fault} injected on primary/m in the router until`));
    assert.match(history, new RegExp(`drill ${report.id}: ${f.fault} on primary lifted \\(its duration is over\\) after \\d+ injected failure`));

    // Nothing happened to the process, and the budget is untouched.
    assert.equal(owner.snapshot().pid, pidBefore);
    assert.equal(events.filter((e) => e.event === "backend.state" && e.backend === "primary" && e.at >= injectedAt).length, 0, "no process state change");
    assert.deepEqual(owner.snapshot().budget, budgetBefore);
    assert.deepEqual(owner.persisted().failures, persistedBefore);
  });
}

test("a router fault is refused when no later tier could take the traffic, and the route is untouched", { timeout: 60_000 }, async (t) => {
  const { cli, events, log } = await drillDaemon(t);
  const stop = await cli("stop", "fallback");
  assert.equal(stop.code, 0, stop.stderr);
  const deadline = Date.now() + 10_000;
  let r;
  do {
    r = await cli("drill", "errors", "--duration", "1s");
    if (/no fallback tier/.test(r.stderr)) break;
    await new Promise((res) => setTimeout(res, 200));
  } while (Date.now() < deadline);
  assert.equal(r.code, 69, r.stderr);
  assert.match(r.stderr, /LLMSUP_E_DRILL_REFUSED: no fallback tier of llama can take requests right now/);
  assert.equal(log().filter((l) => l.event === "drill.fault.started").length, 0, "no fault was put in force");
  assert.equal(events.filter((e) => e.event === "router.failover").length, 0);
});

test("`llmsup drill stop` lifts a router fault at once; the drill reports it stopped; the daemon's stop lifts one too", { timeout: 90_000 }, async (t) => {
  const { daemon, cli, log } = await drillDaemon(t);
  const started = Date.now();
  const running = cli("drill", "block", "--duration", "10m", "--json");
  while (!log().some((l) => l.event === "drill.fault.started")) await new Promise((res) => setTimeout(res, 50));
  await new Promise((res) => setTimeout(res, 500));
  const stop = await cli("drill", "stop", "--json");
  assert.equal(stop.code, 0, stop.stderr);
  assert.deepEqual(JSON.parse(stop.stdout), { stopped: true, what: "drill block" });
  const r = await running;
  const report = JSON.parse(r.stdout) as DrillReport;
  assert.equal(report.stopped, true);
  assert.ok(report.ended_ms !== null && report.ended_ms < 5_000, `ended after ${report.ended_ms}ms`);
  assert.ok(Date.now() - started < 60_000);
  const none = await cli("drill", "stop", "--json");
  assert.deepEqual(JSON.parse(none.stdout), { stopped: false });

  // A fault in force when the daemon stops ends with it.
  const held = daemon.drill({ scenario: "errors", durationMs: 600_000, traffic: false });
  while (log().filter((l) => l.event === "drill.fault.started").length < 2) await new Promise((res) => setTimeout(res, 50));
  const stopping = Date.now();
  await daemon.stop("the test stops the daemon");
  await held.catch(() => undefined);
  assert.ok(Date.now() - stopping < 10_000, "the drill reported at once, without waiting for a route the stop took down");
  const ended = log().filter((l) => l.event === "drill.fault.ended");
  assert.equal(ended.length, 2);
  assert.equal(ended[1]!.why, "llmsup is stopping");
});

test("a router fault needs no process: it runs on a remote tier 0, and a process drill there is refused", { timeout: 90_000 }, async (t) => {
  const sim = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s"]);
  const { cli } = await drillDaemon(t, { remotePrimary: sim.url });
  const r = await cli("drill", "errors", "--duration", "1s", "--json");
  const report = JSON.parse(r.stdout) as DrillReport;
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(report.client_errors, 0);
  assert.ok(report.failover_ms !== null && report.recovery_ms !== null);
  const crash = await cli("drill", "backend-crash", "--duration", "1s");
  assert.equal(crash.code, 69);
  assert.match(crash.stderr, /needs tier 0 of llama \(primary\) to be a running managed backend/);
});
