/**
 * The pure fault evaluator:
 *
 *   evaluate(state, input, now, config) → { state, raised[], cleared[] }
 *
 * Inputs are nvidia-smi samples, remapped-row readings, whole-command
 * failures, a missed sample deadline, kernel-log events, resets and clock
 * ticks. Readings are screened first (plausible.ts): an impossible value is
 * no observation. Conditions read from samples (slowdowns, temperature,
 * memory, flags) have hysteresis: raised after `sustain_samples` samples in a
 * row (flags at once), cleared after `clear_samples` without. Events (XIDs,
 * a rise in uncorrected ECC errors) clear on evidence (evidence.ts): by time
 * only when the application caused them, when nvidia-smi shows the GPU
 * healthy again for transient ones, and only on evidence of a reset for
 * those a GPU reset or a reboot cures. The same fault is one fact: raised
 * once, cleared once.
 */
import type { GpuConfig } from "../config/types.ts";
import { formatDuration } from "../config/units.ts";
import { gpuFailure, observeSample, remapped, status, STATUS_KINDS, statusSpec, type Observation } from "./conditions.ts";
import { markGone, resetInput } from "./evidence.ts";
import { faultId, Ledger, type GpuIdentity, type Streak } from "./ledger.ts";
import type { ClearedFault, GpuFault, GpuSample, RemappedRows, SmiFailure } from "./types.ts";
import { applyKernelEvent, expireEvents, type PendingLone, type SeenXid, type XidOutcome } from "./xid-policy.ts";
import type { KernelGpuEvent } from "./xid.ts";

export { isEventFault } from "./evidence.ts";
export type { Observation } from "./conditions.ts";

export interface FaultConfig {
  readonly temperatureLimit: number;
  readonly memoryFull: number;
  readonly sustainSamples: number;
  readonly clearSamples: number;
  /** How long an application-caused XID fault stays after its last occurrence, ms. */
  readonly eventHoldMs: number;
  /** Samples in a row without a plausible reading of a GPU before its readings are a fault (gpu_readings_stale). */
  readonly staleSamples: number;
}

export type FaultThresholds = Pick<GpuConfig, "temperature_limit" | "memory_full" | "sustain_samples" | "clear_samples" | "event_hold" | "stale_samples">;

export function faultConfig(gpu: FaultThresholds): FaultConfig {
  return {
    temperatureLimit: gpu.temperature_limit,
    memoryFull: gpu.memory_full,
    sustainSamples: gpu.sustain_samples,
    clearSamples: gpu.clear_samples,
    eventHoldMs: gpu.event_hold,
    staleSamples: gpu.stale_samples,
  };
}

export type { GpuIdentity } from "./ledger.ts";

export interface FaultState {
  readonly active: ReadonlyMap<string, GpuFault>;
  readonly streaks: ReadonlyMap<string, Streak>;
  /** What the last samples said each GPU index is. */
  readonly gpus: ReadonlyMap<number, GpuIdentity>;
  /** Last uncorrected volatile ECC count per GPU. */
  readonly ecc: ReadonlyMap<number, number>;
  /** The recovery action (gpu_recovery_action) each GPU read last. */
  readonly actions: ReadonlyMap<number, string>;
  /** GPUs nvidia-smi could not see (lost, missing, no driver), and when it last said so; until they answer again. */
  readonly gone: ReadonlyMap<number, number>;
  readonly xids: readonly SeenXid[];
  readonly lone: readonly PendingLone[];
}

export function initialFaultState(): FaultState {
  return { active: new Map(), streaks: new Map(), gpus: new Map(), ecc: new Map(), actions: new Map(), gone: new Map(), xids: [], lone: [] };
}

/** Who reset a GPU (or says its event faults are dealt with). */
export type ResetBy = "llmsup" | "operator";

