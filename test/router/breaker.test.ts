import { test } from "node:test";
import assert from "node:assert/strict";
import { admit, CLOSED, onFailure, onSuccess, release, trip, type BreakerState } from "../../src/router/breaker.ts";

const policy = { threshold: 3, openMs: 1_000, maxOpenMs: 3_000 };

test("breaker: closed counts consecutive failures and opens at the threshold, dated from then", () => {
  let b: BreakerState = CLOSED;
  b = onFailure(b, policy, 10, "x");
  b = onFailure(b, policy, 20, "x");
  assert.deepEqual(b, { state: "closed", failures: 2 });
  b = onFailure(b, policy, 30, "5xx");
  assert.deepEqual(b, { state: "open", since: 30, until: 1_030, openMs: 1_000, reason: "5xx", misconfigured: false });
});

test("breaker: an open tier admits nothing before its interval ends, then exactly one half-open request", () => {
  const open = onFailure(onFailure(onFailure(CLOSED, policy, 0, "x"), policy, 0, "x"), policy, 0, "x");
  assert.equal(admit(open, 999).allowed, false);
  const a = admit(open, 1_000);
  assert.equal(a.allowed, true);
  assert.equal(a.probe, true);
  assert.equal(a.next.state, "half_open");
  assert.equal(admit(a.next, 5_000).allowed, false, "the half-open slot is taken");
});

test("breaker: a failed half-open request doubles the open interval up to the cap, keeping the first open time", () => {
  let b: BreakerState = { state: "half_open", since: 0, openMs: 1_000, reason: "x", misconfigured: false };
  b = onFailure(b, policy, 5_000, "again");
  assert.deepEqual(b, { state: "open", since: 0, until: 7_000, openMs: 2_000, reason: "again", misconfigured: false });
  b = onFailure(admit(b, 7_000).next, policy, 7_000, "again");
  assert.equal(b.state === "open" && b.openMs, 3_000, "capped at maxOpenMs");
  b = onFailure(admit(b, 10_000).next, policy, 10_000, "again");
  assert.equal(b.state === "open" && b.openMs, 3_000);
});

test("breaker: a released half-open slot is free again at once, without doubling; release leaves other states alone", () => {
  const half: BreakerState = { state: "half_open", since: 0, openMs: 1_000, reason: "x", misconfigured: false };
  const r = release(half, 4_000);
  assert.deepEqual(r, { state: "open", since: 0, until: 4_000, openMs: 1_000, reason: "x", misconfigured: false });
  assert.equal(admit(r, 4_000).allowed, true);
  assert.equal(release(CLOSED, 4_000), CLOSED);
});

test("breaker: misconfiguration trips at once and says so; success closes from any state", () => {
  const t = trip(CLOSED, policy, 100, "HTTP 401");
  assert.deepEqual(t, { state: "open", since: 100, until: 1_100, openMs: 1_000, reason: "HTTP 401", misconfigured: true });
  assert.equal(onSuccess(t), CLOSED);
  assert.equal(onSuccess({ state: "closed", failures: 2 }), CLOSED);
});
