/** The rows nvidia-smi printed for one repeated GPU index, read as one sample that hides nothing. Pure. */
import type { GpuSample } from "./types.ts";

const max = (xs: readonly (number | undefined)[]): number | undefined => {
  const d = xs.filter((x): x is number => x !== undefined);
  return d.length === 0 ? undefined : Math.max(...d);
};
const any = (xs: readonly (boolean | undefined)[]): boolean | undefined => (xs.some((x) => x === true) ? true : xs.some((x) => x === false) ? false : undefined);

/**
 * The rows of one repeated index as one sample that hides nothing: the
 * highest temperature, the fullest memory, every slowdown and flag any row
 * shows, the first recovery action other than None. Which GPU each row is
 * cannot be told, so no identity and no ECC count (a rise between two GPUs'
 * counters is no event).
 */
export function worstOf(rows: readonly GpuSample[]): GpuSample {
  const first = rows[0] as GpuSample;
  const fullest = rows
    .filter((r) => r.memoryUsedMib !== undefined && r.memoryTotalMib)
    .sort((a, b) => (b.memoryUsedMib as number) / (b.memoryTotalMib as number) - (a.memoryUsedMib as number) / (a.memoryTotalMib as number))[0];
  const masks = rows.map((r) => r.reasons.mask).filter((m): m is number => m !== undefined);
  const actions = rows.map((r) => r.recoveryAction).filter((a): a is string => a !== undefined);
  return {
    index: first.index,
    temperatureC: max(rows.map((r) => r.temperatureC)),
    memoryTemperatureC: max(rows.map((r) => r.memoryTemperatureC)),
    utilizationPct: max(rows.map((r) => r.utilizationPct)),
    memoryUsedMib: fullest?.memoryUsedMib,
    memoryTotalMib: fullest?.memoryTotalMib,
    powerDrawW: max(rows.map((r) => r.powerDrawW)),
    powerLimitW: first.powerLimitW,
    pstate: first.pstate,
    reasons: {
      mask: masks.length === 0 ? undefined : masks.reduce((a, b) => a | b, 0),
      hwSlowdown: any(rows.map((r) => r.reasons.hwSlowdown)),
      hwThermalSlowdown: any(rows.map((r) => r.reasons.hwThermalSlowdown)),
      swThermalSlowdown: any(rows.map((r) => r.reasons.swThermalSlowdown)),
      hwPowerBrakeSlowdown: any(rows.map((r) => r.reasons.hwPowerBrakeSlowdown)),
      swPowerCap: any(rows.map((r) => r.reasons.swPowerCap)),
    },
    retiredPagesPending: any(rows.map((r) => r.retiredPagesPending)),
    recoveryAction: actions.find((a) => a !== "None") ?? actions[0],
    requiresReset: rows.some((r) => r.requiresReset),
  };
}
