/**
 * What the processes and the GPUs say about each backend, into the health
 * registry the router reads: a supervisor transition sets the backend's
 * process health (and whether it is on its way back, known before the change
 * is announced — routes read both); every backend on a faulty GPU takes the
 * worst of its GPUs' faults; a GPU tier answering from the CPU is degraded
 * (residency-watch.ts finds it) while that process serves.
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
  /** Since when each backend's process serves (ready or degraded). */
  private readonly serving = new Map<string, number>();
  /** Backends whose serving process answers from the CPU, with why. */
  private readonly offGpu = new Map<string, string>();
  /** What the GPU health was last applied with, to apply it again when a finding goes with its process. */
  private lastGpu?: { readonly config: Config; readonly busIds: ReadonlyMap<number, string | undefined> };

  constructor(health: HealthRegistry) {
    this.health = health;
  }

  /** A supervisor transition of `backend` to `to`, at `at`. */
  process(backend: string, to: BackendState, reason: string, at?: number): void {
    const h = processHealthOf(to, reason);
    this.health.setRecovering(backend, h.recovering);
    this.health.set(backend, "process", h.state, h.reason);
    // A fresh process clears what passive failures said about the old one.
    if (to === "ready") this.health.set(backend, "passive", "healthy", "");
    if (isServing(to)) {
      if (at !== undefined && !this.serving.has(backend)) this.serving.set(backend, at);
      return;
    }
    this.serving.delete(backend);
    // What was found of the process that served goes with it.
    if (this.offGpu.delete(backend) && this.lastGpu) this.applyGpu(this.lastGpu.config, this.lastGpu.busIds);
  }

  /** Since when `backend`'s process serves; undefined when it does not. */
  servingSince(backend: string): number | undefined {
    return this.serving.get(backend);
  }

  /**
   * What the residency check found: why `backend`'s process answers from the
   * CPU, or undefined (it is on its GPUs). Applied by applyGpu. A finding that
   * comes in after its process stopped serving is dropped with it.
   */
  residency(backend: string, offGpu: string | undefined): void {
    if (offGpu === undefined) this.offGpu.delete(backend);
    else if (this.serving.has(backend)) this.offGpu.set(backend, offGpu);
  }

  gpuFault(f: GpuFault, raised: boolean): void {
    if (raised) this.faults.set(f.id, f);
    else this.faults.delete(f.id);
  }

  /** Applies the GPU faults to every backend with GPUs; `busIds`: the bus id of each GPU index the monitor has seen. */
  applyGpu(config: Config, busIds: ReadonlyMap<number, string | undefined>): void {
    this.lastGpu = { config, busIds };
    for (const b of config.backends) {
      if (b.gpus.length === 0) continue;
      const h = gpuHealthOf(b, this.faults.values(), busIds, this.offGpu.get(b.name));
      this.health.set(b.name, "gpu", h.state, h.reason);
    }
  }
}
