import { test } from "node:test";
import assert from "node:assert/strict";
import type { AlertEvent } from "../../src/alerts/events.ts";
import { decide, initialPolicyState, type PlannedMail, type PolicyConfig, type PolicyState } from "../../src/alerts/policy.ts";
import { reconcile, type LiveState } from "../../src/alerts/reconcile.ts";
import { backendRecovered, failover, fatal, MIN, recovery, ROUTE, T0 } from "./fixtures.ts";

const CFG: PolicyConfig = { coalesceWindowMs: 10 * MIN, maxPerHour: 30 };
const RKEY = `route:${ROUTE}`;
const BKEY = "backend:vllm-gpu0";
const TIER0 = { index: 0, backend: "vllm-gpu0" };

/** Feeds events at their own `at`, starting from `state`; collects the mails. */
function feed(state: PolicyState, events: readonly AlertEvent[]): { state: PolicyState; mails: PlannedMail[] } {
  const mails: PlannedMail[] = [];
  for (const e of events) {
    const d = decide(state, e, e.at, CFG);
    state = d.state;
    mails.push(...d.mails);
  }
  return { state, mails };
}

/** The state a previous daemon left on disk, read back. */
function previousLife(events: readonly AlertEvent[]): PolicyState {
  return JSON.parse(JSON.stringify(feed(initialPolicyState(), events).state)) as PolicyState;
}

const live = (routes: LiveState["routes"], backends: LiveState["backends"] = { "vllm-gpu0": { fatal: false } }): LiveState => ({ routes, backends });

test("reconcile with the route settling forgets a previous life's failover without a mail, so the next failover is mailed at once", () => {
  const before = previousLife([failover(T0)]);
  const later = T0 + 30 * MIN;
  const r = reconcile(before, live({ [ROUTE]: { serving: "settling" } }), later, CFG);
  assert.deepEqual(r.mails, [], "no phantom recovery for the previous life");
  assert.deepEqual(r.changes, [{ subject: RKEY, action: "forgotten", from: "tier:1" }]);
  assert.equal(r.state.subjects[RKEY], undefined);
  const next = feed(r.state, [failover(later + MIN)]);
  assert.deepEqual(next.mails.map((m) => [m.type, m.event?.kind, m.at]), [["event", "failover", later + MIN]]);
  // Without the reconcile the same failover is a repeat of the stale state: folded, no mail.
  assert.deepEqual(feed(before, [failover(later + MIN)]).mails, []);
});

test("reconcile with the route on its first tier sends the all-clear for a mailed outage, paired with its first failure; the next failover is mailed", () => {
  const before = previousLife([failover(T0), failover(T0 + MIN)]);
  const at = T0 + 20 * MIN;
  const r = reconcile(before, live({ [ROUTE]: { serving: TIER0 } }), at, CFG);
  assert.equal(r.mails.length, 1);
  const m = r.mails[0]!;
  assert.deepEqual([m.type, m.event?.kind, m.severity, m.at], ["event", "recovery", "warning", at]);
  assert.deepEqual(m.outage, { since: T0, until: at, first: failover(T0) });
  assert.equal(m.fold!.count, 1, "the repeat the previous life folded rides along");
  assert.match(m.event!.action!, /found the route back on its first tier/);
  assert.deepEqual(r.changes, [{ subject: RKEY, action: "cleared", from: "tier:1" }]);
  assert.equal(r.state.subjects[RKEY]!.bad, false);
  assert.deepEqual(feed(r.state, [failover(at + MIN)]).mails.map((x) => x.event?.kind), ["failover"]);
});

test("reconcile with the route on its first tier forgets an outage nobody was told of, silently", () => {
  const unmailed: PolicyState = {
    version: 1,
    sentAt: [],
    subjects: { [RKEY]: { bad: true, state: "tier:1", severity: "warning", latest: failover(T0), outage: { since: T0, first: failover(T0), mailed: false } } },
  };
  const r = reconcile(unmailed, live({ [ROUTE]: { serving: TIER0 } }), T0 + MIN, CFG);
  assert.deepEqual(r.mails, []);
  assert.deepEqual(r.changes, [{ subject: RKEY, action: "forgotten", from: "tier:1" }]);
  assert.equal(r.state.subjects[RKEY], undefined);
});

