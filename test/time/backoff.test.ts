import { test } from "node:test";
import assert from "node:assert/strict";
import { doublingDelay, restartDelay, shortestSpanOfFailures, withJitter } from "../../src/time/backoff.ts";

const policy = { restartSec: 10_000, maxDelay: 120_000, steps: 5 };

test("restart delays grow geometrically from restart_sec to the maximum", () => {
  const delays = Array.from({ length: 8 }, (_, n) => restartDelay(policy, n));
  assert.equal(delays[0], 10_000);
  assert.equal(delays[5], 120_000);
  assert.equal(delays[7], 120_000);
  for (let i = 1; i < 6; i++) assert.ok(delays[i]! > delays[i - 1]!, `delay ${i} grows`);
  // Geometric: the ratio between consecutive steps is constant (12^(1/5)).
  const ratio = delays[1]! / delays[0]!;
  assert.ok(Math.abs(delays[3]! / delays[2]! - ratio) < 0.01);
});

test("a constant delay when the maximum is not above the first delay", () => {
  assert.equal(restartDelay({ restartSec: 5_000, maxDelay: 5_000, steps: 5 }, 4), 5_000);
});

test("jitter only lengthens, by at most the fraction", () => {
  assert.equal(withJitter(1_000, () => 0), 1_000);
  assert.equal(withJitter(1_000, () => 0.999, 0.1), 1_100);
});

test("the shortest span of N failures sums the N-1 delays between them", () => {
  assert.equal(shortestSpanOfFailures({ restartSec: 10_000, maxDelay: 10_000, steps: 0 }, 6), 50_000);
  assert.equal(shortestSpanOfFailures(policy, 1), 0);
});

test("retry delays double from the first up to the ceiling", () => {
  const alerts = { first: 5_000, max: 300_000 };
  assert.deepEqual(Array.from({ length: 8 }, (_, n) => doublingDelay(alerts, n)), [5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]);
  // The GPU monitor's: interval 5 s, at most 12 intervals.
  assert.deepEqual(Array.from({ length: 6 }, (_, n) => doublingDelay({ first: 5_000, max: 60_000 }, n)), [5_000, 10_000, 20_000, 40_000, 60_000, 60_000]);
  assert.equal(doublingDelay(alerts, -1), 5_000, "before the first failure: the first delay");
  assert.equal(doublingDelay(alerts, 5_000), 300_000, "however many failures: the ceiling, never Infinity");
  assert.equal(doublingDelay({ first: 5_000, max: 1_000 }, 0), 1_000, "the ceiling wins over the first delay");
});
