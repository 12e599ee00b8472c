/**
 * Which state changes a backend owner may make, and why each exists. The
 * owner checks every change against this table and refuses the rest, so a
 * race that would put a backend in a state its process does not match is a
 * loud error instead of a quiet lie in `llmsup status`.
 *
 * | from      | to        | why                                                                                         |
 * |-----------|-----------|---------------------------------------------------------------------------------------------|
 * | stopped   | starting  | start, restart or reset spawned a process (or tried to: a spawn failure starts, then fails) |
 * | stopped   | blocked   | a start found an earlier generation's leftovers still holding the GPU memory                |
 * | stopped   | fatal     | restore: the previous daemon left it fatal (no event: nothing happened now)                 |
 * | starting  | ready     | the readiness probe passed                                                                  |
 * | starting  | stopping  | stop or restart asked while it loads                                                        |
 * | starting  | exited    | it ended while loading (crash, timeout, readiness failed); spawn failed and restart = never |
 * | starting  | backoff   | the program could not be spawned; a restart is due                                          |
 * | starting  | fatal     | the program could not be spawned, and that spent the restart budget                         |
 * | ready     | degraded  | liveness probes failing, slow, or the model partly on the CPU                               |
 * | ready     | stopping  | stop, restart, or a wedge restart (deep probes failed while /health answered)               |
 * | ready     | exited    | the process ended without being asked (crash, OOM, signal, a drill)                         |
 * | degraded  | ready     | the probes pass again                                                                       |
 * | degraded  | degraded  | a wedge found while already degraded for a lesser reason (news worth an event)              |
 * | degraded  | stopping  | as from ready                                                                               |
 * | degraded  | exited    | as from ready                                                                               |
 * | stopping  | stopping  | a restart asked while it is already stopping: a start will follow the exit                  |
 * | stopping  | stopped   | the process asked to stop has exited (whatever it died of), and its process group is gone   |
 * | stopping  | exited    | the process asked to restart (operator, wedge) has exited                                   |
 * | exited    | starting  | an operator's restart goes on at once; start/reset after restart = "never" left it exited   |
 * | exited    | backoff   | a failure with budget left, and the restart policy restarts                                 |
 * | exited    | fatal     | the failure spent the restart budget                                                        |
 * | exited    | blocked   | a start short of GPU memory that another process holds, or leftovers at the restart         |
 * | exited    | stopped   | stop                                                                                        |
 * | backoff   | starting  | the delay is over, or start, restart, reset                                                 |
 * | backoff   | blocked   | the restart found leftovers still holding the GPU memory                                    |
 * | backoff   | stopped   | stop                                                                                        |
 * | blocked   | starting  | the memory was released, or start, restart, reset                                           |
 * | blocked   | blocked   | the holder went, but the next start found leftovers again                                   |
 * | blocked   | stopped   | stop                                                                                        |
 * | fatal     | starting  | reset; or an operator's restart: one try, the budget stays spent (a failure is fatal again) |
 * | fatal     | blocked   | reset or restart found leftovers still holding the GPU memory                               |
 * | fatal     | stopped   | stop (not a daemon shutdown: that keeps fatal for the next daemon)                          |
 *
 * Nothing else: in particular a serving state never goes to stopped without
 * stopping, stopping never goes back to serving, and nothing starts while an
 * exit is still being judged (the owner settles the exit first).
 */
import { LlmsupError } from "../errors/error.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock } from "../platform/clock.ts";
import type { BackendState, StateEvent } from "./states.ts";

export const TRANSITIONS: Readonly<Record<BackendState, readonly BackendState[]>> = {
  stopped: ["starting", "blocked", "fatal"],
  starting: ["ready", "stopping", "exited", "backoff", "fatal"],
  ready: ["degraded", "stopping", "exited"],
  degraded: ["ready", "degraded", "stopping", "exited"],
  stopping: ["stopping", "stopped", "exited"],
  exited: ["starting", "backoff", "fatal", "blocked", "stopped"],
  backoff: ["starting", "blocked", "stopped"],
  blocked: ["starting", "blocked", "stopped"],
  fatal: ["starting", "blocked", "stopped"],
};

export function isValidTransition(from: BackendState, to: BackendState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Throws when the table has no `from` → `to`; the backend keeps its state. */
export function checkTransition(backend: string, from: BackendState, to: BackendState, reason: string): void {
  if (isValidTransition(from, to)) return;
  // A dedicated code (LLMSUP_E_SUPERVISOR_TRANSITION) is proposed; until the registry has it, this is an internal error.
  throw new LlmsupError("LLMSUP_E_SUPERVISOR_TRANSITION", `${backend}: refused state change ${from} → ${to} (${reason}): not in the supervisor's transition table`, { backend, from, to, reason });
}

export interface StateMachineDeps {
  readonly backend: string;
  readonly clock: Clock;
  readonly log: Logger;
  readonly onEvent: (e: StateEvent) => void;
  /** What every event carries besides the change: the generation, the pid, the budget. */
  readonly facts: () => Pick<StateEvent, "generation" | "pid" | "budget">;
}

/** A backend's current state, changed only along the table; every change is logged and emitted as an event with its reason. */
export class StateMachine {
  private current: BackendState = "stopped";
  private at: number;
  private why = "not started";
  private readonly deps: StateMachineDeps;

  constructor(deps: StateMachineDeps) {
    this.deps = deps;
    this.at = deps.clock.now();
  }

  get state(): BackendState {
    return this.current;
  }

  /** When the current state began. */
  get since(): number {
    return this.at;
  }

  get reason(): string {
    return this.why;
  }

  to(to: BackendState, reason: string, extra: Partial<StateEvent> = {}): void {
    const from = this.current;
    checkTransition(this.deps.backend, from, to, reason);
    const at = this.deps.clock.now();
    [this.current, this.at, this.why] = [to, at, reason];
    const f = this.deps.facts();
    const e: StateEvent = { event: "backend.state", backend: this.deps.backend, generation: f.generation, from, to, reason, at, pid: f.pid, budget: f.budget, ...extra };
    const level = to === "fatal" || to === "blocked" ? "error" : to === "exited" || to === "backoff" || to === "degraded" ? "warn" : "info";
    this.deps.log[level]({ ...e, exit: e.exit ? { ...e.exit, lastLines: e.exit.lastLines.slice(-10) } : undefined }, `${this.deps.backend}: ${from} → ${to}: ${reason}`);
    this.deps.onEvent(e);
  }

  /** Takes over a state a previous daemon recorded, as of `since`: checked like any change, but no event (nothing happened now). */
  restore(to: BackendState, since: number, reason: string): void {
    checkTransition(this.deps.backend, this.current, to, reason);
    [this.current, this.at, this.why] = [to, since, reason];
  }
}