export type FaultInput =
  | { readonly type: "sample"; readonly gpus: readonly GpuSample[]; readonly failures?: readonly SmiFailure[] }
  | { readonly type: "remapped"; readonly rows: readonly RemappedRows[] }
  | { readonly type: "failure"; readonly failure: SmiFailure }
  | { readonly type: "unresponsive"; readonly waitedMs: number }
  | { readonly type: "kernel"; readonly event: KernelGpuEvent }
  | { readonly type: "tick" }
  /**
   * GPU `gpu` (null: every GPU) was reset, or its event faults are dealt
   * with: `by: "llmsup"` after llmsup's own `nvidia-smi -r` succeeded (the
   * remediation ladder feeds it), `by: "operator"` for `llmsup gpus clear`.
   * Every event fault on it (XIDs, ECC rises) clears, whatever its recovery,
   * with a clearReason naming who and `reason` ("reset by llmsup: …",
   * "cleared by the operator: …"). A reset by llmsup also forgets the GPU's
   * ECC baseline and recovery action, which the reset itself starts afresh.
   */
  | { readonly type: "reset"; readonly gpu: number | null; readonly by: ResetBy; readonly reason?: string };

export interface Evaluation {
  readonly state: FaultState;
  readonly raised: readonly GpuFault[];
  readonly cleared: readonly ClearedFault[];
  /** For kernel inputs: what the event was taken as. */
  readonly xid?: XidOutcome;
  /** For sample inputs: each GPU index the sample named, with its screened readings. */
  readonly observed?: readonly Observation[];
}

export function evaluate(state: FaultState, input: FaultInput, now: number, config: FaultConfig): Evaluation {
  const ledger = new Ledger(state.active, state.streaks, now);
  const maps = { gpus: new Map(state.gpus), ecc: new Map(state.ecc), actions: new Map(state.actions), gone: new Map(state.gone) };
  let xids = state.xids;
  let lone = state.lone;
  let xid: XidOutcome | undefined;
  let observed: Observation[] | undefined;

  switch (input.type) {
    case "sample":
      observed = observeSample(ledger, maps, input.gpus, input.failures ?? [], config);
      break;
    case "remapped":
      for (const r of input.rows) remapped(ledger, maps.gpus, r, config);
      break;
    case "failure":
      if (input.failure.kind === "gpu_lost" || input.failure.kind === "device_error") {
        for (const kind of STATUS_KINDS) ledger.clear(faultId(kind, null), "nvidia-smi reaches the driver again");
        gpuFailure(ledger, maps, input.failure, config);
      } else {
        status(ledger, statusSpec(input.failure), config);
        markGone(maps, input.failure, now);
      }
      break;
    case "unresponsive":
      status(
        ledger,
        {
          kind: "driver_unresponsive",
          gpu: null,
          severity: "down",
          reason: `nvidia-smi gave no sample for ${formatDuration(input.waitedMs)}: the driver may be wedged`,
          action: "check the kernel log for XIDs; a GPU reset or a reboot may be needed (llmsup starts no more nvidia-smi while one is stuck)",
          code: "LLMSUP_E_GPU_UNRESPONSIVE",
        },
        config,
      );
      break;
    case "kernel": {
      const r = applyKernelEvent(ledger, { gpus: maps.gpus, xids, lone }, input.event);
      xids = r.xids;
      lone = r.lone;
      xid = r.outcome;
      break;
    }
    case "reset":
      resetInput(ledger, maps, input);
      break;
    case "tick":
      break;
  }
  const expired = expireEvents(ledger, { xids, lone }, config);
  return {
    state: { active: ledger.active, streaks: ledger.streaks, ...maps, xids: expired.xids, lone: expired.lone },
    raised: ledger.raised,
    cleared: ledger.cleared,
    ...(xid ? { xid } : {}),
    ...(observed ? { observed } : {}),
  };
}

/** Since when GPU `gpu` has given no plausible sample (undefined: its latest sample was plausible). */
export function staleSince(state: FaultState, gpu: number): number | undefined {
  const streak = state.streaks.get(faultId("gpu_readings_stale", gpu));
  return streak && streak.on > 0 ? streak.since : undefined;
}
