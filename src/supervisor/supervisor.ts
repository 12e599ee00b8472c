/** All managed backends of a configuration, and the operations the control layer calls. */
import type { BackendConfig, Config } from "../config/types.ts";
import { LlmsupError } from "../errors/error.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock, TimerHandle } from "../platform/clock.ts";
import { memInfo } from "../platform/procfs.ts";
import type { PortHolderLookup } from "./port-guard.ts";
import { BackendOwner, type DrillMark } from "./owner.ts";
import type { Prober } from "./probes.ts";
import type { ResourceSampler } from "./resources.ts";
import type { BackendSpawner } from "./spawn.ts";
export type { PortHolderLookup } from "./port-guard.ts";
import type { BackendSnapshot, DrillCause, SupervisorEvent } from "./states.ts";
import type { VramProbe } from "./vram.ts";

/** A backend's readiness prober for the models the routes send it (the real one: createProber, probes.ts). */
export type ProberFactory = (backend: BackendConfig, models: readonly string[]) => Prober;

/**
 * What the supervisor works with. The real ones (spawnBackend, createProber,
 * hostShortOfMemory, portHolderOnThisHost, a ResourceSampler over /proc) are
 * built by the composition root (daemon/wire.ts); tests hand their own.
 */
export interface SupervisorDeps {
  readonly logger: Logger;
  readonly onEvent?: (e: SupervisorEvent) => void;
  readonly clock: Clock;
  readonly spawn: BackendSpawner;
  readonly vram?: VramProbe;
  /** Restart jitter in [0, 1); Math.random when absent (pure, no outside world: tests pass their own for exact delays). */
  readonly random?: () => number;
  /** Whether the host is short of memory now (a SIGKILL then reads as the OOM killer's). */
  readonly hostMemoryPressure: () => Promise<boolean>;
  readonly prober: ProberFactory;
  readonly readinessPollMs?: number;
  /**
   * How often to sample each backend's process group (CPU, memory) from /proc;
   * 0 or absent: only when sampleResources() is called.
   */
  readonly resourceSampleMs?: number;
  readonly resources: ResourceSampler;
  /** Who listens on a local port (readiness is tied to the process llmsup started or adopted). */
  readonly portHolder: PortHolderLookup;
}

/** Upstream model names the routes send to `backend`, in route order, each once. */
export function modelsOn(config: Config, backend: string): string[] {
  const out: string[] = [];
  for (const route of config.routes) for (const t of route.tiers) if (t.backend === backend && !out.includes(t.model)) out.push(t.model);
  return out;
}

/** The host is short of memory: under 5% (or 256 MiB) available. */
export async function hostShortOfMemory(): Promise<boolean> {
  const m = await memInfo();
  return m !== undefined && (m.available < 256 * 1024 * 1024 || m.available / m.total < 0.05);
}

export interface ReloadChanges {
  readonly unchanged: string[];
  readonly restarted: string[];
  readonly stopped: string[];
  readonly started: string[];
}

export class Supervisor {
  private readonly owners = new Map<string, BackendOwner>();
  /** Backends held stopped (their GPU needs a reset or a reboot): why, and whether release() starts them again. */
  private readonly holds = new Map<string, { readonly reason: string; readonly resume: boolean }>();
  private config: Config;
  private readonly deps: SupervisorDeps;
  private readonly clock: Clock;
  private readonly resources: ResourceSampler;
  private resourceTimer?: TimerHandle;

  constructor(config: Config, deps: SupervisorDeps) {
    this.config = config;
    this.deps = deps;
    this.clock = deps.clock;
    this.resources = deps.resources;
    for (const b of config.backends) if (b.managed) this.owners.set(b.name, this.makeOwner(config, b));
    this.sampleEvery(deps.resourceSampleMs ?? 0);
  }

