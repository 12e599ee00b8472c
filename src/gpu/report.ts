/**
 * Every GPU with its condition, readings, faults and processes: the view
 * `llmsup gpus` prints and GpuMonitor.snapshot() returns, and its stable
 * JSON form (snake_case keys; absent readings are null). Readings that are
 * older than the sample are marked: a GPU with no plausible sample lately
 * (`stale_since`), and each field whose latest reading was rejected as
 * implausible (`stale_fields`, showing the last good value). Pure.
 */
import type { ClearedFault, ClockReasons, ComputeApp, GpuFault, GpuSample, RemappedRows, Severity } from "./types.ts";
import type { GpuIdentity } from "./ledger.ts";
import { READING_FIELDS, READING_JSON_NAME, type ReadingField, type StaleField } from "./plausible.ts";

export type Condition = "ok" | Severity | "unknown";

export interface GpuEntry {
  readonly index: number;
  readonly uuid?: string;
  readonly name?: string;
  readonly busId?: string;
  readonly condition: Condition;
  readonly sample?: GpuSample;
  /** When `sample` was taken (ms since the epoch). */
  readonly sampledAt?: number;
  /** Since when nvidia-smi has given no plausible sample of this GPU (absent: the latest was plausible). */
  readonly staleSince?: number;
  /** Fields whose latest reading was implausible: `sample` shows the last good value. */
  readonly staleFields: ReadonlyMap<ReadingField, StaleField>;
  readonly remappedRows?: RemappedRows;
  readonly faults: readonly GpuFault[];
  readonly processes: readonly ComputeApp[];
}

export interface GpuReport {
  readonly at: number;
  readonly gpus: readonly GpuEntry[];
  /** Every active fault, those about all GPUs or an unnamed one included. */
  readonly faults: readonly GpuFault[];
  readonly processes: readonly ComputeApp[];
}

export interface ReportInput {
  readonly at: number;
  /** The latest sample of each GPU, with its time and the fields it carries from an earlier one. */
  readonly samples: ReadonlyMap<number, { readonly sample: GpuSample; readonly at: number; readonly stale?: ReadonlyMap<ReadingField, StaleField> }>;
  /** Since when a GPU has given no plausible sample, if it has not. */
  readonly staleSince?: (gpu: number) => number | undefined;
  /** GPUs known from earlier samples (kept when the latest said nothing about them). */
  readonly identities?: ReadonlyMap<number, GpuIdentity>;
  readonly remapped?: readonly RemappedRows[];
  readonly apps?: readonly ComputeApp[];
  readonly faults: readonly GpuFault[];
}

/** A fault as one line naming its GPU once (its reason may already begin with "GPU n:"). */
export function faultLine(f: Pick<GpuFault, "gpu" | "reason">, whole = "all GPUs"): string {
  if (/^GPU \d+(?: \([^)]*\))?:/.test(f.reason)) return f.reason;
  return `${f.gpu === null ? whole : `GPU ${f.gpu}`}: ${f.reason}`;
}

/** The worst of some faults. */
export function conditionOf(faults: readonly GpuFault[]): Condition {
  if (faults.some((f) => f.severity === "down")) return "down";
  if (faults.some((f) => f.severity === "degraded")) return "degraded";
  return "ok";
}

/** Whether a fault concerns GPU `index` (faults about every GPU concern each). */
export function concerns(f: GpuFault, index: number, busId: string | undefined): boolean {
  if (f.gpu !== null) return f.gpu === index;
  return f.busId === undefined || (busId !== undefined && f.busId === busId);
}

export function buildReport(input: ReportInput): GpuReport {
  const indexes = new Set<number>([...(input.identities?.keys() ?? []), ...input.samples.keys()]);
  const uuidIndex = new Map<string, number>();
  const gpus: GpuEntry[] = [...indexes]
    .sort((a, b) => a - b)
    .map((index) => {
      const latest = input.samples.get(index);
      const id = input.identities?.get(index) ?? {};
      const uuid = latest?.sample.uuid ?? id.uuid;
      const busId = latest?.sample.busId ?? id.busId;
      if (uuid) uuidIndex.set(uuid, index);
      const faults = input.faults.filter((f) => concerns(f, index, busId));
      return {
        index,
        uuid,
        name: latest?.sample.name ?? id.name,
        busId,
        condition: latest || faults.length > 0 ? conditionOf(faults) : "unknown",
        sample: latest?.sample,
        sampledAt: latest?.at,
        staleSince: input.staleSince?.(index),
        staleFields: latest?.stale ?? new Map<ReadingField, StaleField>(),
        remappedRows: uuid ? input.remapped?.find((r) => r.gpuUuid === uuid) : undefined,
        faults,
        processes: [] as ComputeApp[],
      };
    });
  const processes = (input.apps ?? []).map((a) => {
    const gpu = a.gpu ?? uuidIndex.get(a.gpuUuid);
    return gpu === undefined ? a : { ...a, gpu };
  });
  for (const p of processes) if (p.gpu !== undefined) (gpus.find((g) => g.index === p.gpu)?.processes as ComputeApp[] | undefined)?.push(p);
  return { at: input.at, gpus, faults: input.faults, processes };
}

