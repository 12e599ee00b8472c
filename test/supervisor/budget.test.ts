import { test } from "node:test";
import assert from "node:assert/strict";
import { budgetUsage, EMPTY_BUDGET, recordFailure } from "../../src/supervisor/budget.ts";

const policy = { interval: 60_000, burst: 3 };

test("more than burst failures inside the interval exhaust the budget", () => {
  let b = EMPTY_BUDGET;
  const results = [0, 1_000, 2_000, 3_000].map((t) => {
    const r = recordFailure(b, policy, t);
    b = r.budget;
    return r.exhausted;
  });
  assert.deepEqual(results, [false, false, false, true]);
});

test("failures older than the interval leave the window", () => {
  let b = recordFailure(EMPTY_BUDGET, policy, 0).budget;
  b = recordFailure(b, policy, 10_000).budget;
  b = recordFailure(b, policy, 20_000).budget;
  const r = recordFailure(b, policy, 65_000);
  assert.equal(r.exhausted, false, "the first failure has left the window");
  assert.equal(r.count, 3);
  assert.deepEqual(budgetUsage(r.budget, policy, 90_000), { used: 1, burst: 3 });
});