  /** Samples every `ms` on the clock, each timer set when the last one fires, until stopAll. */
  private sampleEvery(ms: number): void {
    if (ms <= 0) return;
    this.resourceTimer = this.clock.setTimeout(() => {
      void this.sampleResources().catch(() => undefined);
      this.sampleEvery(ms);
    }, ms);
  }

  /** Samples the process group of every running backend now (one pass over /proc). */
  sampleResources(): Promise<void> {
    const pgids = [...this.owners.values()].map((o) => o.snapshot().pid).filter((p): p is number => p !== undefined && p > 0);
    return this.resources.sample(pgids);
  }

  private makeOwner(config: Config, b: BackendConfig): BackendOwner {
    const deps = this.deps;
    const models = modelsOn(config, b.name);
    return new BackendOwner(b, {
      clock: this.clock,
      spawn: deps.spawn,
      prober: deps.prober(b, models),
      vram: deps.vram,
      logger: deps.logger,
      logDir: config.daemon.log_dir,
      logMaxBytes: config.daemon.backend_log_max,
      logKeep: config.daemon.backend_log_keep,
      random: deps.random ?? Math.random,
      hostMemoryPressure: deps.hostMemoryPressure,
      onEvent: deps.onEvent ?? (() => undefined),
      readinessPollMs: deps.readinessPollMs,
      portHolder: deps.portHolder,
      liveRestore: config.daemon.live_restore,
    });
  }

  /**
   * Applies a new configuration: unchanged backends keep running untouched,
   * changed ones are restarted, removed ones stopped, added ones started.
   */
  async apply(next: Config): Promise<ReloadChanges> {
    const changes: ReloadChanges = { unchanged: [], restarted: [], stopped: [], started: [] };
    const nextManaged = new Map(next.backends.filter((b) => b.managed).map((b) => [b.name, b]));
    const prevConfig = this.config;
    this.config = next;
    for (const [name, owner] of [...this.owners]) {
      const nb = nextManaged.get(name);
      if (!nb) {
        this.holds.delete(name);
        await owner.stop("removed from the configuration");
        await owner.close();
        this.owners.delete(name);
        changes.stopped.push(name);
      } else if (JSON.stringify(nb) !== JSON.stringify(owner.config)) {
        await owner.stop("its configuration changed");
        await owner.close();
        const fresh = this.makeOwner(next, nb);
        this.owners.set(name, fresh);
        if (!this.holds.has(name)) await fresh.start();
        changes.restarted.push(name);
      } else {
        if (JSON.stringify(modelsOn(prevConfig, name)) !== JSON.stringify(modelsOn(next, name))) owner.setProber(this.deps.prober(nb, modelsOn(next, name)));
        owner.setLogLimits(next.daemon.backend_log_max, next.daemon.backend_log_keep);
        changes.unchanged.push(name);
      }
    }
    for (const [name, nb] of nextManaged) {
      if (this.owners.has(name)) continue;
      const fresh = this.makeOwner(next, nb);
      this.owners.set(name, fresh);
      await fresh.start();
      changes.started.push(name);
    }
    return changes;
  }

  /** The owner of a managed backend; a coded error for unknown or remote names. */
  owner(name: string): BackendOwner {
    const o = this.owners.get(name);
    if (o) return o;
    if (this.config.backends.some((b) => b.name === name)) throw new LlmsupError("LLMSUP_E_BACKEND_NOT_MANAGED", `backend "${name}" is remote: llmsup does not run its process`, { backend: name });
    throw new LlmsupError("LLMSUP_E_BACKEND_UNKNOWN", `no backend named "${name}" (managed: ${[...this.owners.keys()].join(", ") || "none"})`, { backend: name });
  }

  names(): string[] {
    return [...this.owners.keys()];
  }

  /** Starts every managed backend, in `order` first (route priority), then the rest. */
  async startAll(order: readonly string[] = []): Promise<void> {
    const names = [...order.filter((n) => this.owners.has(n)), ...this.names().filter((n) => !order.includes(n))];
    for (const n of names) if (!this.holds.has(n)) await this.owners.get(n)!.start();
  }

