/**
 * Plausibility of nvidia-smi readings. Pure.
 *
 * A reading no real GPU can give (negative anything, NaN or ±Infinity — a
 * 400-digit number reads as Infinity — a temperature over 150 °C, more than
 * 100 % utilisation, more memory in use than there is, a power draw over
 * 2000 W, an ECC counter that is negative or not a whole number) is not
 * evidence of anything: it is rejected field by field, so it neither raises
 * nor clears a fault ("no observation"). The view of the GPU keeps the
 * previous good value of a rejected field, marked stale since the first
 * sample that rejected it.
 */
import type { GpuSample } from "./types.ts";

/** The numeric readings of a sample that are checked. */
export const READING_FIELDS = [
  "temperatureC",
  "memoryTemperatureC",
  "utilizationPct",
  "memoryUsedMib",
  "memoryTotalMib",
  "powerDrawW",
  "powerLimitW",
  "eccUncorrected",
  "eccCorrected",
] as const;
export type ReadingField = (typeof READING_FIELDS)[number];

/** Each reading's name in the JSON report (`llmsup gpus --json`, status). */
export const READING_JSON_NAME: Readonly<Record<ReadingField, string>> = {
  temperatureC: "temperature_c",
  memoryTemperatureC: "memory_temperature_c",
  utilizationPct: "utilization_pct",
  memoryUsedMib: "memory_used_mib",
  memoryTotalMib: "memory_total_mib",
  powerDrawW: "power_draw_w",
  powerLimitW: "power_limit_w",
  eccUncorrected: "ecc_uncorrected_volatile",
  eccCorrected: "ecc_corrected_volatile",
};

/** The physical bounds; anything past them is a misreading, not a fact about the GPU. */
export const MAX_TEMPERATURE_C = 150;
export const MAX_UTILIZATION_PCT = 100;
export const MAX_POWER_W = 2000;

export interface Rejection {
  readonly field: ReadingField;
  readonly value: number;
  /** Why no GPU reads so, for people. */
  readonly why: string;
}

export interface Screened {
  /** The sample without its rejected readings. */
  readonly sample: GpuSample;
  readonly rejected: readonly Rejection[];
  /** Whether anything plausible is left: a reading, a clock reason, a flag. A row that says nothing is no sample of the GPU. */
  readonly valid: boolean;
}

function check(field: ReadingField, value: number): string | undefined {
  if (!Number.isFinite(value)) return "not a finite number";
  if (value < 0) return "negative";
  switch (field) {
    case "temperatureC":
    case "memoryTemperatureC":
      return value > MAX_TEMPERATURE_C ? `over ${MAX_TEMPERATURE_C} °C` : undefined;
    case "utilizationPct":
      return value > MAX_UTILIZATION_PCT ? `over ${MAX_UTILIZATION_PCT} %` : undefined;
    case "powerDrawW":
    case "powerLimitW":
      return value > MAX_POWER_W ? `over ${MAX_POWER_W} W, more than any GPU draws` : undefined;
    case "eccUncorrected":
    case "eccCorrected":
      return Number.isInteger(value) ? undefined : "not a whole number of errors";
    default:
      return undefined;
  }
}

/** Splits a sample into its plausible readings and the rejected ones. */
export function screen(s: GpuSample): Screened {
  const rejected: Rejection[] = [];
  for (const field of READING_FIELDS) {
    const value = s[field];
    if (value === undefined) continue;
    const why = check(field, value);
    if (why !== undefined) rejected.push({ field, value, why });
  }
  const ok = (f: ReadingField) => s[f] !== undefined && !rejected.some((r) => r.field === f);
  if (ok("memoryUsedMib") && ok("memoryTotalMib") && (s.memoryUsedMib as number) > (s.memoryTotalMib as number)) {
    rejected.push({ field: "memoryUsedMib", value: s.memoryUsedMib as number, why: `more than the ${s.memoryTotalMib} MiB the GPU has` });
  }
  let sample: GpuSample = s;
  if (rejected.length > 0) {
    const without: Record<string, unknown> = { ...s };
    for (const r of rejected) delete without[r.field];
    sample = without as unknown as GpuSample;
  }
  return { sample, rejected, valid: saysSomething(sample) };
}

function saysSomething(s: GpuSample): boolean {
  if (READING_FIELDS.some((f) => s[f] !== undefined)) return true;
  if (Object.values(s.reasons).some((v) => v !== undefined)) return true;
  return s.requiresReset || s.retiredPagesPending !== undefined || s.recoveryAction !== undefined || s.pstate !== undefined;
}

/** A rejected reading shown with its last good value. */
export interface StaleField {
  /** The first sample that rejected it (ms since the epoch). */
  readonly since: number;
  readonly why: string;
  /** The reading rejected most recently. */
  readonly rejected: number;
}

/** What is known of one GPU: the latest good readings, and which of them are older than the sample. */
export interface Reading {
  readonly sample: GpuSample;
  /** When the latest valid sample came (ms since the epoch). */
  readonly at: number;
  readonly stale: ReadonlyMap<ReadingField, StaleField>;
}

/**
 * The reading after one more sample of the GPU: the new plausible values, and
 * for each rejected field the previous good value, marked stale (since the
 * first rejection of a run). A sample that says nothing leaves the reading as it was.
 */
export function carryForward(previous: Reading | undefined, screened: Screened, at: number): Reading | undefined {
  if (!screened.valid) return previous;
  const stale = new Map<ReadingField, StaleField>();
  const merged: Record<string, unknown> = { ...screened.sample };
  for (const r of screened.rejected) {
    const before = previous?.sample[r.field];
    if (before !== undefined) merged[r.field] = before;
    stale.set(r.field, { since: previous?.stale.get(r.field)?.since ?? at, why: r.why, rejected: r.value });
  }
  return { sample: merged as unknown as GpuSample, at, stale };
}
