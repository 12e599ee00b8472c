import { test } from "node:test";
import assert from "node:assert/strict";
import type { AlertEvent } from "../../src/alerts/events.ts";
import { decide, HOUR_MS, initialPolicyState, nextWake, tick, type PlannedMail, type PolicyConfig, type PolicyState } from "../../src/alerts/policy.ts";
import { backendRecovered, failover, fatal, MIN, recovery, ROUTE, T0 } from "./fixtures.ts";

const CFG: PolicyConfig = { coalesceWindowMs: 10 * MIN, maxPerHour: 30 };

/** Feeds events (each at its own `at`) and ticks at `tickAt`; collects every mail. */
function run(events: readonly AlertEvent[], cfg = CFG, tickAt: readonly number[] = []): { state: PolicyState; mails: PlannedMail[] } {
  let state = initialPolicyState();
  const mails: PlannedMail[] = [];
  const steps = [...events.map((e) => ({ at: e.at, e })), ...tickAt.map((at) => ({ at, e: undefined }))].sort((a, b) => a.at - b.at);
  for (const s of steps) {
    const d = s.e ? decide(state, s.e, s.at, cfg) : tick(state, s.at, cfg);
    state = d.state;
    mails.push(...d.mails);
  }
  return { state, mails };
}

test("a failover then a recovery: one mail each, the recovery paired with its failure", () => {
  const { mails, state } = run([failover(T0), recovery(T0 + 7 * MIN + 12_000)]);
  assert.deepEqual(mails.map((m) => [m.type, m.event?.kind]), [["event", "failover"], ["event", "recovery"]]);
  assert.deepEqual(mails[1]!.outage, { since: T0, until: T0 + 7 * MIN + 12_000, first: failover(T0) });
  assert.equal(mails[0]!.subject, `route:${ROUTE}`);
  assert.equal(mails[0]!.severity, "warning");
  assert.equal(nextWake(state, CFG), undefined, "nothing left to flush");
});

test("repeats of the same failover fold into the recovery mail and never mail by themselves", () => {
  const repeats = Array.from({ length: 14 }, (_, i) => failover(T0 + (i + 1) * 30_000));
  const { mails } = run([failover(T0), ...repeats, recovery(T0 + 9 * MIN)], CFG, [T0 + 10 * MIN, T0 + 20 * MIN]);
  assert.equal(mails.length, 2);
  const fold = mails[1]!.fold!;
  assert.equal(fold.count, 14);
  assert.equal(fold.byKind.failover, 14);
  assert.equal(fold.first, T0 + 30_000);
  assert.equal(fold.last, T0 + 14 * 30_000);
  assert.equal(fold.changes, 0);
  assert.ok(fold.recent.length <= 8);
});

test("twenty flaps in a minute: every change is mailed at once until the hourly cap, which holds the rest and counts them in one mail", () => {
  const events: AlertEvent[] = [];
  for (let i = 0; i < 20; i++) events.push(failover(T0 + i * 3000), recovery(T0 + i * 3000 + 1500));
  const { mails, state } = run(events);
  assert.equal(mails.length, 30, "max_per_hour mails, each about one change, as it happened");
  assert.deepEqual(
    mails.map((m) => [m.type, m.event?.kind, m.at]),
    events.slice(0, 30).map((e) => ["event", e.kind, e.at]),
  );
  assert.ok(mails.every((m) => m.fold === undefined), "a change is never folded, so nothing rides along");
  assert.equal(state.held!.mails, 10);
  assert.deepEqual(state.held!.events.byKind, { failover: 5, recovery: 5 });
  assert.equal(state.subjects[`route:${ROUTE}`]!.bad, false, "the policy ends where the route is: fine");
  assert.equal(nextWake(state, CFG), T0 + HOUR_MS, "the held mail waits for the first mail of the hour to age out");
  const later = tick(state, T0 + HOUR_MS, CFG);
  assert.deepEqual(later.mails.map((m) => [m.type, m.held?.mails, m.held?.events.count]), [["held", 10, 10]]);
  assert.equal(later.mails[0]!.held!.events.first, T0 + 15 * 3000);
  assert.equal(later.mails[0]!.held!.events.last, T0 + 19 * 3000 + 1500);
});

test("a failover inside the coalesce window after a recovery is mailed at once, and its recovery pairs with it", () => {
  const second = failover(T0 + 2 * MIN, ROUTE, 2);
  const { mails, state } = run([failover(T0), recovery(T0 + MIN), second, recovery(T0 + 25 * MIN)], CFG, [T0 + 11 * MIN]);
  assert.deepEqual(mails.map((m) => [m.type, m.event?.kind, m.at]), [
    ["event", "failover", T0],
    ["event", "recovery", T0 + MIN],
    ["event", "failover", T0 + 2 * MIN],
    ["event", "recovery", T0 + 25 * MIN],
  ]);
  assert.equal(mails[2]!.event, second);
  assert.equal(mails[2]!.fold, undefined);
  assert.deepEqual(mails[3]!.outage, { since: T0 + 2 * MIN, until: T0 + 25 * MIN, first: second });
  assert.equal(nextWake(state, CFG), undefined, "no summary is waiting");
});

