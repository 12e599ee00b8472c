import { test } from "node:test";
import assert from "node:assert/strict";
import { deepProbeDue, judgeLiveness } from "../../src/supervisor/liveness.ts";

const health = { interval: 5_000, timeout: 2_000, failures_to_down: 3, degraded_latency: 1_000, deep_interval: 60_000, deep_timeout: 30_000, wedge_failures: 2, restart_on_wedge: true, probe_interval: 5_000 };
const ok = { ok: true, latencyMs: 20 };
const base = { shallow: ok, shallowFailures: 0, deepFailures: 0, degraded: false, health };

test("the deep probe runs only on an idle backend whose /health answers", () => {
  assert.equal(deepProbeDue(true, 100_000, 30_000, health), true);
  assert.equal(deepProbeDue(true, 100_000, 50_000, health), false, "a real request succeeded recently");
  assert.equal(deepProbeDue(false, 100_000, 0, health), false);
});

test("wedge_failures failed deep probes in a row while /health answers: restart, or degrade when restarts are off", () => {
  const bad = { ok: false, latencyMs: 30_000, detail: "no answer within 30000ms" };
  assert.deepEqual(judgeLiveness({ ...base, deep: bad }).verdict, { kind: "none" });
  const second = judgeLiveness({ ...base, deep: bad, deepFailures: 1 });
  assert.equal(second.verdict.kind, "wedged_restart");
  assert.match((second.verdict as { reason: string }).reason, /^wedged: 2 consecutive 1-token completions failed/);
  assert.equal(judgeLiveness({ ...base, deep: bad, deepFailures: 1, health: { ...health, restart_on_wedge: false } }).verdict.kind, "degrade");
  assert.equal(judgeLiveness({ ...base, deep: { ok: true, latencyMs: 5 }, deepFailures: 1 }).deepFailures, 0, "a good deep probe resets the count");
});

test("failing, slow or partial shallow probes degrade; passing ones recover", () => {
  assert.equal(judgeLiveness({ ...base, shallow: { ok: false, latencyMs: 0, detail: "ECONNREFUSED" }, shallowFailures: 2 }).verdict.kind, "degrade");
  assert.equal(judgeLiveness({ ...base, shallow: { ok: false, latencyMs: 0 }, shallowFailures: 0 }).verdict.kind, "none", "one failure is not enough");
  assert.match((judgeLiveness({ ...base, shallow: { ok: true, latencyMs: 1_500 } }).verdict as { reason: string }).reason, /slow: 1500ms > 1000ms/);
  assert.equal(judgeLiveness({ ...base, shallow: { ok: true, latencyMs: 5, degraded: true, detail: "partly on the CPU" } }).verdict.kind, "degrade");
  assert.equal(judgeLiveness({ ...base, degraded: true }).verdict.kind, "recover");
});
