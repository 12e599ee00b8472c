/**
 * The nvidia-smi fields the monitor asks for, under every name a driver may
 * know them by.
 *
 * A field lists its names newest first; a field in a `family` switches names
 * together with the rest of the family (a driver that rejects
 * `clocks_event_reasons.active` knows none of the `clocks_event_reasons.*`
 * names, so one retry with the old `clocks_throttle_reasons.*` names covers
 * all six). Probing (probe-fields.ts) settles on one name per field, or drops
 * the field, before the monitor starts its loop.
 */

/** What a column of `--query-gpu` means, whatever the driver calls it. */
export type GpuFieldKey =
  | "index"
  | "uuid"
  | "name"
  | "busId"
  | "temperature"
  | "memoryTemperature"
  | "utilization"
  | "memoryUsed"
  | "memoryTotal"
  | "powerDraw"
  | "powerLimit"
  | "pstate"
  | "reasonsActive"
  | "hwSlowdown"
  | "hwThermalSlowdown"
  | "swThermalSlowdown"
  | "hwPowerBrakeSlowdown"
  | "swPowerCap"
  | "eccUncorrected"
  | "eccCorrected"
  | "retiredPagesPending"
  | "recoveryAction";

export type RemapFieldKey = "uuid" | "busId" | "correctable" | "uncorrectable" | "pending" | "failure";
export type AppFieldKey = "pid" | "processName" | "uuid" | "usedMemory";

export interface CandidateField<K extends string = string> {
  readonly key: K;
  /** Names to try, newest driver first. */
  readonly names: readonly string[];
  /** Fields that switch names together. */
  readonly family?: string;
  /** The query is useless without it: probing fails rather than drop it. */
  readonly required?: boolean;
  /** A free-text column that may itself contain ", " (extra cells are joined back into it). */
  readonly freeText?: boolean;
}

/** One field as this driver will be asked for it. */
export interface SelectedField<K extends string = string> {
  readonly key: K;
  readonly name: string;
  readonly freeText?: boolean;
}

const reasons = (key: GpuFieldKey, suffix: string): CandidateField<GpuFieldKey> => ({
  key,
  names: [`clocks_event_reasons.${suffix}`, `clocks_throttle_reasons.${suffix}`],
  family: "clock_reasons",
});

/** `--query-gpu` candidates, in the order they are queried. */
export const GPU_CANDIDATES: readonly CandidateField<GpuFieldKey>[] = [
  { key: "index", names: ["index"], required: true },
  { key: "uuid", names: ["uuid"] },
  { key: "name", names: ["name"], freeText: true },
  { key: "busId", names: ["pci.bus_id"] },
  { key: "temperature", names: ["temperature.gpu"] },
  { key: "memoryTemperature", names: ["temperature.memory"] },
  { key: "utilization", names: ["utilization.gpu"] },
  { key: "memoryUsed", names: ["memory.used"] },
  { key: "memoryTotal", names: ["memory.total"] },
  { key: "powerDraw", names: ["power.draw"] },
  { key: "powerLimit", names: ["power.limit"] },
  { key: "pstate", names: ["pstate"] },
  reasons("reasonsActive", "active"),
  reasons("hwSlowdown", "hw_slowdown"),
  reasons("hwThermalSlowdown", "hw_thermal_slowdown"),
  reasons("swThermalSlowdown", "sw_thermal_slowdown"),
  reasons("hwPowerBrakeSlowdown", "hw_power_brake_slowdown"),
  reasons("swPowerCap", "sw_power_cap"),
  { key: "eccUncorrected", names: ["ecc.errors.uncorrected.volatile.total"] },
  { key: "eccCorrected", names: ["ecc.errors.corrected.volatile.total"] },
  { key: "retiredPagesPending", names: ["retired_pages.pending"] },
  { key: "recoveryAction", names: ["gpu_recovery_action"] },
];

/** `--query-remapped-rows` candidates (Ampere and newer; older GPUs answer [N/A]). */
export const REMAP_CANDIDATES: readonly CandidateField<RemapFieldKey>[] = [
  { key: "uuid", names: ["gpu_uuid"], required: true },
  { key: "busId", names: ["gpu_bus_id"] },
  { key: "correctable", names: ["remapped_rows.correctable"] },
  { key: "uncorrectable", names: ["remapped_rows.uncorrectable"] },
  { key: "pending", names: ["remapped_rows.pending"] },
  { key: "failure", names: ["remapped_rows.failure"] },
];

/** `--query-compute-apps` fields; every driver since long ago knows these. */
export const APP_FIELDS: readonly SelectedField<AppFieldKey>[] = [
  { key: "pid", name: "pid" },
  { key: "uuid", name: "gpu_uuid" },
  { key: "usedMemory", name: "used_memory" },
  { key: "processName", name: "process_name", freeText: true },
];

/** The initial selection: every candidate under its newest name. */
export function initialSelection<K extends string>(candidates: readonly CandidateField<K>[]): SelectedField<K>[] {
  return candidates.map((c) => select(c, 0));
}

function select<K extends string>(c: CandidateField<K>, at: number): SelectedField<K> {
  return c.freeText ? { key: c.key, name: c.names[at] as string, freeText: true } : { key: c.key, name: c.names[at] as string };
}

export type NextSelection<K extends string> =
  | { readonly ok: true; readonly selection: SelectedField<K>[]; readonly replaced: readonly string[]; readonly dropped: readonly string[] }
  | { readonly ok: false; readonly reason: string };

/**
 * The selection to try after the driver rejected `rejected`: the field (and
 * its family) moves to its next older name, or is dropped when it has none.
 * Pure.
 */
export function afterRejection<K extends string>(
  candidates: readonly CandidateField<K>[],
  selection: readonly SelectedField<K>[],
  rejected: string,
): NextSelection<K> {
  const hit = selection.find((f) => f.name === rejected);
  if (!hit) return { ok: false, reason: `nvidia-smi rejected field "${rejected}", which was not asked for` };
  const candidate = candidates.find((c) => c.key === hit.key) as CandidateField<K>;
  const at = candidate.names.indexOf(rejected);
  const group = candidate.family ? candidates.filter((c) => c.family === candidate.family) : [candidate];
  const groupKeys = new Set(group.map((c) => c.key));
  const replaced: string[] = [];
  const dropped: string[] = [];
  const next: SelectedField<K>[] = [];
  for (const field of selection) {
    if (!groupKeys.has(field.key)) {
      next.push(field);
      continue;
    }
    const c = candidates.find((x) => x.key === field.key) as CandidateField<K>;
    const mine = c.names.indexOf(field.name);
    // Family members still on the rejected generation of names move on with it.
    if (field.key !== hit.key && mine !== at) {
      next.push(field);
      continue;
    }
    if (mine + 1 < c.names.length) {
      next.push(select(c, mine + 1));
      replaced.push(field.name);
    } else {
      if (c.required) return { ok: false, reason: `this nvidia-smi does not know the field "${field.name}", which the monitor cannot do without` };
      dropped.push(field.name);
    }
  }
  return { ok: true, selection: next, replaced, dropped };
}

/** "--query-gpu=a,b,c" style argument. */
export function queryArgument(option: "--query-gpu" | "--query-remapped-rows" | "--query-compute-apps", fields: readonly SelectedField[]): string {
  return `${option}=${fields.map((f) => f.name).join(",")}`;
}

export const CSV_FORMAT = "--format=csv,noheader,nounits";
