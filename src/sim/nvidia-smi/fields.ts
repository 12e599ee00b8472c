/**
 * The query fields the simulated nvidia-smi knows, as the real one names them.
 *
 * Each field reads one cell from the simulated state, already formatted the
 * way nvidia-smi prints it but without its unit; `null` prints as `[N/A]`.
 * A field with a unit shows it in the CSV header (`memory.used [MiB]`, even
 * with `nounits`) and after the value unless `nounits` is given (`81559 MiB`).
 * The header always names the canonical field, whatever alias was queried.
 */
import { usedMemoryMib, freeMemoryMib } from "../gpu/state.ts";
import type { SimComputeProcess, SimGpu, SimGpuState } from "../gpu/state.ts";

export interface Field<Row> {
  /** Canonical name, printed in the header. */
  readonly name: string;
  /** Other names the field answers to. */
  readonly aliases?: readonly string[];
  /** The name older drivers (before clocks "event" reasons) use instead of `name`; both work on newer ones. */
  readonly oldName?: string;
  /** Unknown to drivers that `old_driver` impersonates. */
  readonly newDriverOnly?: boolean;
  readonly unit?: string;
  read(row: Row): string | null;
}

export interface GpuRow {
  readonly gpu: SimGpu;
  readonly state: SimGpuState;
  readonly now: Date;
}

export interface AppRow {
  readonly process: SimComputeProcess;
  /** The GPU the process is on; undefined when its uuid names no GPU. */
  readonly gpu: SimGpu | undefined;
  readonly now: Date;
}

const num = (n: number | null): string | null => (n === null ? null : String(n));
const yesNo = (b: boolean | null): string | null => (b === null ? null : b ? "Yes" : "No");
const two = (n: number): string => String(n).padStart(2, "0");

