/**
 * CPU and memory of each managed backend's whole process group (the leader and
 * every process in its group: vLLM's EngineCore and workers included), sampled
 * from /proc on a slow timer, like `pm2 ls` and `systemctl status` show them.
 *
 * Why /proc and not `systeminformation`'s si.processes(): that spawns `ps`
 * (and more) for every process on the box each call — tens of milliseconds and
 * a fork per sample — where one pass over /proc/<pid>/stat does the same work
 * in-process and the group filter (field 5) is exact.
 */
import type { Clock } from "../platform/clock.ts";
import { cpuPercent, type GroupUsage } from "../platform/procfs.ts";

export interface GroupResources {
  /** Percent of one core over the last sampling interval; null before a second sample of this group. */
  readonly cpuPct: number | null;
  readonly rssBytes: number;
  readonly processes: number;
  /** When sampled (ms since the epoch). */
  readonly at: number;
}

/** Usage of each of `pgids` that still exists (the real one: groupUsage, platform/procfs.ts). */
export type GroupUsageReader = (pgids: readonly number[]) => Promise<Map<number, GroupUsage>>;

export interface ResourceSamplerDeps {
  readonly clock: Clock;
  readonly read: GroupUsageReader;
}

export class ResourceSampler {
  private readonly latest = new Map<number, GroupResources & { readonly ticks: number }>();
  private readonly clock: Clock;
  private readonly read: GroupUsageReader;
  private inFlight?: Promise<void>;

  constructor(deps: ResourceSamplerDeps) {
    this.clock = deps.clock;
    this.read = deps.read;
  }

  /** Samples `pgids` now (one pass over /proc); groups not listed are forgotten. A call while one runs joins it. */
  sample(pgids: readonly number[]): Promise<void> {
    this.inFlight ??= this.doSample(pgids).finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async doSample(pgids: readonly number[]): Promise<void> {
    const usage = pgids.length ? await this.read(pgids) : new Map<number, GroupUsage>();
    const at = this.clock.now();
    for (const pgid of [...this.latest.keys()]) if (!pgids.includes(pgid)) this.latest.delete(pgid);
    for (const pgid of pgids) {
      const u = usage.get(pgid);
      if (!u) {
        this.latest.delete(pgid);
        continue;
      }
      const prev = this.latest.get(pgid);
      this.latest.set(pgid, { cpuPct: prev ? cpuPercent(prev, { ticks: u.ticks, at }) : null, rssBytes: u.rssBytes, processes: u.processes, at, ticks: u.ticks });
    }
  }

  /** The last sample of group `pgid`, if any. */
  of(pgid: number | undefined): GroupResources | undefined {
    if (pgid === undefined) return undefined;
    const r = this.latest.get(pgid);
    return r ? { cpuPct: r.cpuPct, rssBytes: r.rssBytes, processes: r.processes, at: r.at } : undefined;
  }
}