test("a second outage that begins and ends inside the window gets its own failover and recovery mails, no summary", () => {
  const { mails } = run([failover(T0), recovery(T0 + MIN), failover(T0 + 2 * MIN), recovery(T0 + 5 * MIN)], CFG, [T0 + 11 * MIN, T0 + 30 * MIN]);
  assert.deepEqual(mails.map((m) => [m.type, m.event?.kind]), [
    ["event", "failover"],
    ["event", "recovery"],
    ["event", "failover"],
    ["event", "recovery"],
  ]);
  assert.deepEqual(mails[3]!.outage, { since: T0 + 2 * MIN, until: T0 + 5 * MIN, first: failover(T0 + 2 * MIN) });
});

test("every change of bad state goes out at once, a lesser one too, to whoever heard of the outage", () => {
  const down: AlertEvent = { kind: "all_tiers_down", at: T0 + MIN, route: ROUTE, tiers: [] };
  const cache: AlertEvent = { kind: "cache_serving", at: T0 + 2 * MIN, route: ROUTE };
  const { mails, state } = run([failover(T0), down, cache, recovery(T0 + 3 * MIN)], CFG, [T0 + 11 * MIN]);
  assert.deepEqual(mails.map((m) => [m.type, m.event?.kind, m.severity, m.at]), [
    ["event", "failover", "warning", T0],
    ["event", "all_tiers_down", "critical", T0 + MIN],
    ["event", "cache_serving", "critical", T0 + 2 * MIN],
    ["event", "recovery", "critical", T0 + 3 * MIN],
  ]);
  assert.equal(nextWake(state, CFG), undefined);
});

test("a repeat of the same state is folded into the next mail, never mailed, never summarised", () => {
  const down = (at: number): AlertEvent => ({ kind: "all_tiers_down", at, route: ROUTE, tiers: [] });
  const { mails, state } = run([failover(T0), failover(T0 + MIN), down(T0 + 2 * MIN), down(T0 + 3 * MIN), down(T0 + 15 * MIN)], CFG, [T0 + 11 * MIN, T0 + 40 * MIN]);
  assert.deepEqual(mails.map((m) => [m.type, m.event?.kind, m.fold?.count]), [
    ["event", "failover", undefined],
    ["event", "all_tiers_down", 1],
  ]);
  assert.equal(mails[1]!.fold!.byKind.failover, 1);
  assert.equal(state.subjects[`route:${ROUTE}`]!.fold!.count, 2, "the two repeats of all-tiers-down wait for the next mail");
  assert.equal(nextWake(state, CFG), undefined);
});

test("a second fatal of a backend inside the coalesce window is mailed at once", () => {
  const { mails } = run([fatal(T0), backendRecovered(T0 + MIN), fatal(T0 + 2 * MIN)], CFG, [T0 + 11 * MIN]);
  assert.deepEqual(mails.map((m) => [m.type, m.event?.kind, m.severity, m.at]), [
    ["event", "backend_fatal", "critical", T0],
    ["event", "backend_recovered", "critical", T0 + MIN],
    ["event", "backend_fatal", "critical", T0 + 2 * MIN],
  ]);
});

test("the same fatal again without a recovery in between is folded, and its all-clear pairs with the first fatal and goes to the critical recipients", () => {
  const { mails } = run([fatal(T0), fatal(T0 + MIN), backendRecovered(T0 + 30 * MIN)], CFG, [T0 + 11 * MIN]);
  assert.deepEqual(mails.map((m) => [m.event?.kind, m.severity, m.subject]), [
    ["backend_fatal", "critical", "backend:vllm-gpu0"],
    ["backend_recovered", "critical", "backend:vllm-gpu0"],
  ]);
  assert.equal(mails[1]!.fold!.byKind.backend_fatal, 1);
  assert.deepEqual(mails[1]!.outage, { since: T0, until: T0 + 30 * MIN, first: fatal(T0) });
});

test("a restart loop that ends fatal: the escalation and the all-clear reach the critical recipients", () => {
  const restarting: AlertEvent = { kind: "backend_restarting", at: T0, backend: "vllm-gpu0", restarts: 2, windowMs: 15 * MIN, exitClass: "oom", reason: "CUDA out of memory", wedged: false };
  const { mails } = run([restarting, fatal(T0 + MIN), backendRecovered(T0 + 20 * MIN)]);
  assert.deepEqual(mails.map((m) => [m.event?.kind, m.severity]), [
    ["backend_restarting", "warning"],
    ["backend_fatal", "critical"],
    ["backend_recovered", "critical"],
  ]);
  assert.deepEqual(mails[2]!.outage, { since: T0, until: T0 + 20 * MIN, first: restarting });
});

