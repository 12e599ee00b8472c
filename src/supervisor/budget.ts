/**
 * The start-limit budget: more than `burst` failed starts inside `interval`
 * → fatal. A sliding window of failure times; the count starts again after
 * the backend has stayed ready for `stableAfter`. Pure.
 */

export interface BudgetPolicy {
  readonly interval: number;
  readonly burst: number;
}

export interface Budget {
  /** Times of failures still inside the window, oldest first. */
  readonly failures: readonly number[];
}

export const EMPTY_BUDGET: Budget = { failures: [] };

export function withinWindow(budget: Budget, policy: BudgetPolicy, now: number): Budget {
  const failures = budget.failures.filter((t) => now - t < policy.interval);
  return failures.length === budget.failures.length ? budget : { failures };
}

/** Records a failure at `now`; `exhausted` when the failures inside the window exceed the burst. */
export function recordFailure(budget: Budget, policy: BudgetPolicy, now: number): { budget: Budget; exhausted: boolean; count: number } {
  const next = { failures: [...withinWindow(budget, policy, now).failures, now] };
  return { budget: next, exhausted: next.failures.length > policy.burst, count: next.failures.length };
}

/** "2/5": failures in the current window over the burst. */
export function budgetUsage(budget: Budget, policy: BudgetPolicy, now: number): { used: number; burst: number } {
  return { used: withinWindow(budget, policy, now).failures.length, burst: policy.burst };
}
