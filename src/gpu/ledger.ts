/**
 * The book of active faults during one evaluation step: raise once, refresh
 * silently, clear once, and the sample-count hysteresis of conditions.
 * Pure: it works on copies and records what changed.
 */
import type { ClearedFault, GpuFault } from "./types.ts";

/** Consecutive samples with (`on`) and without (`off`) a condition; `since` is when the current run of `on` began. */
export interface Streak {
  readonly on: number;
  readonly off: number;
  readonly since?: number;
}

/** What a fault says, apart from its bookkeeping (id, times, count). */
export type FaultSpec = Pick<GpuFault, "kind" | "gpu" | "busId" | "severity" | "reason" | "action" | "xid" | "code" | "recovery" | "value">;

/** What the samples say a GPU index is. */
export interface GpuIdentity {
  readonly uuid?: string;
  readonly busId?: string;
  readonly name?: string;
}

export function indexOfBus(gpus: ReadonlyMap<number, GpuIdentity>, busId: string | undefined): number | null {
  if (busId === undefined) return null;
  for (const [index, id] of gpus) if (id.busId === busId) return index;
  return null;
}

export function indexOfUuid(gpus: ReadonlyMap<number, GpuIdentity>, uuid: string): number | null {
  for (const [index, id] of gpus) if (id.uuid === uuid) return index;
  return null;
}

export function gpuLabel(gpu: number | null, busId?: string): string {
  return gpu !== null ? `GPU ${gpu}${busId ? ` (${busId})` : ""}` : `GPU ${busId ?? "?"}`;
}

/** `${kind}@${gpu index | bus id | all}`. */
export function faultId(kind: string, gpu: number | null, busId?: string): string {
  return `${kind}@${gpu !== null ? `gpu${gpu}` : (busId ?? "all")}`;
}

export class Ledger {
  readonly active: Map<string, GpuFault>;
  readonly streaks: Map<string, Streak>;
  readonly raised: GpuFault[] = [];
  readonly cleared: ClearedFault[] = [];
  readonly now: number;

  constructor(active: ReadonlyMap<string, GpuFault>, streaks: ReadonlyMap<string, Streak>, now: number) {
    this.active = new Map(active);
    this.streaks = new Map(streaks);
    this.now = now;
  }

  /** Raises `spec` unless that fault is active already, in which case it is refreshed without a word. */
  raise(spec: FaultSpec, since: number = this.now, count = 1): GpuFault {
    const id = faultId(spec.kind, spec.gpu, spec.busId);
    const existing = this.active.get(id);
    if (existing) return this.refresh(id, count) as GpuFault;
    const fault: GpuFault = { id, ...spec, since, lastSeen: this.now, count };
    this.active.set(id, fault);
    this.raised.push(fault);
    return fault;
  }

  /** The cause was seen again: one fact, so nothing is emitted. */
  refresh(id: string, by = 1): GpuFault | undefined {
    const f = this.active.get(id);
    if (!f) return undefined;
    const next = { ...f, lastSeen: this.now, count: f.count + by };
    this.active.set(id, next);
    return next;
  }

  clear(id: string, clearReason: string): void {
    const f = this.active.get(id);
    if (!f) return;
    this.active.delete(id);
    this.streaks.delete(id);
    this.cleared.push({ ...f, clearedAt: this.now, clearReason });
  }

  /**
   * One observation of a condition. `observed` undefined (no reading) changes
   * nothing. The fault is raised after `sustain` consecutive observations
   * with it and cleared after `clear` without it; while it stays, a changed
   * description (another recovery action, say) is a new fact.
   */
  observe(spec: FaultSpec, observed: boolean | undefined, sustain: number, clear: number): void {
    if (observed === undefined) return;
    const id = faultId(spec.kind, spec.gpu, spec.busId);
    const prev = this.streaks.get(id) ?? { on: 0, off: 0 };
    const active = this.active.get(id);
    if (observed) {
      const streak: Streak = { on: prev.on + 1, off: 0, since: prev.on > 0 ? prev.since : this.now };
      this.streaks.set(id, streak);
      if (active && active.value !== spec.value) {
        this.clear(id, `replaced: ${spec.value ?? "changed"}`);
        this.streaks.set(id, { on: 1, off: 0, since: this.now });
        this.raise(spec);
      } else if (active) this.refresh(id);
      else if (streak.on >= sustain) this.raise(spec, streak.since ?? this.now, streak.on);
    } else this.absent(id, clear);
  }

  /** One observation without the condition `id`: cleared after `clear` of them in a row. */
  absent(id: string, clear: number): void {
    const prev = this.streaks.get(id);
    const active = this.active.get(id);
    if (!prev && !active) return;
    const off = (prev?.off ?? 0) + 1;
    if (active && off >= clear) this.clear(id, `not seen for ${off} sample${off === 1 ? "" : "s"}`);
    else if (!active && off >= clear) this.streaks.delete(id);
    else this.streaks.set(id, { on: 0, off });
  }
}
