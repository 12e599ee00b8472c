/**
 * What an exit was, and what happens next. Pure: the owner gathers the facts
 * (exit status, last lines, what llmsup had asked of the process, the budget,
 * a foreign process holding the GPU memory) and applies the decision.
 */
import type { ProcessConfig } from "../config/types.ts";
import { formatDuration } from "../config/units.ts";
import { restartDelay, withJitter, type BackoffPolicy } from "../time/backoff.ts";
import { recordFailure, type Budget, type BudgetPolicy } from "./budget.ts";
import { classifyExit, countsAsFailure, memoryShortMarker } from "./classify.ts";
import type { DrillCause, ExitRecord } from "./states.ts";
import type { VramHolder } from "./vram.ts";

/** What llmsup asked of a process before it ended. */
export type Requested = "stop" | "restart" | "startup_timeout" | "wedged" | "start_failed";

export interface ExitFactsIn {
  readonly at: number;
  readonly generation: number;
  readonly pid: number;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The last 40 lines it printed, newest last. */
  readonly lastLines: readonly string[];
  readonly requested?: Requested;
  readonly requestDetail?: string;
  readonly hostMemoryPressure: boolean;
  /** A drill that marked this generation: whether it still runs, and whether llmsup asked for the exit while it ran. */
  readonly drill?: { readonly cause: DrillCause; readonly active: boolean; readonly requestedDuring: boolean };
}

/** The exit as status, logs and mails show it: classified, with the drill that caused it if one did. */
export function recordExit(f: ExitFactsIn): ExitRecord {
  const operator = f.requested === "stop" || f.requested === "restart";
  const c = classifyExit({ code: f.code, signal: f.signal, lastLines: f.lastLines, requested: f.requested === "restart" ? "stop" : f.requested, hostMemoryPressure: f.hostMemoryPressure });
  const reason = f.requestDetail && !operator ? `${c.reason}: ${f.requestDetail}` : c.reason;
  // An operator's stop or restart during a drill stays what it is; anything else the drill holds is the drill's.
  const drill = f.drill && (f.drill.active || f.drill.requestedDuring) && !operator ? f.drill.cause : undefined;
  return {
    at: f.at,
    generation: f.generation,
    pid: f.pid,
    code: f.code,
    signal: f.signal,
    class: drill ? "drill" : c.class,
    // The drill's own signal is no stranger's: "from outside llmsup" would mislead.
    reason: drill ? `caused by drill ${drill.id} (${drill.scenario}): ${reason.replace(" from outside llmsup", " (the drill's)")}; restart budget untouched` : reason,
    evidence: c.evidence,
    ...(drill ? { drill } : {}),
    lastLines: f.lastLines.slice(-20),
  };
}

export interface AfterExitInput {
  readonly backend: string;
  readonly exit: ExitRecord;
  readonly requested?: Requested;
  readonly requestDetail?: string;
  readonly restart: ProcessConfig["restart"];
  readonly backoff: BackoffPolicy;
  readonly budgetPolicy: BudgetPolicy;
  readonly budget: Budget;
  /** Failures since the last sustained ready period: the backoff grows with them. */
  readonly consecutiveFailures: number;
  /** The process ended before it passed readiness (a failed start). */
  readonly duringStart?: boolean;
  /** For an exit that says the memory was short (memoryShortAtStart): a live process that is not ours holding memory on the backend's GPUs, when one was found. */
  readonly foreignHolder?: VramHolder;
  readonly now: number;
  /** A draw in [0, 1) for the restart delay's jitter. */
  readonly jitter: number;
}

/**
 * Whether another process holding GPU memory may be why this process ended,
 * so that one is looked for: vLLM's "Free memory on device …" (gpu_occupied,
 * said only at start); an out-of-memory death while it was still starting
 * (llama.cpp's `cudaMalloc failed: out of memory` at load); a readiness
 * failure whose text says the memory was short (Ollama's server stays up and
 * fails the load through its API: `llama runner process has terminated:
 * cudaMalloc failed: out of memory`). An out-of-memory death of a process
 * that had served is its own until a start says otherwise.
 */