test("reconcile keeps a still-true fatal: re-reporting it is no duplicate mail, and the later all-clear pairs with it and goes to the critical recipients", () => {
  const before = previousLife([fatal(T0)]);
  const r = reconcile(before, live({}, { "vllm-gpu0": { fatal: true } }), T0 + 30 * MIN, CFG);
  assert.deepEqual(r.mails, []);
  assert.deepEqual(r.changes, []);
  assert.deepEqual(r.state.subjects[BKEY], before.subjects[BKEY]);
  const after = feed(r.state, [fatal(T0 + 31 * MIN), backendRecovered(T0 + 40 * MIN)]);
  assert.deepEqual(after.mails.map((m) => [m.event?.kind, m.severity]), [["backend_recovered", "critical"]]);
  assert.deepEqual(after.mails[0]!.outage, { since: T0, until: T0 + 40 * MIN, first: fatal(T0) });
  assert.equal(after.mails[0]!.fold!.byKind.backend_fatal, 1, "the re-report is counted, not mailed");
});

test("reconcile forgets a backend outage from before when the backend is no longer fatal, so its next fatal is mailed at once", () => {
  const before = previousLife([fatal(T0)]);
  const r = reconcile(before, live({}, { "vllm-gpu0": { fatal: false } }), T0 + 30 * MIN, CFG);
  assert.deepEqual(r.mails, []);
  assert.deepEqual(r.changes, [{ subject: BKEY, action: "forgotten", from: "fatal" }]);
  assert.deepEqual(feed(r.state, [fatal(T0 + 31 * MIN)]).mails.map((m) => [m.event?.kind, m.severity]), [["backend_fatal", "critical"]]);
});

test("reconcile settles a still-bad route to its live tier without a mail, keeping the outage for the pairing", () => {
  const before = previousLife([failover(T0)]);
  const r = reconcile(before, live({ [ROUTE]: { serving: { index: 2, backend: "ollama" } } }), T0 + 5 * MIN, CFG);
  assert.deepEqual(r.mails, []);
  assert.deepEqual(r.changes, [{ subject: RKEY, action: "settled", from: "tier:1", to: "tier:2" }]);
  const s = r.state.subjects[RKEY]!;
  assert.equal(s.state, "tier:2");
  assert.deepEqual(s.outage, before.subjects[RKEY]!.outage);
  const after = feed(r.state, [failover(T0 + 6 * MIN, ROUTE, 2), failover(T0 + 7 * MIN, ROUTE, 1), recovery(T0 + 9 * MIN)]);
  assert.deepEqual(after.mails.map((m) => [m.event?.kind, m.event?.kind === "failover" ? m.event.to.index : 0]), [
    ["failover", 1],
    ["recovery", 0],
  ], "the re-report of tier 2 is a repeat; the move to tier 1 is a change");
  assert.deepEqual(after.mails[1]!.outage, { since: T0, until: T0 + 9 * MIN, first: failover(T0) });

  const dark = reconcile(before, live({ [ROUTE]: { serving: null } }), T0 + 5 * MIN, CFG);
  assert.deepEqual([dark.state.subjects[RKEY]!.state, dark.state.subjects[RKEY]!.severity, dark.mails.length], ["all_down", "critical", 0]);
});

test("reconcile drops the subjects of removed routes and backends, and leaves alone what it is not told about", () => {
  const disk: AlertEvent = { kind: "disk_low", at: T0, path: "/var/lib/llmsup", freeBytes: 1, minFreeBytes: 2 };
  const before = previousLife([failover(T0, "gone"), failover(T0, "kept"), fatal(T0, "old"), fatal(T0, "vllm-gpu0"), disk]);
  const r = reconcile(before, { routes: { kept: {} }, backends: { "vllm-gpu0": {} } }, T0 + MIN, CFG);
  assert.deepEqual(r.mails, [], "a removed route or backend is no news");
  assert.deepEqual(
    [...r.changes].sort((a, b) => a.subject.localeCompare(b.subject)),
    [
      { subject: "backend:old", action: "dropped", from: "fatal" },
      { subject: "route:gone", action: "dropped", from: "tier:1" },
    ],
  );
  assert.deepEqual(Object.keys(r.state.subjects).sort(), ["backend:vllm-gpu0", "disk:/var/lib/llmsup", "route:kept"]);
  assert.deepEqual(r.state.subjects["route:kept"], before.subjects["route:kept"]);
});

test("reconcile never invents an outage: a fine route or backend stays fine whatever the live state says", () => {
  const r = reconcile(initialPolicyState(), live({ [ROUTE]: { serving: null } }, { "vllm-gpu0": { fatal: true } }), T0, CFG);
  assert.deepEqual([r.mails, r.changes, r.state.subjects], [[], [], {}]);
  assert.deepEqual(feed(r.state, [fatal(T0 + MIN)]).mails.map((m) => m.event?.kind), ["backend_fatal"], "the component's own report is mailed");
});