const REASON_BITS: readonly [string, number][] = [
  ["gpu_idle", 0x1],
  ["applications_clocks_setting", 0x2],
  ["sw_power_cap", 0x4],
  ["hw_slowdown", 0x8],
  ["sync_boost", 0x10],
  ["sw_thermal_slowdown", 0x20],
  ["hw_thermal_slowdown", 0x40],
  ["hw_power_brake_slowdown", 0x80],
];

/** Every clock event reason by name, in bit order (metrics label each one). */
export const CLOCK_EVENT_REASONS: readonly string[] = REASON_BITS.map(([n]) => n);

/** Active clock event reasons by name, from the bitmask and the per-reason fields. */
export function clockReasonNames(r: ClockReasons): string[] {
  const names = new Set<string>();
  if (r.mask !== undefined) for (const [name, b] of REASON_BITS) if (r.mask & b) names.add(name);
  const flags: [string, boolean | undefined][] = [
    ["sw_power_cap", r.swPowerCap],
    ["hw_slowdown", r.hwSlowdown],
    ["sw_thermal_slowdown", r.swThermalSlowdown],
    ["hw_thermal_slowdown", r.hwThermalSlowdown],
    ["hw_power_brake_slowdown", r.hwPowerBrakeSlowdown],
  ];
  for (const [name, on] of flags) if (on === true) names.add(name);
  return REASON_BITS.map(([n]) => n).filter((n) => names.has(n));
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());
const v = <T>(x: T | undefined): T | null => (x === undefined ? null : x);

export function faultJson(f: GpuFault) {
  return {
    id: f.id,
    kind: f.kind,
    gpu: f.gpu,
    bus_id: v(f.busId),
    severity: f.severity,
    reason: f.reason,
    action: f.action,
    since: iso(f.since),
    last_seen: iso(f.lastSeen),
    count: f.count,
    xid: v(f.xid),
    code: v(f.code),
    recovery: v(f.recovery),
  };
}

/** A cleared fault: the fault as it was, when it cleared and why. */
export function clearedFaultJson(f: ClearedFault) {
  return { ...faultJson(f), cleared_at: iso(f.clearedAt), clear_reason: f.clearReason };
}

export function processJson(p: ComputeApp) {
  return { pid: p.pid, gpu: v(p.gpu), gpu_uuid: p.gpuUuid, used_memory_mib: v(p.usedMemoryMib), name: v(p.processName) };
}

/** The stable JSON form of a report. */
export function reportJson(r: GpuReport) {
  return {
    at: iso(r.at),
    gpus: r.gpus.map((g) => {
      const s = g.sample;
      return {
        index: g.index,
        uuid: v(g.uuid),
        name: v(g.name),
        bus_id: v(g.busId),
        condition: g.condition,
        sampled_at: iso(g.sampledAt),
        stale_since: iso(g.staleSince),
        stale_fields: READING_FIELDS.filter((f) => g.staleFields.has(f)).map((f) => {
          const x = g.staleFields.get(f) as StaleField;
          return { field: READING_JSON_NAME[f], since: iso(x.since), rejected: String(x.rejected), why: x.why };
        }),
        temperature_c: v(s?.temperatureC),
        memory_temperature_c: v(s?.memoryTemperatureC),
        utilization_pct: v(s?.utilizationPct),
        memory_used_mib: v(s?.memoryUsedMib),
        memory_total_mib: v(s?.memoryTotalMib),
        power_draw_w: v(s?.powerDrawW),
        power_limit_w: v(s?.powerLimitW),
        pstate: v(s?.pstate),
        clock_event_reasons: s ? clockReasonNames(s.reasons) : [],
        ecc_uncorrected_volatile: v(s?.eccUncorrected),
        ecc_corrected_volatile: v(s?.eccCorrected),
        retired_pages_pending: v(s?.retiredPagesPending),
        recovery_action: v(s?.recoveryAction),
        requires_reset: s?.requiresReset ?? false,
        remapped_rows: g.remappedRows
          ? {
              correctable: v(g.remappedRows.correctable),
              uncorrectable: v(g.remappedRows.uncorrectable),
              pending: v(g.remappedRows.pending),
              failure: v(g.remappedRows.failure),
            }
          : null,
        faults: g.faults.map(faultJson),
        processes: g.processes.map(processJson),
      };
    }),
    faults: r.faults.map(faultJson),
    processes: r.processes.map(processJson),
  };
}
