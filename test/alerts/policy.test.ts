import { test } from "node:test";
import assert from "node:assert/strict";
import type { AlertEvent } from "../../src/alerts/events.ts";
import { decide, HOUR_MS, initialPolicyState, nextWake, tick, type PlannedMail, type PolicyConfig, type PolicyState } from "../../src/alerts/policy.ts";
import { failover, MIN, recovery, ROUTE, T0 } from "./fixtures.ts";

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

test("twenty flaps in a minute give at most three mails that still count every flap", () => {
  const events: AlertEvent[] = [];
  for (let i = 0; i < 20; i++) events.push(failover(T0 + i * 3000), recovery(T0 + i * 3000 + 1500));
  const { mails, state } = run(events, CFG, [T0 + 5 * MIN, T0 + 11 * MIN, T0 + 22 * MIN]);
  assert.ok(mails.length <= 3, `${mails.length} mails`);
  const count = (kind: "failover" | "recovery") => mails.reduce((n, m) => n + (m.event?.kind === kind ? 1 : 0) + (m.fold?.byKind[kind] ?? 0), 0);
  assert.equal(count("failover"), 20);
  assert.equal(count("recovery"), 20);
  const summary = mails.find((m) => m.type === "summary")!;
  assert.equal(summary.fold!.outages!.n, 19);
  assert.equal(summary.current!.bad, false);
  assert.equal(Object.keys(state.subjects).length, 0, "a subject quiet for a window is forgotten");
});

test("a recovery whose failure was folded is paired with that failure, not the first one", () => {
  // Mailed failover and recovery, then a second outage inside the window: its failover is folded.
  const second = failover(T0 + 2 * MIN, ROUTE, 2);
  const { mails } = run([failover(T0), recovery(T0 + MIN), second, recovery(T0 + 25 * MIN)], CFG, [T0 + 11 * MIN]);
  assert.deepEqual(mails.map((m) => m.type), ["event", "event", "summary", "event"]);
  assert.equal(mails[2]!.current!.bad, true, "the summary says the route is down again");
  assert.equal(mails[2]!.current!.since, T0 + 2 * MIN);
  const rec = mails[3]!;
  assert.equal(rec.event!.kind, "recovery");
  assert.deepEqual(rec.outage, { since: T0 + 2 * MIN, until: T0 + 25 * MIN, first: second });
});

test("a folded outage that also ends inside the window shows in the summary with its length", () => {
  const { mails } = run([failover(T0), recovery(T0 + MIN), failover(T0 + 2 * MIN), recovery(T0 + 5 * MIN)], CFG, [T0 + 11 * MIN]);
  assert.equal(mails.length, 3);
  assert.deepEqual(mails[2]!.fold!.outages, { n: 1, minMs: 3 * MIN, maxMs: 3 * MIN });
});

test("an escalation goes out at once; a lesser change inside the window waits for the summary", () => {
  const down: AlertEvent = { kind: "all_tiers_down", at: T0 + MIN, route: ROUTE, tiers: [] };
  const cache: AlertEvent = { kind: "cache_serving", at: T0 + 2 * MIN, route: ROUTE };
  const { mails } = run([failover(T0), down, cache], CFG, [T0 + 11 * MIN]);
  assert.deepEqual(mails.map((m) => [m.type, m.event?.kind ?? m.current?.state, m.severity]), [
    ["event", "failover", "warning"],
    ["event", "all_tiers_down", "critical"],
    ["summary", "cache", "critical"],
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
  const { state } = run([failover(T0), recovery(T0 + MIN), failover(T0 + 2 * MIN)]);
  const back = JSON.parse(JSON.stringify(state)) as PolicyState;
  const a = decide(state, recovery(T0 + 3 * MIN), T0 + 3 * MIN, CFG);
  const b = decide(back, recovery(T0 + 3 * MIN), T0 + 3 * MIN, CFG);
  assert.deepEqual(JSON.parse(JSON.stringify(b)), JSON.parse(JSON.stringify(a)));
  assert.equal(nextWake(back, CFG), T0 + MIN + 10 * MIN);
});
