/** Stopping on one deadline: step budgets, overruns and failures never stop the steps after them. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { runShutdown, stepBudget, type StepProblem } from "../../src/daemon/shutdown.ts";
import { ManualClock, flush } from "../helpers/clock.ts";

test("a step's budget is its share of what is left, at most its cap, never negative", () => {
  assert.equal(stepBudget({}, 10_000), 10_000);
  assert.equal(stepBudget({ share: 0.5 }, 10_000), 5_000);
  assert.equal(stepBudget({ capMs: 1_000 }, 10_000), 1_000);
  assert.equal(stepBudget({ capMs: 1_000 }, 300), 300);
  assert.equal(stepBudget({}, -5), 0);
});

test("every step runs in order with what is left of one deadline on the injected clock", async () => {
  const clock = new ManualClock();
  const seen: [string, number][] = [];
  const problems: StepProblem[] = [];
  const slow = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));
  const done = runShutdown(
    clock,
    10_000,
    [
      { name: "drain", share: 0.5, run: (b) => (seen.push(["drain", b]), slow(2_000)) },
      { name: "backends", run: (b) => (seen.push(["backends", b]), slow(3_000)) },
      { name: "lock", run: (b) => void seen.push(["lock", b]) },
    ],
    (p) => problems.push(p),
  );
  await clock.run(6_000);
  await done;
  assert.deepEqual(seen, [
    ["drain", 5_000],
    ["backends", 8_000],
    ["lock", 5_000],
  ]);
  assert.deepEqual(problems, []);
});

test("a step that overruns is left behind and reported; a step that throws is reported; the last step still runs", async () => {
  const clock = new ManualClock();
  const ran: string[] = [];
  const problems: StepProblem[] = [];
  const done = runShutdown(
    clock,
    4_000,
    [
      { name: "backends", run: () => new Promise(() => ran.push("backends")) },
      {
        name: "cache",
        run: () => {
          ran.push("cache");
          throw new Error("disk gone");
        },
      },
      { name: "lock", run: () => void ran.push("lock") },
    ],
    (p) => problems.push(p),
  );
  await flush();
  assert.deepEqual(ran, ["backends"], "the hung step holds the line until its budget is spent");
  await clock.run(4_000);
  await done;
  assert.deepEqual(ran, ["backends", "cache", "lock"]);
  assert.deepEqual(problems, [
    { step: "backends", problem: "overran", budgetMs: 4_000 },
    { step: "cache", problem: "failed", error: "disk gone" },
  ]);
});