/** nvidia-smi's timestamp: "2024/05/01 21:30:00.123" (local time). */
export function smiTimestamp(d: Date): string {
  return `${d.getFullYear()}/${two(d.getMonth() + 1)}/${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

/** "0x0000000000000004": the 64-bit bitmask as nvidia-smi prints it. */
export function hexMask(mask: number): string {
  return `0x${mask.toString(16).toUpperCase().padStart(16, "0")}`;
}

/** Clock event (throttle) reasons with their NVML bit. */
export const CLOCK_EVENT_REASONS = [
  ["gpu_idle", 0x1],
  ["applications_clocks_setting", 0x2],
  ["sw_power_cap", 0x4],
  ["hw_slowdown", 0x8],
  ["sync_boost", 0x10],
  ["sw_thermal_slowdown", 0x20],
  ["hw_thermal_slowdown", 0x40],
  ["hw_power_brake_slowdown", 0x80],
] as const;

const reasonFields: Field<GpuRow>[] = [
  {
    name: "clocks_event_reasons.active",
    oldName: "clocks_throttle_reasons.active",
    read: ({ gpu }) => hexMask(gpu.clocks_event_reasons),
  },
  ...CLOCK_EVENT_REASONS.map(
    ([key, bit]): Field<GpuRow> => ({
      name: `clocks_event_reasons.${key}`,
      oldName: `clocks_throttle_reasons.${key}`,
      read: ({ gpu }) => ((gpu.clocks_event_reasons & bit) !== 0 ? "Active" : "Not Active"),
    }),
  ),
];

export const GPU_FIELDS: readonly Field<GpuRow>[] = [
  { name: "timestamp", read: ({ now }) => smiTimestamp(now) },
  { name: "driver_version", read: ({ state }) => state.driver_version },
  { name: "count", read: ({ state }) => String(state.gpus.length) },
  { name: "index", read: ({ gpu }) => String(gpu.index) },
  { name: "name", aliases: ["gpu_name"], read: ({ gpu }) => gpu.name },
  { name: "uuid", aliases: ["gpu_uuid"], read: ({ gpu }) => gpu.uuid },
  { name: "pci.bus_id", aliases: ["gpu_bus_id"], read: ({ gpu }) => gpu.pci_bus_id },
  { name: "pstate", read: ({ gpu }) => gpu.pstate },
  { name: "temperature.gpu", read: ({ gpu }) => num(gpu.temperature_gpu) },
  { name: "temperature.memory", read: ({ gpu }) => num(gpu.temperature_memory) },
  { name: "utilization.gpu", unit: "%", read: ({ gpu }) => num(gpu.utilization_gpu) },
  { name: "memory.total", unit: "MiB", read: ({ gpu }) => num(gpu.memory_total_mib) },
  { name: "memory.used", unit: "MiB", read: ({ gpu, state }) => num(usedMemoryMib(state, gpu)) },
  { name: "memory.free", unit: "MiB", read: ({ gpu, state }) => num(freeMemoryMib(state, gpu)) },
  { name: "power.draw", unit: "W", read: ({ gpu }) => gpu.power_draw_w.toFixed(2) },
  { name: "power.limit", unit: "W", read: ({ gpu }) => gpu.power_limit_w.toFixed(2) },
  ...reasonFields,
  { name: "ecc.errors.uncorrected.volatile.total", read: ({ gpu }) => num(gpu.ecc_uncorrected_volatile) },
  { name: "ecc.errors.corrected.volatile.total", read: ({ gpu }) => num(gpu.ecc_corrected_volatile) },
  { name: "retired_pages.pending", read: ({ gpu }) => yesNo(gpu.retired_pages_pending) },
  { name: "gpu_recovery_action", newDriverOnly: true, read: ({ gpu }) => gpu.recovery_action },
];

export const COMPUTE_APP_FIELDS: readonly Field<AppRow>[] = [
  { name: "timestamp", read: ({ now }) => smiTimestamp(now) },
  { name: "gpu_name", read: ({ gpu }) => gpu?.name ?? null },
  { name: "gpu_bus_id", read: ({ gpu }) => gpu?.pci_bus_id ?? null },
  { name: "gpu_uuid", read: ({ process }) => process.gpu_uuid },
  { name: "pid", read: ({ process }) => String(process.pid) },
  { name: "process_name", aliases: ["name"], read: ({ process }) => process.process_name },
  { name: "used_gpu_memory", aliases: ["used_memory"], unit: "MiB", read: ({ process }) => String(process.used_memory_mib) },
];

export const REMAPPED_ROW_FIELDS: readonly Field<GpuRow>[] = [
  { name: "timestamp", read: ({ now }) => smiTimestamp(now) },
  { name: "gpu_name", read: ({ gpu }) => gpu.name },
  { name: "gpu_bus_id", read: ({ gpu }) => gpu.pci_bus_id },
  { name: "gpu_uuid", read: ({ gpu }) => gpu.uuid },
  { name: "remapped_rows.correctable", read: ({ gpu }) => num(gpu.remapped_rows?.correctable ?? null) },
  { name: "remapped_rows.uncorrectable", read: ({ gpu }) => num(gpu.remapped_rows?.uncorrectable ?? null) },
  { name: "remapped_rows.pending", read: ({ gpu }) => yesNo(gpu.remapped_rows?.pending ?? null) },
  { name: "remapped_rows.failure", read: ({ gpu }) => yesNo(gpu.remapped_rows?.failure ?? null) },
];

/** The field a queried name selects on this driver, or undefined when the driver does not know it. */
export function resolveField<Row>(table: readonly Field<Row>[], queried: string, oldDriver: boolean): Field<Row> | undefined {
  for (const field of table) {
    if (oldDriver) {
      if (field.newDriverOnly) continue;
      const names = field.oldName !== undefined ? [field.oldName] : [field.name, ...(field.aliases ?? [])];
      if (names.includes(queried)) return field.oldName !== undefined ? { ...field, name: field.oldName } : field;
    } else if (field.name === queried || field.oldName === queried || field.aliases?.includes(queried)) {
      return field;
    }
  }
  return undefined;
}
