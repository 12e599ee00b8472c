/**
 * A backend's health as its GPUs make it: the worst fault on any of its GPUs;
 * with none, degraded when its process answers from the CPU (`offGpu`, the
 * reason gpu-residency.ts found). Pure.
 */
import type { BackendConfig } from "../config/types.ts";
import { concerns, faultLine } from "../gpu/report.ts";
import type { GpuFault } from "../gpu/types.ts";
import type { Health } from "../health/registry.ts";

/** `busIds`: the bus id of each GPU index the monitor has seen (a fault naming only a bus id concerns that GPU). */
export function gpuHealthOf(b: BackendConfig, faults: Iterable<GpuFault>, busIds: ReadonlyMap<number, string | undefined>, offGpu?: string): { state: Health; reason: string } {
  let worst: { state: Health; reason: string } = { state: "healthy", reason: "" };
  for (const f of faults) {
    if (!b.gpus.some((g) => concerns(f, g, busIds.get(g)))) continue;
    const s: Health = f.severity === "down" ? "down" : "degraded";
    if (worst.state === "healthy" || (s === "down" && worst.state !== "down")) worst = { state: s, reason: faultLine(f, "GPU driver") };
  }
  return worst.state === "healthy" && offGpu !== undefined ? { state: "degraded", reason: offGpu } : worst;
}
