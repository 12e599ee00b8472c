import { test } from "node:test";
import assert from "node:assert/strict";
import { initialRouteState, observeRoute, type RouteState, type RouteTransition } from "../../src/router/route-state.ts";

const timing = { settleBy: 10_000, holdMs: 1_000, loading: true };

/** Feeds (time, best tier) observations; returns the final state and every transition. */
function run(steps: [number, number][], t = timing, start: RouteState = initialRouteState(0)): { state: RouteState; transitions: RouteTransition[] } {
  let state = start;
  const transitions: RouteTransition[] = [];
  for (const [now, best] of steps) {
    const o = observeRoute(state, best, now, t);
    state = o.next;
    transitions.push(...o.transitions);
  }
  return { state, transitions };
}

test("route state: at boot a route is silent while its first tier loads, and settles once it is admissible", () => {
  const r = run([[0, -1], [2_000, 1], [5_000, 0]]);
  assert.deepEqual(r.transitions, []);
  assert.equal(r.state.phase, "settled");
  assert.equal(r.state.serving, 0);
});

test("route state: while settling, the route asks to be looked at again when the settling time ends", () => {
  const o = observeRoute(initialRouteState(0), 1, 2_000, timing);
  assert.equal(o.wakeAt, 10_000);
  assert.equal(o.next.serving, 1, "status still shows who serves");
});

test("route state: a first tier that never came up in its start-up time is announced once as a fallback from tier 0", () => {
  const r = run([[0, 1], [10_000, 1], [11_000, 1]]);
  assert.deepEqual(r.transitions, [{ kind: "fallback", from: 0, to: 1, at: 10_000 }]);
  assert.equal(r.state.degradedSince, 10_000);
});

test("route state: a first tier that stopped loading without coming up (fatal, blocked) is announced at once, before its start-up time ends", () => {
  const r = run([[0, 1], [2_000, 1]], timing);
  assert.deepEqual(r.transitions, []);
  const o = observeRoute(r.state, 1, 3_000, { ...timing, loading: false });
  assert.deepEqual(o.transitions, [{ kind: "fallback", from: 0, to: 1, at: 3_000 }]);
});

test("route state: one outage is one fallback and one recovery, dated from when the tier came back", () => {
  const r = run([[0, 0], [100, 1], [200, 1], [5_000, 0], [5_500, 0], [6_000, 0], [9_000, 0]]);
  assert.deepEqual(r.transitions, [
    { kind: "fallback", from: 0, to: 1, at: 100 },
    { kind: "recovered", from: 1, outageMs: 4_900, at: 5_000 },
  ]);
  assert.equal(r.state.degradedSince, undefined);
});

test("route state: a tier back for less than the hold is no recovery (hysteresis), and leaving again is no new fallback", () => {
  const r = run([[0, 0], [100, 1], [1_000, 0], [1_500, 1], [1_800, 0], [2_300, 1]]);
  assert.deepEqual(r.transitions, [{ kind: "fallback", from: 0, to: 1, at: 100 }]);
  assert.equal(r.state.serving, 1);
});

test("route state: a worse tier is taken at once; every tier out is 'down'; coming back from down waits out the hold", () => {
  const r = run([[0, 0], [100, 1], [200, 2], [300, -1], [400, 2], [1_400, 2], [2_000, 0], [3_000, 0]]);
  assert.deepEqual(r.transitions, [
    { kind: "fallback", from: 0, to: 1, at: 100 },
    { kind: "fallback", from: 1, to: 2, at: 200 },
    { kind: "down", from: 2, at: 300 },
    { kind: "fallback", from: -1, to: 2, at: 400 },
    { kind: "recovered", from: 2, outageMs: 1_900, at: 2_000 },
  ]);
});

test("route state: with no hold the return is immediate; a better tier asks to be looked at when its hold ends", () => {
  const r = run([[0, 0], [100, 1], [200, 0]], { settleBy: 0, holdMs: 0, loading: true });
  assert.deepEqual(r.transitions.map((t) => t.kind), ["fallback", "recovered"]);
  const o = observeRoute({ phase: "settled", serving: 1, since: 0, degradedSince: 0 }, 0, 500, timing);
  assert.equal(o.wakeAt, 1_500);
});