test("a daemon started again inside the window is folded and summarised when the window ends; a stop goes out at once", () => {
  const started = (at: number): AlertEvent => ({ kind: "daemon_started", at, version: "0.1.0", pid: 1, config: "/etc/llmsup/supervisor.toml" });
  const stopping: AlertEvent = { kind: "daemon_stopping", at: T0 + 4 * MIN, reason: "SIGTERM" };
  const { mails } = run([started(T0), started(T0 + MIN), started(T0 + 2 * MIN), stopping], CFG, [T0 + 10 * MIN, T0 + 14 * MIN]);
  assert.deepEqual(mails.map((m) => [m.type, m.event?.kind, m.fold?.count, m.at]), [
    ["event", "daemon_started", undefined, T0],
    ["event", "daemon_stopping", 2, T0 + 4 * MIN],
  ]);
  const again = run([started(T0), started(T0 + MIN), started(T0 + 2 * MIN)], CFG, [T0 + 10 * MIN]);
  assert.deepEqual(again.mails.map((m) => [m.type, m.fold?.count, m.at]), [
    ["event", undefined, T0],
    ["summary", 2, T0 + 10 * MIN],
  ]);
});

test("whoever was told of a critical outage is told of its recovery", () => {
  const fault: AlertEvent = { kind: "gpu_fault", at: T0, gpu: 0, fault: "xid_79", effect: "down", reason: "fallen off the bus", recommended: "reboot" };
  const clear: AlertEvent = { kind: "gpu_fault_cleared", at: T0 + 30 * MIN, gpu: 0, fault: "xid_79", reason: "GPU visible again" };
  const { mails } = run([fault, clear]);
  assert.deepEqual(mails.map((m) => [m.event?.kind, m.severity, m.subject]), [
    ["gpu_fault", "critical", "gpu:0:xid_79"],
    ["gpu_fault_cleared", "critical", "gpu:0:xid_79"],
  ]);
});

test("subjects are independent; a clear with nothing to clear is ignored", () => {
  const { mails } = run([recovery(T0), failover(T0 + 1000, "a"), failover(T0 + 2000, "b"), recovery(T0 + 3000, "a")]);
  assert.deepEqual(mails.map((m) => [m.subject, m.event?.kind]), [["route:a", "failover"], ["route:b", "failover"], ["route:a", "recovery"]]);
});

test("the hourly cap holds mails back and the next mail allowed out summarises them", () => {
  const cfg = { ...CFG, maxPerHour: 3 };
  const routes = ["a", "b", "c", "d", "e"];
  const { mails, state } = run(routes.map((r, i) => failover(T0 + i * 1000, r)), cfg);
  assert.equal(mails.length, 3);
  assert.equal(state.held!.mails, 2);
  assert.equal(nextWake(state, cfg), T0 + HOUR_MS, "wakes when the first mail of the hour ages out");
  const later = tick(state, T0 + HOUR_MS, cfg);
  assert.equal(later.mails.length, 1);
  const held = later.mails[0]!;
  assert.equal(held.type, "held");
  assert.equal(held.held!.mails, 2);
  assert.equal(held.held!.events.byKind.failover, 2);
  assert.deepEqual(held.held!.events.recent.map((e) => (e.kind === "failover" ? e.route : "")), ["d", "e"]);
  assert.equal(later.state.held, undefined);
});

test("held mails ride along with the next event mail once the cap allows", () => {
  const cfg = { ...CFG, maxPerHour: 1 };
  const { mails } = run([failover(T0, "a"), failover(T0 + 1000, "b"), failover(T0 + HOUR_MS + 1000, "c")], cfg);
  assert.equal(mails.length, 2);
  assert.equal(mails[1]!.held!.mails, 1);
  assert.equal((mails[1]!.held!.events.recent[0] as { route: string }).route, "b");
});

test("the state survives a trip through JSON (the alerter keeps it on disk)", () => {
  const cfg = { ...CFG, maxPerHour: 2 };
  const { state } = run([failover(T0), recovery(T0 + MIN), failover(T0 + 2 * MIN), failover(T0 + 3 * MIN)], cfg);
  assert.equal(state.held!.mails, 1, "a held mail and a folded repeat are in the state");
  const back = JSON.parse(JSON.stringify(state)) as PolicyState;
  const a = decide(state, recovery(T0 + 4 * MIN), T0 + 4 * MIN, cfg);
  const b = decide(back, recovery(T0 + 4 * MIN), T0 + 4 * MIN, cfg);
  assert.deepEqual(JSON.parse(JSON.stringify(b)), JSON.parse(JSON.stringify(a)));
  assert.equal(nextWake(back, cfg), T0 + HOUR_MS);
});
