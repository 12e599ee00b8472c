/**
 * Checks that each GPU tier runs on its GPUs (the finding is gpu-residency.ts's),
 * at most every `max(2 × [gpu] interval, 1s)`, as GPU samples come in: from
 * the GPU monitor's last compute-apps reading (refreshed every ~30 s; its age
 * is not known), and from a fresh `--query-compute-apps` of its own only when
 * that reading does not show a backend (an absence is never judged on a
 * reading of unknown age) or while a backend stands found off its GPUs (then
 * only a fresh reading clears it). Thin shell: /proc for process groups, the
 * monitor's VRAM probe, the clock.
 */
import type { BackendConfig, Config } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock } from "../platform/clock.ts";
import { procStat } from "../platform/procfs.ts";
import { isServing, type BackendSnapshot } from "../supervisor/states.ts";
import type { VramProbe } from "../supervisor/vram.ts";
import { isGpuTier, judgeResidency, type ListedApp, type Residency } from "./gpu-residency.ts";

export interface ResidencyWatchDeps {
  readonly clock: Clock;
  readonly log: Logger;
  /** The GPU monitor (GpuMonitor): its last compute-apps reading, the GPUs it knows, and a fresh reading through its VRAM probe. */
  readonly monitor: {
    snapshot(): { readonly processes: readonly { readonly pid: number }[]; readonly gpus: readonly { readonly index: number }[] };
    vramProbe(): VramProbe;
  };
  /** The configuration in force. */
  readonly config: () => Config;
  /** The managed backends now. */
  readonly backends: () => readonly Pick<BackendSnapshot, "name" | "state" | "pid">[];
  /** Since when a backend's process serves (HealthFeed). */
  readonly servingSince: (name: string) => number | undefined;
  /** A backend's finding changed: why it answers from the CPU, or undefined (on its GPUs, or nothing to say any more). */
  readonly report: (name: string, offGpu: string | undefined) => void;
  /** The process group of a pid; undefined when /proc cannot tell. */
  readonly pgrpOf?: (pid: number) => Promise<number | undefined>;
}

export class ResidencyWatch {
  private readonly d: ResidencyWatchDeps;
  /** Backends found answering from the CPU: the process found so, and why. */
  private readonly off = new Map<string, { readonly pid: number; readonly reason: string }>();
  private lastCheck = -Infinity;
  private checking = false;

  constructor(deps: ResidencyWatchDeps) {
    this.d = deps;
  }

  private get everyMs(): number {
    return Math.max(2 * this.d.config().gpu.interval, 1_000);
  }

  /**
   * A process may take its GPU memory only when its first request comes (a
   * deep probe sends one within deep_interval of nothing else): it is judged
   * once it has served that long, and a few health intervals and GPU samples.
   */
  private settleMs(b: BackendConfig): number {
    return Math.max(b.health.deep_interval, 3 * b.health.interval, 2 * this.d.config().gpu.interval);
  }

  /** A GPU sample came in: checks, unless one ran lately or still runs. */
  sampled(): void {
    const now = this.d.clock.now();
    if (this.checking || now - this.lastCheck < this.everyMs) return;
    this.lastCheck = now;
    this.checking = true;
    this.check()
      .catch((e: Error) => this.d.log.warn({ event: "backend.gpu.check_failed", err: e.message }, `checking that GPU tiers run on their GPUs failed: ${e.message}`))
      .finally(() => (this.checking = false));
  }

  /** One check of every GPU tier. */
  private async check(): Promise<void> {
    const tiers = this.d.config().backends.filter(isGpuTier);
    for (const name of [...this.off.keys()]) if (!tiers.some((b) => b.name === name)) this.off.delete(name);
    if (tiers.length === 0) return;
    const snaps = new Map(this.d.backends().map((s) => [s.name, s]));
    const serving = (b: BackendConfig) => {
      const s = snaps.get(b.name);
      const since = this.d.servingSince(b.name);
      return s && isServing(s.state) && s.pid !== undefined && since !== undefined ? { pid: s.pid, since } : undefined;
    };
    const judge = (b: BackendConfig, apps: readonly ListedApp[], at: number | undefined) =>
      judgeResidency({ backend: b, serving: serving(b), reading: { apps, at }, now: this.d.clock.now(), settleMs: this.settleMs(b), freshMs: this.everyMs });

    const snapshot = this.d.monitor.snapshot();
    const known = await this.inGroups(snapshot.processes.map((p) => p.pid));
    const found = new Map(tiers.map((b) => [b.name, judge(b, known, undefined)]));
    const recheck = tiers.filter((b) => {
      const r = found.get(b.name)!;
      return r.kind === "unconfirmed" || (r.kind === "on_gpu" && this.off.has(b.name));
    });
    if (recheck.length > 0) {
      const gpus = [...new Set([...snapshot.gpus.map((g) => g.index), ...recheck.flatMap((b) => b.gpus)])];
      const holders = await this.d.monitor
        .vramProbe()
        .holders(gpus)
        .catch((e: Error) => void this.d.log.debug({ event: "backend.gpu.unknown", err: e.message }, `cannot tell which processes hold GPU memory: ${e.message}`));
      if (holders) {
        const at = this.d.clock.now();
        const fresh = await this.inGroups(holders.map((h) => h.pid));
        for (const b of recheck) found.set(b.name, judge(b, fresh, at));
      } else for (const b of recheck) found.set(b.name, { kind: "unconfirmed" });
    }
    for (const b of tiers) this.apply(b.name, serving(b)?.pid, found.get(b.name)!);
  }

  /** What the finding changes; a finding that cannot be made (no fresh reading, not settled yet) leaves the last one standing for the same process. */
  private apply(name: string, pid: number | undefined, r: Residency): void {
    const was = this.off.get(name);
    let now = was && was.pid === pid ? was : undefined;
    if (r.kind === "off_gpu" && pid !== undefined) now = { pid, reason: r.reason };
    else if (r.kind === "on_gpu") now = undefined;
    if (now?.reason === was?.reason) return;
    if (now) {
      this.off.set(name, now);
      this.d.log.warn({ event: "backend.gpu.absent", backend: name, pid: now.pid, reason: now.reason }, `${name}: ${now.reason}`);
    } else {
      this.off.delete(name);
      if (r.kind === "on_gpu") this.d.log.info({ event: "backend.gpu.present", backend: name, pid }, `${name}: pid ${pid} holds GPU memory again`);
    }
    this.d.report(name, now?.reason);
  }

  /** The listed pids with their process groups. */
  private async inGroups(pids: readonly number[]): Promise<ListedApp[]> {
    const pgrpOf = this.d.pgrpOf ?? (async (pid: number) => (await procStat(pid))?.pgrp);
    return Promise.all([...new Set(pids)].map(async (pid) => ({ pid, pgrp: await pgrpOf(pid) })));
  }
}
