/** What one plausible sample of one GPU says: its conditions with hysteresis, evidence of a reset, ECC rises. Pure: works on the step's ledger and maps. */
import type { FaultConfig } from "./faults.ts";
import { clearEventFaults, clearTransientIfHealthy, type EvidenceMaps } from "./evidence.ts";
import { faultId, gpuLabel, type FaultSpec, type Ledger } from "./ledger.ts";
import type { GpuSample, Recovery } from "./types.ts";

interface Condition {
  readonly spec: FaultSpec;
  readonly observed: boolean | undefined;
  readonly sustain: number;
}

const bit = (mask: number | undefined, b: number): boolean | undefined => (mask === undefined ? undefined : (mask & b) !== 0);
const either = (...v: (boolean | undefined)[]): boolean | undefined => (v.some((x) => x === true) ? true : v.every((x) => x === undefined) ? undefined : false);

/**
 * One plausible sample of one GPU (`identified`: the row is that GPU's
 * alone, not the worst of a repeated index): its identity, the evidence of a
 * reset it shows, its conditions (slowdowns, heat, memory, flags, the
 * recovery action the driver asks for) and a rise in uncorrected ECC errors.
 */
export function sampleConditions(ledger: Ledger, maps: EvidenceMaps, s: GpuSample, identified: boolean, config: FaultConfig): void {
  const { gpus, ecc, actions, gone } = maps;
  const before = gpus.get(s.index) ?? {};
  const identity = identified ? { uuid: s.uuid ?? before.uuid, busId: s.busId ?? before.busId, name: s.name ?? before.name } : before;
  gpus.set(s.index, identity);
  const gpu = s.index;
  const busId = identity.busId;
  const label = gpuLabel(gpu);
  const spec = (kind: string, severity: FaultSpec["severity"], reason: string, action: string, extra: { value?: string; recovery?: Recovery } = {}): FaultSpec => ({
    kind,
    gpu,
    busId,
    severity,
    reason: `${label}: ${reason}`,
    action,
    ...(extra.recovery !== undefined ? { recovery: extra.recovery } : {}),
    ...(extra.value !== undefined ? { value: extra.value } : {}),
  });

  // The GPU answers: a device-handle failure naming it has ended.
  if (!s.requiresReset) {
    for (const kind of ["gpu_lost", "device_error"]) {
      ledger.absent(faultId(kind, gpu, busId), config.clearSamples);
      if (busId) ledger.absent(faultId(kind, null, busId), config.clearSamples);
    }
  }

  // Evidence of a reset (read only from a row that is this GPU's alone): the event faults it cures end (evidence.ts).
  const count = identified ? s.eccUncorrected : undefined;
  const last = ecc.get(gpu);
  const action = s.recoveryAction;
  if (identified) {
    const previousAction = actions.get(gpu);
    const evidence: string[] = [];
    if (gone.has(gpu)) evidence.push(`${label} answers nvidia-smi again after it was lost or missing (re-enumerated)`);
    if (action === "None" && previousAction !== undefined && previousAction !== "None") evidence.push(`the driver's recovery action went back from "${previousAction}" to None`);
    if (count !== undefined && last !== undefined && count < last) evidence.push(`uncorrected ECC errors went back from ${last} to ${count}`);
    gone.delete(gpu);
    if (action !== undefined) actions.set(gpu, action);
    if (evidence.length > 0) clearEventFaults(ledger, gpu, busId, `the GPU was reset (${evidence.join("; ")})`);
  }

  const r = s.reasons;
  const thermal = either(r.hwThermalSlowdown, r.swThermalSlowdown, r.hwThermalSlowdown === undefined ? bit(r.mask, 0x40) : undefined, r.swThermalSlowdown === undefined ? bit(r.mask, 0x20) : undefined);
  const brake = r.hwPowerBrakeSlowdown ?? bit(r.mask, 0x80);
  const hw = r.hwSlowdown ?? bit(r.mask, 0x08);
  const hwAlone = hw === undefined ? undefined : hw && thermal !== true && brake !== true;
  const memRatio = s.memoryUsedMib !== undefined && s.memoryTotalMib ? s.memoryUsedMib / s.memoryTotalMib : undefined;
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
    { spec: spec("retired_pages_pending", "degraded", "retired memory pages pending", "reset the GPU when it is idle to retire the pages", { recovery: "reset_gpu" }), observed: s.retiredPagesPending, sustain: 1 },
    {
      spec: spec("recovery_action", recoverySeverity(action), `the driver asks for recovery action "${action}"`, recoveryAdvice(action), { value: action, recovery: recoveryOf(action) }),
      observed: action === undefined ? undefined : action !== "None",
      sustain: 1,
    },
    { spec: spec("requires_reset", "down", "nvidia-smi reads [GPU requires reset]", "stop the apps on it and reset the GPU (nvidia-smi -r), or reboot", { recovery: "reset_gpu" }), observed: s.requiresReset, sustain: 1 },
  ];
  for (const c of conditions) ledger.observe(c.spec, c.observed, c.sustain, config.clearSamples);

  // Uncorrected ECC errors: a rise is an event that a GPU reset cures.
  if (count !== undefined) {
    if (last !== undefined && count > last) {
      ledger.raise(
        spec("ecc_uncorrected", "degraded", `uncorrected ECC errors rose from ${last} to ${count}`, "the app that hit them may have died; check XIDs and reset the GPU when idle (or `llmsup gpus clear` once dealt with)", { recovery: "reset_gpu" }),
        ledger.now,
        count - last,
      );
    }
    ecc.set(gpu, count);
  }
  clearTransientIfHealthy(ledger, gpu, busId);
}

function recoverySeverity(action: string | undefined): FaultSpec["severity"] {
  return action === "Drain P2P" ? "degraded" : "down";
}

/** What cures what the driver asks for; Drain P2P is a traffic change, not a cure llmsup can apply. */
function recoveryOf(action: string | undefined): Recovery | undefined {
  switch (action) {
    case "Reset":
    case "Drain and Reset":
      return "reset_gpu";
    case "Reboot":
      return "reboot";
    default:
      return undefined;
  }
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
