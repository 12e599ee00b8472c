/**
 * What nvidia-smi's answers mean for the faults, one evaluation step at a
 * time (faults.ts drives it): whole-command failures (one driver fault at a
 * time), device-handle failures naming one GPU, the conditions a sample
 * shows (sample-conditions.ts), duplicate GPU indexes, GPUs whose readings
 * went stale, and row remapping. Pure: everything works on the step's
 * ledger and maps.
 */
import type { FaultConfig } from "./faults.ts";
import { markGone, type EvidenceMaps } from "./evidence.ts";
import { faultId, gpuLabel, indexOfBus, indexOfUuid, type FaultSpec, type GpuIdentity, type Ledger } from "./ledger.ts";
import { screen, type Screened } from "./plausible.ts";
import { sampleConditions } from "./sample-conditions.ts";
import type { GpuSample, RemappedRows, SmiFailure } from "./types.ts";
import { worstOf } from "./worst-of.ts";

/** Faults about nvidia-smi itself; one at a time, the newest replaces the others. */
export const STATUS_KINDS = ["driver_unresponsive", "driver_not_loaded", "nvml_mismatch", "no_devices", "nvidia_smi_failed"] as const;

/** One GPU index a sample named. */
export interface Observation {
  readonly index: number;
  /** Its readings, screened (the worst of the rows when nvidia-smi printed the index more than once). */
  readonly screened: Screened;
  /** Rows nvidia-smi printed with this index; more than one is a fault (duplicate_gpu_index). */
  readonly rows: number;
}

/** Raises a fault about nvidia-smi itself (it replaces any other); the same one again is the same fact, and its clear count starts over. */
export function status(ledger: Ledger, spec: FaultSpec, config: FaultConfig): void {
  for (const kind of STATUS_KINDS) if (kind !== spec.kind) ledger.clear(faultId(kind, null), `superseded by ${spec.kind}`);
  ledger.observe(spec, true, 1, config.clearSamples);
}

export function statusSpec(f: SmiFailure): FaultSpec {
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

/** A failure nvidia-smi printed: a device-handle failure names one GPU (lost, or that cannot be opened); any other is about the driver. */
export function gpuFailure(ledger: Ledger, maps: EvidenceMaps, f: SmiFailure, config: FaultConfig): void {
  if (f.kind !== "gpu_lost" && f.kind !== "device_error") {
    status(ledger, statusSpec(f), config);
    markGone(maps, f, ledger.now);
    return;
  }
  const gpu = indexOfBus(maps.gpus, f.busId);
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
      recovery: lost ? "reboot" : "reset_gpu",
    },
    true,
    1,
    config.clearSamples,
  );
  markGone(maps, f, ledger.now);
}

/**
 * One `--query-gpu` sample: its failures, then each GPU it named (screened;
 * a repeated index is a fault and its rows count as the worst of them), then
 * the GPUs it said nothing plausible about (stale after `stale_samples`) and
 * those it left out (missing: gone until they answer again).
 */
export function observeSample(ledger: Ledger, maps: EvidenceMaps, rows: readonly GpuSample[], failures: readonly SmiFailure[], config: FaultConfig): Observation[] {
  for (const f of failures) gpuFailure(ledger, maps, f, config);
  const named = new Set(failures.map((f) => indexOfBus(maps.gpus, f.busId)).filter((g): g is number => g !== null));

  const byIndex = new Map<number, Screened[]>();
  for (const row of rows) byIndex.set(row.index, [...(byIndex.get(row.index) ?? []), screen(row)]);
  const observed: Observation[] = [];
  for (const [index, screened] of byIndex) {
    const one: Screened = screened.length === 1 ? (screened[0] as Screened) : { sample: worstOf(screened.map((s) => s.sample)), rejected: screened.flatMap((s) => s.rejected), valid: screened.some((s) => s.valid) };
    observed.push({ index, screened: one, rows: screened.length });
    duplicate(ledger, maps.gpus, index, screened.length, config);
    if (one.valid) sampleConditions(ledger, maps, one.sample, screened.length === 1, config);
  }
  const valid = new Set(observed.filter((o) => o.screened.valid).map((o) => o.index));

  for (const gpu of maps.gpus.keys()) {
    const busId = maps.gpus.get(gpu)?.busId;
    const handleFault = ["gpu_lost", "device_error"].some((k) => ledger.active.has(faultId(k, gpu)) || (busId !== undefined && ledger.active.has(faultId(k, null, busId))));
    if (!named.has(gpu) && !handleFault) stale(ledger, gpu, busId, !valid.has(gpu), config);
    if (valid.size > 0 && !byIndex.has(gpu)) maps.gone.set(gpu, ledger.now);
  }
  if (valid.size > 0) for (const kind of STATUS_KINDS) ledger.absent(faultId(kind, null), config.clearSamples);
  return observed.sort((a, b) => a.index - b.index);
}

