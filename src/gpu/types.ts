/** The facts the GPU monitor deals in. Plain data; every value is optional where nvidia-smi may not know it. */
import type { ErrorCode } from "../errors/registry.ts";

/** Clock event ("throttle") reasons of one sample. */
export interface ClockReasons {
  /** clocks_event_reasons.active bitmask. */
  readonly mask?: number;
  readonly hwSlowdown?: boolean;
  readonly hwThermalSlowdown?: boolean;
  readonly swThermalSlowdown?: boolean;
  readonly hwPowerBrakeSlowdown?: boolean;
  /** Normal under full load: never a fault by itself. */
  readonly swPowerCap?: boolean;
}

/** One GPU in one `--query-gpu` sample. */
export interface GpuSample {
  /** nvidia-smi's index; the line's position when the index cell was unreadable. */
  readonly index: number;
  readonly uuid?: string;
  readonly name?: string;
  /** nvidia-smi form: 00000000:3B:00.0. */
  readonly busId?: string;
  readonly temperatureC?: number;
  readonly memoryTemperatureC?: number;
  readonly utilizationPct?: number;
  readonly memoryUsedMib?: number;
  readonly memoryTotalMib?: number;
  readonly powerDrawW?: number;
  readonly powerLimitW?: number;
  readonly pstate?: string;
  readonly reasons: ClockReasons;
  readonly eccUncorrected?: number;
  readonly eccCorrected?: number;
  readonly retiredPagesPending?: boolean;
  /** gpu_recovery_action: None, Reset, Reboot, Drain P2P, Drain and Reset. */
  readonly recoveryAction?: string;
  /** Some cell read "[GPU requires reset]". */
  readonly requiresReset: boolean;
}

/** A process holding GPU memory (`--query-compute-apps`). */
export interface ComputeApp {
  readonly pid: number;
  readonly gpuUuid: string;
  /** Filled in from a GPU sample when the uuid is known. */
  readonly gpu?: number;
  readonly usedMemoryMib?: number;
  readonly processName?: string;
}

/** Row remapping state of one GPU (`--query-remapped-rows`). */
export interface RemappedRows {
  readonly gpuUuid: string;
  readonly busId?: string;
  readonly correctable?: number;
  readonly uncorrectable?: number;
  readonly pending?: boolean;
  readonly failure?: boolean;
}

export const SMI_FAILURE_KINDS = [
  "driver_not_loaded",
  "gpu_lost",
  "device_error",
  "nvml_mismatch",
  "no_devices",
  "invalid_field",
  "invalid_arguments",
  "missing",
  "unresponsive",
  "bad_output",
  "failed",
] as const;
export type SmiFailureKind = (typeof SMI_FAILURE_KINDS)[number];

/** Why nvidia-smi gave no usable answer (whole-command failures, or one GPU's device-handle error). */
export interface SmiFailure {
  readonly kind: SmiFailureKind;
  readonly code: ErrorCode;
  /** What nvidia-smi said (or what went wrong running it), one line. */
  readonly message: string;
  /** The GPU a device-handle error names, nvidia-smi form. */
  readonly busId?: string;
  /** The field an "is not a valid field" error names. */
  readonly field?: string;
  readonly exitCode?: number | null;
}

export type Severity = "degraded" | "down";

/**
 * What cures a fault, after NVIDIA's XID catalog (resolution buckets) and the
 * driver's gpu_recovery_action: nothing but time or a repeat check (`none`),
 * restarting the app that caused it (`restart_app`), a GPU reset
 * (`reset_gpu`), or a reboot of the machine (`reboot`). The remediation
 * ladder acts on it.
 */
export type Recovery = "none" | "restart_app" | "reset_gpu" | "reboot";

/** A fact the health layer and the alerts act on: raised once, cleared once. */
export interface GpuFault {
  /** Stable identity: `${kind}@${scope}`; the same id is one fact. */
  readonly id: string;
  readonly kind: string;
  /** GPU index, or null when the fault concerns every GPU (driver) or a GPU nvidia-smi has not named yet. */
  readonly gpu: number | null;
  readonly busId?: string;
  readonly severity: Severity;
  /** What is wrong, for people. */
  readonly reason: string;
  /** What to do about it. */
  readonly action: string;
  /** When it was first seen (ms since the epoch). */
  readonly since: number;
  /** When it was last seen. */
  readonly lastSeen: number;
  /** How many times the cause was observed (samples, XIDs, error increments). */
  readonly count: number;
  readonly xid?: number;
  readonly code?: ErrorCode;
  /** What cures it (absent: a condition that passes by itself, such as heat or full memory). */
  readonly recovery?: Recovery;
  /** The reading that defines the fault, where several are possible (the recovery action asked for). */
  readonly value?: string;
}

export interface ClearedFault extends GpuFault {
  readonly clearedAt: number;
  /** Why it cleared. */
  readonly clearReason: string;
}
