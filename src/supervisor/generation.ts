/**
 * One process of a backend (a generation): what llmsup asked of it, the drill
 * that may hold it, and how it is stopped — SIGTERM to its process group, then
 * SIGKILL, and the truth about a process that will not die.
 */
import { formatDuration } from "../config/units.ts";
import { LlmsupError } from "../errors/error.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock } from "../platform/clock.ts";
import { recordExit, type Requested } from "./after-exit.ts";
import type { Spawned } from "./spawn.ts";
import { isServing, type BackendState, type DrillCause, type ExitRecord, type UnkillableEvent } from "./states.ts";
import { within } from "../platform/clock.ts";
import { killGroupRemains, stopGroup, type RemainsOutcome } from "./stop.ts";

/** Most time an exit waits for its last lines (the pipes to end, or the log file to be read). */
export const PIPE_DRAIN_MS = 200;

export interface ExitJudging {
  readonly clock: Clock;
  /** The last 40 lines the backend printed. */
  readonly lastLines: () => readonly string[];
  readonly hostMemoryPressure: () => Promise<boolean>;
}

/** What a drill holds while it breaks a backend: the process to break, and the end of its claim. */
export interface DrillMark {
  readonly pid: number;
  readonly generation: number;
  /** The drill is over: from now on an exit of this generation that llmsup did not ask for during the drill is a real failure again. */
  end(): void;
}

export class Generation {
  readonly generation: number;
  readonly spawned: Spawned;
  /** Resolves once every line it printed is in the tail (its pipes ended, or its log file read to the end). */
  readonly drained: () => Promise<void>;
  requested?: Requested;
  requestDetail?: string;
  /** The process has exited (its exit may still be being judged). */
  exited = false;
  /** Degraded because deep probes fail while /health answers (restart_on_wedge = false). */
  wedged = false;
  /** Left running by an earlier daemon and adopted, not spawned: its exit status is not ours to know. */
  adopted = false;
  /** Let go of (live restore): it goes on running for the next daemon; its exit is no longer judged here. */
  detached = false;
  /** A drill is breaking this process on purpose; `requestedDuring`: llmsup asked it to go while the drill ran. */
  drill?: { readonly cause: DrillCause; active: boolean; requestedDuring: boolean };

  constructor(generation: number, spawned: Spawned, drained: () => Promise<void>) {
    this.generation = generation;
    this.spawned = spawned;
    this.drained = drained;
  }

  get pid(): number {
    return this.spawned.pid;
  }

  /** Nothing asked of it and not gone: the probes still judge it. */
  get untouched(): boolean {
    return !this.requested && !this.exited;
  }

  ask(what: Requested, detail: string): void {
    this.requested = what;
    this.requestDetail = detail;
  }

  /**
   * What its exit was: waits for the last lines (the log file read to its
   * end; pipes end at once, unless an orphan of the group holds them open:
   * then at most PIPE_DRAIN_MS), asks whether the host is short of memory for a SIGKILL
   * nobody asked for.
   */
  async judgeExit(x: { code: number | null; signal: NodeJS.Signals | null }, d: ExitJudging): Promise<ExitRecord> {
    await within(d.clock, this.drained(), PIPE_DRAIN_MS);
    const hostMemoryPressure = x.signal === "SIGKILL" && !this.requested ? await d.hostMemoryPressure().catch(() => false) : false;
    const { generation, pid, requested, requestDetail, drill } = this;
    return recordExit({ ...x, at: d.clock.now(), generation, pid, requested, requestDetail, drill, lastLines: d.lastLines(), hostMemoryPressure });
  }

  /** Kills what it left in its group after it exited (systemd's KillMode=control-group). */
  killRemains(stopTimeoutMs: number, clock: Clock): Promise<RemainsOutcome> {
    return killGroupRemains(this.spawned, stopTimeoutMs, clock);
  }

  /** Stops the process group; a process that survives SIGKILL is reported as an event and in the log, never waited for. */
  async terminate(backend: string, stopTimeoutMs: number, clock: Clock, log: Logger, onEvent: (e: UnkillableEvent) => void): Promise<void> {
    if (this.drill?.active) this.drill.requestedDuring = true;
    const s = this.spawned;
    const target = { ...s, hasExited: () => this.exited };
    const outcome = await stopGroup(target, stopTimeoutMs, clock, () =>
      log.warn({ event: "backend.stop.sigkill", pid: this.pid, after_ms: stopTimeoutMs }, `${backend}: still running ${formatDuration(stopTimeoutMs)} after SIGTERM; sending SIGKILL to the process group`),
    );
    if (outcome.kind !== "unkillable") return;
    const st = outcome.processState;
    onEvent({ event: "backend.unkillable", backend, generation: this.generation, pid: this.pid, processState: st, at: clock.now() });
    log.error(
      { event: "backend.unkillable", pid: this.pid, process_state: st },
      `${backend}: pid ${this.pid} survives SIGKILL (process state ${st}${st === "D" ? ", stuck in the kernel, usually the GPU driver" : ""}); it will be reaped when the kernel lets it go`,
    );
  }
}

/** A drill claims the running process `r` (see BackendOwner.expectDrillExit); refused unless it runs, serves and nothing was asked of it. */
export function holdForDrill(r: Generation | undefined, cause: DrillCause, backend: string, state: BackendState): DrillMark {
  const refuse = (why: string) => new LlmsupError("LLMSUP_E_DRILL_REFUSED", why, { backend });
  if (!r || r.requested || !isServing(state)) throw refuse(`drill ${cause.id} (${cause.scenario}) needs ${backend} running and serving; it is ${state}`);
  if (r.drill?.active) throw refuse(`${backend} is already held by drill ${r.drill.cause.id}`);
  const hold: NonNullable<Generation["drill"]> = { cause, active: true, requestedDuring: false };
  r.drill = hold;
  return { pid: r.pid, generation: r.generation, end: () => void (hold.active = false) };
}