  /** Stops every backend in parallel, each by its own stop_timeout. */
  async stopAll(reason = "llmsup is stopping"): Promise<void> {
    this.resourceTimer?.cancel();
    this.resourceTimer = undefined;
    await Promise.all([...this.owners.values()].map((o) => o.stop(reason, { keepFatal: true })));
    await Promise.all([...this.owners.values()].map((o) => o.close()));
  }

  /** Adopts what an earlier daemon left running (BackendOwner.adoptLeftover), all at once; the names adopted. */
  async adoptAll(ms: number): Promise<string[]> {
    const owners = [...this.owners.values()];
    const adopted = await Promise.all(owners.map((o) => o.adoptLeftover(ms)));
    return owners.filter((_, i) => adopted[i]).map((o) => o.name);
  }

  /**
   * Lets go of every backend without stopping it (a daemon restart with
   * live_restore): they go on serving; the next daemon adopts them.
   */
  async detachAll(): Promise<void> {
    this.resourceTimer?.cancel();
    this.resourceTimer = undefined;
    await Promise.all([...this.owners.values()].map((o) => o.detach()));
  }

  async start(name: string): Promise<void> {
    this.refuseHeld(name);
    return this.owner(name).start();
  }

  stop(name: string): Promise<void> {
    return this.owner(name).stop();
  }

  async restart(name: string): Promise<void> {
    this.refuseHeld(name);
    return this.owner(name).restart();
  }

  async reset(name: string): Promise<void> {
    this.refuseHeld(name);
    return this.owner(name).reset();
  }

  /**
   * Stops a backend and holds it stopped (its GPU needs a reset or a
   * reboot): until release(), start, restart, reset and a reload that
   * changes it start nothing. A fatal backend stays fatal (it has no
   * process to stop).
   */
  async hold(name: string, reason: string): Promise<void> {
    const owner = this.owner(name);
    const state = owner.currentState;
    // Held again (another of its GPUs): whether it was running is what the first hold saw.
    this.holds.set(name, { reason, resume: this.holds.get(name)?.resume ?? (state !== "stopped" && state !== "fatal") });
    if (state !== "fatal") await owner.stop(reason);
  }

  /** Ends a hold; starts the backend again when it was running before the hold (one an operator had stopped stays stopped). */
  async release(name: string, reason: string): Promise<void> {
    const h = this.holds.get(name);
    if (!h) return;
    this.holds.delete(name);
    const owner = this.owners.get(name);
    if (h.resume && owner?.currentState === "stopped") await owner.restart(reason);
  }

  /** Why a backend is held stopped; undefined when it is not. */
  heldFor(name: string): string | undefined {
    return this.holds.get(name)?.reason;
  }

  private refuseHeld(name: string): void {
    const why = this.holds.get(name)?.reason;
    if (why !== undefined) throw new LlmsupError("LLMSUP_E_BACKEND_HELD", `backend "${name}" is held stopped: ${why}; llmsup starts it again once the GPU's faults clear`, { backend: name, reason: why });
  }

  /** A drill is about to break `name`'s running process on purpose: its exit will not count against the restart budget (BackendOwner.expectDrillExit). */
  expectDrillExit(name: string, cause: DrillCause): DrillMark {
    return this.owner(name).expectDrillExit(cause);
  }

  tail(name: string, lines = 50): Promise<string[]> {
    return this.owner(name).logTail(lines);
  }

  snapshot(): BackendSnapshot[] {
    return [...this.owners.values()].map((o) => {
      const s = o.snapshot();
      const resources = this.resources.of(s.pid);
      return resources ? { ...s, resources } : s;
    });
  }

  noteRequestSuccess(name: string): void {
    this.owners.get(name)?.noteRequestSuccess();
  }
}
