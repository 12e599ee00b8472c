/**
 * Ollama's lazy model loading, simulated: a model loads on first use (taking
 * the load time, needing room on the GPUs), stays for its keep-alive, and is
 * unloaded when that passes with nothing running on it.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { gateLoad } from "../fault-gate.ts";
import type { Fault } from "../faults.ts";
import type { SimGpuHooks } from "../gpu-hooks.ts";
import type { SimBackendOptions } from "../options.ts";
import { DEFAULT_TOTAL_MIB } from "./common.ts";
import type { ErrorBody } from "./kind.ts";

export interface OllamaModelDeps {
  readonly options: SimBackendOptions;
  readonly gpu?: SimGpuHooks;
  readonly fault: () => Fault;
  readonly busy: () => boolean;
  readonly log: (line: string) => void;
  /** A load ran out of memory on `room.gpu`: prints the runner's death and gives the request's error. */
  readonly loadFailed: (room: { gpu: number; freeMib: number; totalMib: number }, wantMib: number, model: string) => ErrorBody;
}

export class OllamaModels {
  /** Loaded model → expiry time. */
  readonly loaded = new Map<string, number>();
  private readonly loading = new Map<string, Promise<ErrorBody | undefined>>();
  private readonly unloadTimers = new Map<string, NodeJS.Timeout>();
  private readonly d: OllamaModelDeps;
  /** Models run on the CPU (the on_cpu fault): they load there and hold no GPU memory. */
  private cpu = false;

  constructor(deps: OllamaModelDeps) {
    this.d = deps;
  }

  /** Ollama's keep_alive: seconds, a duration string, or negative for forever. */
  keepAliveMs(keepAlive: unknown): number {
    if (typeof keepAlive === "number") return keepAlive < 0 ? Infinity : keepAlive * 1000;
    if (typeof keepAlive === "string") {
      const m = /^(-?\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(keepAlive.trim());
      if (m) {
        const n = Number(m[1]);
        if (n < 0) return Infinity;
        return n * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? "s"] ?? 1000);
      }
    }
    return this.d.options.keepAliveMs;
  }

  /** Loads `model` unless it is loaded; concurrent callers share one load. Resolves with an error body when the load fails. */
  ensureLoaded(model: string, keepAlive: unknown): Promise<ErrorBody | undefined> {
    if (this.loaded.has(model)) return Promise.resolve(undefined);
    let pending = this.loading.get(model);
    if (!pending) {
      pending = this.load(model).finally(() => this.loading.delete(model));
      this.loading.set(model, pending);
    }
    return pending.then((failed) => {
      if (!failed) this.touch(model, keepAlive);
      return failed;
    });
  }

  private async load(model: string): Promise<ErrorBody | undefined> {
    const { options, gpu } = this.d;
    this.d.log(`time=${new Date().toISOString()} level=INFO source=server.go:400 msg="starting llama server" model=${model}`);
    await sleep(gateLoad(this.d.fault(), options.loadMs).ms);
    const vramMib = Math.round(options.modelMib * options.vramFraction);
    // The fault is read again once the wait is over: one set meanwhile applies to this load.
    const oom = gateLoad(this.d.fault(), options.loadMs).oom;
    const room = this.cpu ? undefined : oom ? { gpu: 0, freeMib: 0, totalMib: (await gpu?.totalMib()) ?? DEFAULT_TOTAL_MIB } : await gpu?.checkRoom(vramMib + this.heldMib());
    if (room) return this.d.loadFailed(room, vramMib, model);
    this.loaded.set(model, Date.now() + options.keepAliveMs);
    await gpu?.hold(this.gpuMib());
    this.d.log(`time=${new Date().toISOString()} level=INFO source=server.go:637 msg="llama runner started in ${(options.loadMs / 1000).toFixed(2)} seconds"`);
    return undefined;
  }

  private heldMib(): number {
    return this.loaded.size * Math.round(this.d.options.modelMib * this.d.options.vramFraction);
  }

  /** What the loaded models hold on the GPU: nothing while they run on the CPU. */
  private gpuMib(): number {
    return this.cpu ? 0 : this.heldMib();
  }

  /** The loaded models move to the CPU (they drop their GPU memory) or back onto the GPU. */
  async setCpu(cpu: boolean): Promise<void> {
    this.cpu = cpu;
    await this.d.gpu?.hold(this.gpuMib());
  }

  /** A request used `model`: its expiry moves to now + keep-alive. */
  touch(model: string, keepAlive: unknown): void {
    if (!this.loaded.has(model)) return;
    const ms = this.keepAliveMs(keepAlive);
    clearTimeout(this.unloadTimers.get(model));
    this.loaded.set(model, ms === Infinity ? Date.now() + 100 * 365 * 86_400_000 : Date.now() + ms);
    if (ms === Infinity) return;
    this.unloadTimers.set(
      model,
      setTimeout(() => {
        if (this.d.busy()) return this.touch(model, keepAlive);
        this.loaded.delete(model);
        this.unloadTimers.delete(model);
        void this.d.gpu?.hold(this.gpuMib());
      }, ms).unref(),
    );
  }

  /** The runner died: every model is gone from the GPU. */
  async unloadAll(): Promise<void> {
    this.loaded.clear();
    await this.d.gpu?.hold(0);
  }

  close(): void {
    for (const t of this.unloadTimers.values()) clearTimeout(t);
  }
}
