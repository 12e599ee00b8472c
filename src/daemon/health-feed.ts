/**
 * What the processes and the GPUs say about each backend, into the health
 * registry the router reads: a supervisor transition sets the backend's
 * process health (and whether it is on its way back, known before the change
 * is announced — routes read both); every backend on a faulty GPU takes the
 * worst of its GPUs' faults.
 */
import type { Config } from "../config/types.ts";
import type { GpuFault } from "../gpu/types.ts";
import type { Health, HealthRegistry } from "../health/registry.ts";
import { isServing, type BackendState } from "../supervisor/states.ts";
import { gpuHealthOf } from "./gpu-health.ts";

/** A backend's process health in state `to` (entered for `reason`). Pure. */
export function processHealthOf(to: BackendState, reason: string): { readonly state: Health; readonly reason: string; readonly recovering: boolean } {
  const state: Health = isServing(to) ? (to === "degraded" ? "degraded" : "healthy") : "down";
  return { state, reason: state === "healthy" ? "" : `process ${to}: ${reason}`, recovering: to === "starting" || to === "backoff" || to === "exited" || to === "stopping" };
}

export class HealthFeed {
  private readonly faults = new Map<string, GpuFault>();
  private readonly health: HealthRegistry;

  constructor(health: HealthRegistry) {
    this.health = health;
  }

  process(backend: string, to: BackendState, reason: string): void {
    const h = processHealthOf(to, reason);
    this.health.setRecovering(backend, h.recovering);
    this.health.set(backend, "process", h.state, h.reason);
    // A fresh process clears what passive failures said about the old one.
    if (to === "ready") this.health.set(backend, "passive", "healthy", "");
  }

  gpuFault(f: GpuFault, raised: boolean): void {
    if (raised) this.faults.set(f.id, f);
    else this.faults.delete(f.id);
  }

  /** Applies the GPU faults to every backend with GPUs; `busIds`: the bus id of each GPU index the monitor has seen. */
  applyGpu(config: Config, busIds: ReadonlyMap<number, string | undefined>): void {
    for (const b of config.backends) {
      if (b.gpus.length === 0) continue;
      const h = gpuHealthOf(b, this.faults.values(), busIds);
      this.health.set(b.name, "gpu", h.state, h.reason);
    }
  }
}
