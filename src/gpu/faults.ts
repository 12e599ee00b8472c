/**
 * The pure fault evaluator:
 *
 *   evaluate(state, input, now, config) → { state, raised[], cleared[] }
 *
 * Inputs are nvidia-smi samples, remapped-row readings, whole-command
 * failures, a missed sample deadline, kernel-log events and clock ticks.
 * Conditions read from samples (slowdowns, temperature, memory, flags) have
 * hysteresis: raised after `sustain_samples` samples in a row (flags at
 * once), cleared after `clear_samples` without. Events (XIDs, a rise in
 * uncorrected ECC errors) are held for `event_hold` after their last
 * occurrence. The same fault is one fact: raised once, cleared once.
 */
import type { GpuConfig } from "../config/types.ts";
import { formatDuration } from "../config/units.ts";
import { faultId, gpuLabel, indexOfBus, indexOfUuid, Ledger, type FaultSpec, type GpuIdentity, type Streak } from "./ledger.ts";
import type { ClearedFault, GpuFault, GpuSample, RemappedRows, SmiFailure } from "./types.ts";
import { applyKernelEvent, expireEvents, type PendingLone, type SeenXid, type XidOutcome } from "./xid-policy.ts";
import type { KernelGpuEvent } from "./xid.ts";

export interface FaultConfig {
  readonly temperatureLimit: number;
  readonly memoryFull: number;
  readonly sustainSamples: number;
  readonly clearSamples: number;
  /** How long an event fault (XID, ECC rise) stays after its last occurrence, ms. */
  readonly eventHoldMs: number;
}

