/**
 * Host resources as facts with thresholds ([host] min_free_memory,
 * min_free_disk). Pure: (state, reading, now, limits) → {state, raised, cleared}.
 *
 * Hysteresis: a fault is raised after HOST_SUSTAIN readings below the limit
 * in a row, and cleared after HOST_CLEAR readings at least CLEAR_MARGIN
 * above it, so a value hovering at the limit is one fact, not a stream.
 */
import { formatSize } from "../config/units.ts";
import type { HostReading } from "./resources.ts";

export const HOST_SUSTAIN = 2;
export const HOST_CLEAR = 2;
/** Clearing needs this much headroom over the limit (10 %). */
export const CLEAR_MARGIN = 1.1;

export interface HostLimits {
  /** Bytes. */
  readonly minFreeMemory: number;
  readonly minFreeDisk: number;
}

export interface HostFault {
  /** `memory_low` or `disk_low@<dir>`. */
  readonly id: string;
  readonly kind: "memory_low" | "disk_low";
  readonly severity: "degraded";
  readonly reason: string;
  readonly action: string;
  /** The directory, for disk_low. */
  readonly dir?: string;
  readonly since: number;
  readonly lastSeen: number;
}

export interface HostClearedFault extends HostFault {
  readonly clearedAt: number;
}

interface Streak {
  readonly low: number;
  readonly ok: number;
  readonly since?: number;
}

export interface HostState {
  readonly active: ReadonlyMap<string, HostFault>;
  readonly streaks: ReadonlyMap<string, Streak>;
}

export function initialHostState(): HostState {
  return { active: new Map(), streaks: new Map() };
}

interface Check {
  readonly id: string;
  readonly kind: HostFault["kind"];
  readonly free: number;
  readonly limit: number;
  readonly dir?: string;
  readonly reason: string;
  readonly action: string;
}

export function evaluateHost(
  state: HostState,
  reading: HostReading,
  now: number,
  limits: HostLimits,
): { state: HostState; raised: HostFault[]; cleared: HostClearedFault[] } {
  const active = new Map(state.active);
  const streaks = new Map(state.streaks);
  const raised: HostFault[] = [];
  const cleared: HostClearedFault[] = [];
  const checks: Check[] = [];
  if (reading.memory) {
    const free = reading.memory.availableBytes;
    checks.push({
      id: "memory_low",
      kind: "memory_low",
      free,
      limit: limits.minFreeMemory,
      reason: `${formatSize(free)} of memory available, under the ${formatSize(limits.minFreeMemory)} minimum`,
      action: "the CPU tier and new model loads may fail: stop what uses the memory or lower min_free_memory",
    });
  }
  for (const d of reading.disks) {
    checks.push({
      id: `disk_low@${d.dir}`,
      kind: "disk_low",
      dir: d.dir,
      free: d.freeBytes,
      limit: limits.minFreeDisk,
      reason: `${formatSize(d.freeBytes)} free on the disk holding ${d.dir}, under the ${formatSize(limits.minFreeDisk)} minimum`,
      action: "free disk space: logs, the outbox and state will stop being written when it is full",
    });
  }
  for (const c of checks) {
    const prev = streaks.get(c.id) ?? { low: 0, ok: 0 };
    const current = active.get(c.id);
    if (c.free < c.limit) {
      const streak = { low: prev.low + 1, ok: 0, since: prev.low > 0 ? prev.since : now };
      streaks.set(c.id, streak);
      if (current) active.set(c.id, { ...current, lastSeen: now });
      else if (streak.low >= HOST_SUSTAIN) {
        const fault: HostFault = {
          id: c.id,
          kind: c.kind,
          severity: "degraded",
          reason: c.reason,
          action: c.action,
          ...(c.dir !== undefined ? { dir: c.dir } : {}),
          since: streak.since ?? now,
          lastSeen: now,
        };
        active.set(c.id, fault);
        raised.push(fault);
      }
    } else if (c.free >= c.limit * CLEAR_MARGIN || !current) {
      const ok = prev.ok + 1;
      if (current && ok >= HOST_CLEAR) {
        active.delete(c.id);
        streaks.delete(c.id);
        cleared.push({ ...current, clearedAt: now });
      } else if (!current) streaks.delete(c.id);
      else streaks.set(c.id, { low: 0, ok });
    } else {
      // Above the limit but inside the margin: neither raising nor clearing.
      streaks.set(c.id, { low: 0, ok: 0 });
    }
  }
  return { state: { active, streaks }, raised, cleared };
}