function duplicate(ledger: Ledger, gpus: ReadonlyMap<number, GpuIdentity>, gpu: number, rows: number, config: FaultConfig): void {
  ledger.observe(
    {
      kind: "duplicate_gpu_index",
      gpu,
      busId: gpus.get(gpu)?.busId,
      severity: "degraded",
      reason: `${gpuLabel(gpu)}: nvidia-smi printed ${rows} rows for this index in one sample; llmsup reads the worst of them`,
      action: "run nvidia-smi --query-gpu=index,uuid,pci.bus_id --format=csv by hand: two GPUs answer as one index (a driver or nvidia-smi fault); update or reload the driver",
    },
    rows > 1,
    1,
    config.clearSamples,
  );
}

/** A GPU with no plausible reading in this sample: after `stale_samples` in a row its readings are a fault; the first plausible one clears it. */
function stale(ledger: Ledger, gpu: number, busId: string | undefined, noReading: boolean, config: FaultConfig): void {
  const id = faultId("gpu_readings_stale", gpu, busId);
  if (!noReading) {
    if (ledger.active.has(id)) ledger.clear(id, "nvidia-smi gives plausible readings again");
    else ledger.streaks.delete(id);
    return;
  }
  ledger.observe(
    {
      kind: "gpu_readings_stale",
      gpu,
      busId,
      severity: "degraded",
      reason: `${gpuLabel(gpu)}: no plausible reading from nvidia-smi for ${config.staleSamples} sample${config.staleSamples === 1 ? "" : "s"} in a row; the readings shown are the last good ones`,
      action: "run nvidia-smi by hand and compare; check the driver version and the kernel log for XIDs (llmsup logs each implausible reading once, as LLMSUP_E_GPU_READING_IMPLAUSIBLE)",
      code: "LLMSUP_E_GPU_READING_IMPLAUSIBLE",
    },
    true,
    config.staleSamples,
    1,
  );
}

export function remapped(ledger: Ledger, gpus: ReadonlyMap<number, GpuIdentity>, r: RemappedRows, config: FaultConfig): void {
  const gpu = indexOfUuid(gpus, r.gpuUuid);
  const busId = r.busId ?? (gpu !== null ? gpus.get(gpu)?.busId : undefined);
  const label = gpu !== null ? gpuLabel(gpu) : `GPU ${r.gpuUuid}`;
  const scope = { gpu, busId: gpu === null ? (busId ?? r.gpuUuid) : busId };
  ledger.observe(
    { kind: "row_remap_pending", ...scope, severity: "degraded", reason: `${label}: a memory row remap is pending`, action: "reset the GPU when it is idle to apply the remap", recovery: "reset_gpu" },
    r.pending,
    1,
    config.clearSamples,
  );
  ledger.observe(
    { kind: "row_remap_failure", ...scope, severity: "down", reason: `${label}: a memory row remap failed`, action: "take the GPU out of service and reset it; the hardware is suspect", recovery: "reset_gpu" },
    r.failure,
    1,
    config.clearSamples,
  );
}
