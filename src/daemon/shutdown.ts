/**
 * Stopping on one deadline (`daemon.shutdown_timeout`, on the injected clock):
 * the steps run in order, each given what is left of the deadline (a share
 * of it, at most its own cap); a step that overruns its budget is left
 * behind and reported, and one that throws is reported — either way the
 * next step runs, so the last ones (state flushed, the state_dir lock
 * released) always do.
 */
import { within, type Clock } from "../platform/clock.ts";

export interface ShutdownStep {
  readonly name: string;
  /** Gets its budget in ms (tell the work itself when it has its own deadline). */
  readonly run: (budgetMs: number) => unknown;
  /** The part of what is left this step may use (default: all of it). */
  readonly share?: number;
  /** The most this step may use, whatever is left. */
  readonly capMs?: number;
}

export type StepProblem = { readonly step: string; readonly problem: "overran"; readonly budgetMs: number } | { readonly step: string; readonly problem: "failed"; readonly error: string };

/** The budget of the next step when `leftMs` of the deadline is left. Pure. */
export function stepBudget(step: Pick<ShutdownStep, "share" | "capMs">, leftMs: number): number {
  return Math.max(0, Math.min(leftMs * (step.share ?? 1), step.capMs ?? Infinity));
}

export async function runShutdown(clock: Clock, totalMs: number, steps: readonly ShutdownStep[], report: (p: StepProblem) => void): Promise<void> {
  const deadline = clock.now() + totalMs;
  for (const step of steps) {
    const budgetMs = stepBudget(step, deadline - clock.now());
    const work = (async () => step.run(budgetMs))().catch((e: unknown) => report({ step: step.name, problem: "failed", error: e instanceof Error ? e.message : String(e) }));
    if (!(await within(clock, work, budgetMs))) report({ step: step.name, problem: "overran", budgetMs });
  }
}
