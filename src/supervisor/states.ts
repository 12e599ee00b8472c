/** The life of a managed backend: states, events and the snapshot status shows. */
import type { ExitClass } from "./classify.ts";
import type { GroupResources } from "./resources.ts";
import type { VramHolder } from "./vram.ts";

/**
 * stopped → starting → ready ⇄ degraded → stopping → exited → backoff → starting …
 * exited → fatal when the start-limit budget is spent; blocked while another
 * process holds the GPU memory a start needs.
 */
export type BackendState = "stopped" | "starting" | "ready" | "degraded" | "stopping" | "exited" | "backoff" | "blocked" | "fatal";

export const BACKEND_STATES: readonly BackendState[] = ["stopped", "starting", "ready", "degraded", "stopping", "exited", "backoff", "blocked", "fatal"];

/** States in which the backend can take requests. */
export function isServing(s: BackendState): boolean {
  return s === "ready" || s === "degraded";
}

/** A failover drill that breaks a backend on purpose. */
export interface DrillCause {
  readonly id: string;
  readonly scenario: string;
}

export interface ExitRecord {
  readonly at: number;
  readonly generation: number;
  readonly pid: number;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly class: ExitClass;
  readonly reason: string;
  readonly evidence?: string;
  /** The drill that caused this exit (class "drill"); what the exit would have been otherwise is in `reason`. */
  readonly drill?: DrillCause;
  /** The last lines the process printed. */
  readonly lastLines: readonly string[];
}

/** One transition; everything an operator needs to understand it without other context. */
export interface StateEvent {
  readonly event: "backend.state";
  readonly backend: string;
  readonly generation: number;
  readonly from: BackendState;
  readonly to: BackendState;
  readonly reason: string;
  readonly at: number;
  readonly pid?: number;
  readonly exit?: ExitRecord;
  /** When entering backoff: the delay before the next start. */
  readonly restartInMs?: number;
  /** Failed starts in the current window over the burst. */
  readonly budget?: { readonly used: number; readonly burst: number };
  /** When blocked: the process holding the GPU memory. */
  readonly holder?: VramHolder;
}

/** A process that would not die after SIGKILL (typically stuck in the GPU driver, state D). */
export interface UnkillableEvent {
  readonly event: "backend.unkillable";
  readonly backend: string;
  readonly generation: number;
  readonly pid: number;
  readonly processState: string;
  readonly at: number;
}

export type SupervisorEvent = StateEvent | UnkillableEvent;

export interface BackendSnapshot {
  readonly name: string;
  readonly kind: string;
  readonly state: BackendState;
  /** When the current state began. */
  readonly since: number;
  readonly reason: string;
  readonly generation: number;
  readonly pid?: number;
  /** When the running process was started (by this daemon or, when adopted, an earlier one). */
  readonly startedAt?: number;
  /** The running process was adopted from an earlier daemon, not started by this one. */
  readonly adopted?: boolean;
  readonly budget: { readonly used: number; readonly burst: number };
  readonly lastExit?: ExitRecord;
  /** While starting: what readiness last said ("loading model"). */
  readonly progress?: string;
  readonly probes: {
    readonly shallowFailures: number;
    readonly deepFailures: number;
    readonly lastDeepAt?: number;
    readonly lastSuccessAt?: number;
    readonly lastLatencyMs?: number;
  };
  readonly logFile: string;
  /** CPU and memory of the running process group, from the last sample (Supervisor.sampleResources); absent before one. */
  readonly resources?: GroupResources;
}
