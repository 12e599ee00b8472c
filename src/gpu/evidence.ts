/**
 * When an event fault (an XID, a rise in uncorrected ECC errors) ends: on
 * evidence, never on a guess. Pure. By each fault's `recovery`:
 *
 * - `restart_app` (the application caused it): `event_hold` after its last
 *   occurrence (xid-policy.ts expireEvents).
 * - `none` (transient): once nvidia-smi shows that GPU healthy again after
 *   it — a plausible sample and no condition fault (down or degraded) on it.
 * - `reset_gpu`, `reboot`: only on evidence that the GPU was reset — its
 *   recovery action back to None after something else, its uncorrected
 *   volatile ECC count going back down, the GPU answering again after
 *   nvidia-smi saw it lost or missing (re-enumerated), a reset llmsup did,
 *   or the operator (`llmsup gpus clear`).
 *
 * Evidence of a reset ends every event fault on that GPU, whatever its
 * recovery. Each clear says which evidence.
 */
import { concerns } from "./report.ts";
import { indexOfBus, type GpuIdentity, type Ledger } from "./ledger.ts";
import type { GpuFault, SmiFailure } from "./types.ts";

/** The per-GPU memory an evaluation step reads and updates. */
export interface EvidenceMaps {
  readonly gpus: Map<number, GpuIdentity>;
  readonly ecc: Map<number, number>;
  readonly actions: Map<number, string>;
  readonly gone: Map<number, number>;
}

/** Faults that are events, not states: they end on evidence, not when a reading changes. */
export function isEventFault(f: GpuFault): boolean {
  return f.kind === "ecc_uncorrected" || f.kind.startsWith("xid_");
}

/** Whether the event fault `f` is about GPU `gpu` (null: any GPU); a fault nvidia-smi's index is not known for is matched by bus id. */
function onGpu(f: GpuFault, gpu: number | null, busId: string | undefined): boolean {
  if (gpu === null) return true;
  return f.gpu === gpu || (f.gpu === null && busId !== undefined && f.busId === busId);
}

/** Ends every event fault on `gpu` (null: all GPUs). */
export function clearEventFaults(ledger: Ledger, gpu: number | null, busId: string | undefined, clearReason: string): void {
  for (const f of [...ledger.active.values()]) if (isEventFault(f) && onGpu(f, gpu, busId)) ledger.clear(f.id, clearReason);
}

/** Whether a fault clears `event_hold` after its last occurrence: only what an application caused. */
export function clearsByTime(f: GpuFault): boolean {
  return isEventFault(f) && f.recovery === "restart_app";
}

/** After a plausible sample of `gpu`: with no condition fault on it, its transient event faults raised before now end. */
export function clearTransientIfHealthy(ledger: Ledger, gpu: number, busId: string | undefined): void {
  const faults = [...ledger.active.values()];
  if (faults.some((f) => !isEventFault(f) && concerns(f, gpu, busId))) return;
  for (const f of faults) {
    if (isEventFault(f) && f.recovery === "none" && onGpu(f, gpu, busId) && f.lastSeen < ledger.now) ledger.clear(f.id, `nvidia-smi shows GPU ${gpu} healthy again`);
  }
}

/** nvidia-smi could not see a GPU (a device-handle failure names it) or any GPU (no driver, no devices, a driver/library mismatch). */
export function markGone(maps: EvidenceMaps, f: SmiFailure, now: number): void {
  if (f.kind === "gpu_lost" || f.kind === "device_error") {
    const gpu = indexOfBus(maps.gpus, f.busId);
    if (gpu !== null) maps.gone.set(gpu, now);
  } else if (f.kind === "driver_not_loaded" || f.kind === "no_devices" || f.kind === "nvml_mismatch") {
    for (const gpu of maps.gpus.keys()) maps.gone.set(gpu, now);
  }
}

/** A reset llmsup did, or the operator's word: the event faults on the GPU end; after llmsup's reset its counters start afresh. */
export function resetInput(ledger: Ledger, maps: EvidenceMaps, input: { readonly gpu: number | null; readonly by: "llmsup" | "operator"; readonly reason?: string }): void {
  const reason = input.reason?.trim();
  const clearReason = input.by === "operator" ? `cleared by the operator: ${reason || "no reason given"}` : `reset by llmsup${reason ? `: ${reason}` : ""}`;
  clearEventFaults(ledger, input.gpu, input.gpu === null ? undefined : maps.gpus.get(input.gpu)?.busId, clearReason);
  if (input.by !== "llmsup") return;
  for (const gpu of input.gpu === null ? [...maps.gpus.keys()] : [input.gpu]) {
    maps.ecc.delete(gpu);
    maps.actions.delete(gpu);
  }
}