export function faultConfig(gpu: Pick<GpuConfig, "temperature_limit" | "memory_full" | "sustain_samples" | "clear_samples" | "event_hold">): FaultConfig {
  return {
    temperatureLimit: gpu.temperature_limit,
    memoryFull: gpu.memory_full,
    sustainSamples: gpu.sustain_samples,
    clearSamples: gpu.clear_samples,
    eventHoldMs: gpu.event_hold,
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
  readonly xids: readonly SeenXid[];
  readonly lone: readonly PendingLone[];
}

export function initialFaultState(): FaultState {
  return { active: new Map(), streaks: new Map(), gpus: new Map(), ecc: new Map(), xids: [], lone: [] };
}

export type FaultInput =
  | { readonly type: "sample"; readonly gpus: readonly GpuSample[]; readonly failures?: readonly SmiFailure[] }
  | { readonly type: "remapped"; readonly rows: readonly RemappedRows[] }
  | { readonly type: "failure"; readonly failure: SmiFailure }
  | { readonly type: "unresponsive"; readonly waitedMs: number }
  | { readonly type: "kernel"; readonly event: KernelGpuEvent }
  | { readonly type: "tick" }
  /** An operator says the GPU (null: every GPU) was reset: event faults are dropped. */
  | { readonly type: "reset"; readonly gpu: number | null };

export interface Evaluation {
  readonly state: FaultState;
  readonly raised: readonly GpuFault[];
  readonly cleared: readonly ClearedFault[];
  /** For kernel inputs: what the event was taken as. */
  readonly xid?: XidOutcome;
}

/** Faults about nvidia-smi itself; one at a time, the newest replaces the others. */
const STATUS_KINDS = ["driver_unresponsive", "driver_not_loaded", "nvml_mismatch", "no_devices", "nvidia_smi_failed"] as const;

/** Faults that are events, not states: held, then cleared by time or a reset. */
export function isEventFault(f: GpuFault): boolean {
  return f.kind === "ecc_uncorrected" || f.kind.startsWith("xid_");
}

export function evaluate(state: FaultState, input: FaultInput, now: number, config: FaultConfig): Evaluation {
  const ledger = new Ledger(state.active, state.streaks, now);
  const gpus = new Map(state.gpus);
  const ecc = new Map(state.ecc);
  let xids = state.xids;
  let lone = state.lone;
  let xid: XidOutcome | undefined;

  switch (input.type) {
    case "sample":
      for (const f of input.failures ?? []) gpuFailure(ledger, gpus, f, config);
      for (const s of input.gpus) sample(ledger, gpus, ecc, s, config);
      if (input.gpus.length > 0) for (const kind of STATUS_KINDS) ledger.absent(faultId(kind, null), config.clearSamples);
      break;
    case "remapped":
      for (const r of input.rows) remapped(ledger, gpus, r, config);
      break;
    case "failure":
      if (input.failure.kind === "gpu_lost" || input.failure.kind === "device_error") {
        for (const kind of STATUS_KINDS) ledger.clear(faultId(kind, null), "nvidia-smi answers again");
        gpuFailure(ledger, gpus, input.failure, config);
      } else status(ledger, statusSpec(input.failure));
      break;
    case "unresponsive":
      status(ledger, {
        kind: "driver_unresponsive",
        gpu: null,
        severity: "down",
        reason: `nvidia-smi gave no sample for ${formatDuration(input.waitedMs)}: the driver may be wedged`,
        action: "check the kernel log for XIDs; a GPU reset or a reboot may be needed (llmsup starts no more nvidia-smi while one is stuck)",
        code: "LLMSUP_E_GPU_UNRESPONSIVE",
      });
      break;
    case "kernel": {
      const r = applyKernelEvent(ledger, { gpus, xids, lone }, input.event);
      xids = r.xids;
      lone = r.lone;
      xid = r.outcome;
      break;
    }
    case "reset":
      for (const f of [...ledger.active.values()]) {
        if (isEventFault(f) && (input.gpu === null || f.gpu === input.gpu)) ledger.clear(f.id, "the GPU was reset");
      }
      break;
    case "tick":
      break;
  }
  const expired = expireEvents(ledger, { xids, lone }, config);
  return {
    state: { active: ledger.active, streaks: ledger.streaks, gpus, ecc, xids: expired.xids, lone: expired.lone },
    raised: ledger.raised,
    cleared: ledger.cleared,
    xid,
  };
}

function status(ledger: Ledger, spec: FaultSpec): void {
  for (const kind of STATUS_KINDS) if (kind !== spec.kind) ledger.clear(faultId(kind, null), `superseded by ${spec.kind}`);
  ledger.raise(spec);
}

function statusSpec(f: SmiFailure): FaultSpec {
  const base = { gpu: null, reason: f.message, code: f.code } as const;
  switch (f.kind) {
    case "unresponsive":
      return { ...base, kind: "driver_unresponsive", severity: "down", action: "a GPU reset or a reboot may be needed; check the kernel log for XIDs" };
    case "driver_not_loaded":
      return { ...base, kind: "driver_not_loaded", severity: "down", action: "load the NVIDIA driver (check the nvidia module and the kernel log)" };
    case "nvml_mismatch":
      return { ...base, kind: "nvml_mismatch", severity: "down", action: "reload the NVIDIA driver or reboot (the driver was upgraded underneath)" };
    case "no_devices":
      return { ...base, kind: "no_devices", severity: "down", action: "check that the GPUs are installed, visible and not fallen off the bus" };
    default:
      return { ...base, kind: "nvidia_smi_failed", severity: "degraded", action: "run nvidia-smi by hand; until it works llmsup cannot see the GPUs" };
  }
}

/** A device-handle failure naming one GPU. */
function gpuFailure(ledger: Ledger, gpus: ReadonlyMap<number, GpuIdentity>, f: SmiFailure, config: FaultConfig): void {
  if (f.kind !== "gpu_lost" && f.kind !== "device_error") {
    status(ledger, statusSpec(f));
    return;
  }
  const gpu = indexOfBus(gpus, f.busId);
  const lost = f.kind === "gpu_lost";
  ledger.observe(
    {
      kind: f.kind,
      gpu,
      busId: f.busId,
      severity: "down",
      reason: `${gpuLabel(gpu, f.busId)}: ${lost ? "GPU is lost (fell off the bus)" : "nvidia-smi cannot open it"}: ${f.message}`,
      action: lost ? "reboot the machine; only a reboot recovers a lost GPU" : "check the kernel log for XIDs; reset the GPU",
      code: f.code,
    },
    true,
    1,
    config.clearSamples,
  );
}

interface Condition {
  readonly spec: FaultSpec;
  readonly observed: boolean | undefined;
  readonly sustain: number;
}

const bit = (mask: number | undefined, b: number): boolean | undefined => (mask === undefined ? undefined : (mask & b) !== 0);
const either = (...v: (boolean | undefined)[]): boolean | undefined => (v.some((x) => x === true) ? true : v.every((x) => x === undefined) ? undefined : false);

function sample(ledger: Ledger, gpus: Map<number, GpuIdentity>, ecc: Map<number, number>, s: GpuSample, config: FaultConfig): void {
  const before = gpus.get(s.index) ?? {};
  const identity = { uuid: s.uuid ?? before.uuid, busId: s.busId ?? before.busId, name: s.name ?? before.name };
  gpus.set(s.index, identity);
  const gpu = s.index;
  const busId = identity.busId;
  const label = gpuLabel(gpu);
  const spec = (kind: string, severity: FaultSpec["severity"], reason: string, action: string, value?: string): FaultSpec =>
    value === undefined ? { kind, gpu, busId, severity, reason: `${label}: ${reason}`, action } : { kind, gpu, busId, severity, reason: `${label}: ${reason}`, action, value };

  // The GPU answers: a device-handle failure naming it has ended.
  if (!s.requiresReset) {
    for (const kind of ["gpu_lost", "device_error"]) {
      ledger.absent(faultId(kind, gpu, busId), config.clearSamples);
      if (busId) ledger.absent(faultId(kind, null, busId), config.clearSamples);
    }
  }

  const r = s.reasons;
  const thermal = either(r.hwThermalSlowdown, r.swThermalSlowdown, r.hwThermalSlowdown === undefined ? bit(r.mask, 0x40) : undefined, r.swThermalSlowdown === undefined ? bit(r.mask, 0x20) : undefined);
  const brake = r.hwPowerBrakeSlowdown ?? bit(r.mask, 0x80);
  const hw = r.hwSlowdown ?? bit(r.mask, 0x08);
  const hwAlone = hw === undefined ? undefined : hw && thermal !== true && brake !== true;
  const memRatio = s.memoryUsedMib !== undefined && s.memoryTotalMib ? s.memoryUsedMib / s.memoryTotalMib : undefined;
  const action = s.recoveryAction === undefined ? undefined : s.recoveryAction;
  const S = config.sustainSamples;

  const conditions: Condition[] = [
    { spec: spec("thermal_slowdown", "degraded", "clocks slowed down for heat (thermal slowdown)", "check cooling, airflow and fans; the GPU runs slower until it cools"), observed: thermal, sustain: S },
    { spec: spec("power_brake", "degraded", "hardware power brake slowdown", "check the power supplies and the chassis power-brake signal"), observed: brake, sustain: S },
    { spec: spec("hw_slowdown", "degraded", "hardware slowdown", "check cooling and power delivery"), observed: hwAlone, sustain: S },
    {
      spec: spec("over_temperature", "degraded", `${s.temperatureC ?? "?"} °C, over the ${config.temperatureLimit} °C limit`, "check cooling and airflow; lower the load on this GPU"),
      observed: s.temperatureC === undefined ? undefined : s.temperatureC > config.temperatureLimit,
      sustain: S,
    },
    {
      spec: spec("memory_full", "degraded", `memory ${memRatio === undefined ? "?" : (memRatio * 100).toFixed(1)}% in use (${s.memoryUsedMib ?? "?"} of ${s.memoryTotalMib ?? "?"} MiB)`, "the next allocation may fail: see which processes hold it (llmsup gpus)"),
      observed: memRatio === undefined ? undefined : memRatio >= config.memoryFull,
      sustain: S,
    },
    { spec: spec("retired_pages_pending", "degraded", "retired memory pages pending", "reset the GPU when it is idle to retire the pages"), observed: s.retiredPagesPending, sustain: 1 },
    {
      spec: spec("recovery_action", recoverySeverity(action), `the driver asks for recovery action "${action}"`, recoveryAdvice(action), action),
      observed: action === undefined ? undefined : action !== "None",
      sustain: 1,
    },
    { spec: spec("requires_reset", "down", "nvidia-smi reads [GPU requires reset]", "stop the apps on it and reset the GPU (nvidia-smi -r), or reboot"), observed: s.requiresReset, sustain: 1 },
  ];
  for (const c of conditions) ledger.observe(c.spec, c.observed, c.sustain, config.clearSamples);

  // Uncorrected ECC errors: a rise is an event; counters that go back down mean the GPU was reset.
  const count = s.eccUncorrected;
  const last = ecc.get(gpu);
  if (count !== undefined) {
    if (last !== undefined && count > last) {
      ledger.raise(spec("ecc_uncorrected", "degraded", `uncorrected ECC errors rose from ${last} to ${count}`, "the app that hit them may have died; check XIDs and reset the GPU when idle"), ledger.now, count - last);
    } else if (last !== undefined && count < last) {
      for (const f of [...ledger.active.values()]) {
        if (f.gpu === gpu && isEventFault(f)) ledger.clear(f.id, `the GPU was reset (uncorrected ECC errors went back from ${last} to ${count})`);
      }
    }
    ecc.set(gpu, count);
  }
}

function recoverySeverity(action: string | undefined): FaultSpec["severity"] {
  return action === "Drain P2P" ? "degraded" : "down";
}

function recoveryAdvice(action: string | undefined): string {
  switch (action) {
    case "Reset":
      return "stop the apps on this GPU and reset it";
    case "Reboot":
      return "reboot the machine";
    case "Drain P2P":
      return "stop peer-to-peer traffic to this GPU, then reset it";
    case "Drain and Reset":
      return "drain the apps on this GPU, then reset it";
    default:
      return "follow NVIDIA's guidance for this recovery action";
  }
}

function remapped(ledger: Ledger, gpus: ReadonlyMap<number, GpuIdentity>, r: RemappedRows, config: FaultConfig): void {
  const gpu = indexOfUuid(gpus, r.gpuUuid);
  const busId = r.busId ?? (gpu !== null ? gpus.get(gpu)?.busId : undefined);
  const label = gpu !== null ? gpuLabel(gpu) : `GPU ${r.gpuUuid}`;
  const scope = { gpu, busId: gpu === null ? (busId ?? r.gpuUuid) : busId };
  ledger.observe(
    { kind: "row_remap_pending", ...scope, severity: "degraded", reason: `${label}: a memory row remap is pending`, action: "reset the GPU when it is idle to apply the remap" },
    r.pending,
    1,
    config.clearSamples,
  );
  ledger.observe(
    { kind: "row_remap_failure", ...scope, severity: "down", reason: `${label}: a memory row remap failed`, action: "take the GPU out of service and reset it; the hardware is suspect" },
    r.failure,
    1,
    config.clearSamples,
  );
}