export function memoryShortAtStart(x: Pick<ExitRecord, "class" | "reason">, duringStart: boolean): boolean {
  if (x.class === "gpu_occupied") return true;
  if (!duringStart) return false;
  return x.class === "oom" || (x.class === "start_failed" && memoryShortMarker(x.reason) !== undefined);
}

/** The parts of [backend.process] that decide what follows an exit. */
export function exitPolicy(p: ProcessConfig): Pick<AfterExitInput, "restart" | "backoff" | "budgetPolicy"> {
  return {
    restart: p.restart,
    backoff: { restartSec: p.restart_sec, maxDelay: p.restart_max_delay, steps: p.restart_steps },
    budgetPolicy: { interval: p.start_limit_interval, burst: p.start_limit_burst },
  };
}

export type AfterExitAction =
  /** Asked to stop: stays stopped. */
  | { readonly kind: "stopped"; readonly reason: string }
  /** An operator's restart: start again at once. */
  | { readonly kind: "start"; readonly reason: string }
  /** Someone else holds the GPU memory: wait for it to go, budget untouched. */
  | { readonly kind: "blocked"; readonly reason: string; readonly holder: VramHolder }
  /** The budget is spent: stays down until `llmsup reset`. */
  | { readonly kind: "fatal"; readonly reason: string }
  /** The restart policy says no restart. */
  | { readonly kind: "exited"; readonly reason: string }
  /** Start again after `delayMs`, with `startReason`. */
  | { readonly kind: "backoff"; readonly reason: string; readonly delayMs: number; readonly startReason: string };

/** The action, and the budget and failure count after this exit. */
export type AfterExit = AfterExitAction & { readonly budget: Budget; readonly consecutiveFailures: number };

export function decideAfterExit(i: AfterExitInput): AfterExit {
  const x = i.exit;
  const same = { budget: i.budget, consecutiveFailures: i.consecutiveFailures };
  if (i.requested === "stop") return { kind: "stopped", reason: i.requestDetail ?? "stopped", ...same };
  if (i.requested === "restart") return { kind: "start", reason: i.requestDetail ?? "restarted on request", ...same };
  const h = i.foreignHolder;
  if (h && memoryShortAtStart(x, i.duringStart === true)) {
    return { kind: "blocked", holder: h, reason: `${x.class}: pid ${h.pid}${h.processName ? ` (${h.processName})` : ""} holds ${h.usedMemoryMib} MiB on GPU ${h.gpu}; waiting for it to go (restart budget untouched)`, ...same };
  }
  let { budget, consecutiveFailures } = same;
  if (countsAsFailure(x.class)) {
    const counted = recordFailure(budget, i.budgetPolicy, i.now);
    budget = counted.budget;
    consecutiveFailures++;
    if (counted.exhausted) {
      const reason = `restart budget spent: ${counted.count} failed starts within ${formatDuration(i.budgetPolicy.interval)} (start_limit_burst ${i.budgetPolicy.burst}); last: ${x.reason}. Fix the cause, then run \`llmsup reset ${i.backend}\``;
      return { kind: "fatal", reason, budget, consecutiveFailures };
    }
  }
  // A drill repairs what it broke, whatever the restart policy says.
  if (!x.drill && (i.restart === "never" || (i.restart === "on-failure" && x.class === "clean_exit"))) {
    return { kind: "exited", reason: `${x.reason}; restart = "${i.restart}"`, budget, consecutiveFailures };
  }
  const delayMs = withJitter(restartDelay(i.backoff, Math.max(0, consecutiveFailures - 1)), () => i.jitter);
  return {
    kind: "backoff",
    delayMs,
    reason: `restarting in ${formatDuration(delayMs)} after: ${x.reason}`,
    startReason: x.drill ? `restart after drill ${x.drill.id} (${x.drill.scenario})` : `restart after backoff (${x.class})`,
    budget,
    consecutiveFailures,
  };
}
