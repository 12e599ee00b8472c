/** The pure fault evaluator driven step by step, for tests: a GPU sample builder and a box that records what was raised and cleared. */
import assert from "node:assert/strict";
import { evaluate, initialFaultState, type FaultConfig, type FaultInput, type FaultState } from "../../src/gpu/faults.ts";
import type { ClearedFault, GpuFault, GpuSample } from "../../src/gpu/types.ts";
import { parseKernelMessage } from "../../src/gpu/xid.ts";

export const CONFIG: FaultConfig = { temperatureLimit: 87, memoryFull: 0.98, sustainSamples: 3, clearSamples: 3, eventHoldMs: 30 * 60_000, staleSamples: 3 };
export const BUS = ["00000000:1B:00.0", "00000000:3B:00.0"];

export function gpu(index: number, over: Partial<GpuSample> = {}): GpuSample {
  return {
    index,
    uuid: `GPU-${index}`,
    name: "NVIDIA H100 80GB HBM3",
    busId: BUS[index],
    temperatureC: 40,
    memoryUsedMib: 1000,
    memoryTotalMib: 81559,
    reasons: { mask: 0x1, hwSlowdown: false, hwThermalSlowdown: false, swThermalSlowdown: false, hwPowerBrakeSlowdown: false, swPowerCap: false },
    eccUncorrected: 0,
    eccCorrected: 0,
    retiredPagesPending: false,
    recoveryAction: "None",
    requiresReset: false,
    ...over,
  };
}

/** Feeds inputs one second apart and records what was raised and cleared at each step. */
export class Box {
  state: FaultState = initialFaultState();
  now = 1_000_000;
  raised: GpuFault[] = [];
  cleared: ClearedFault[] = [];
  readonly config: FaultConfig;
  constructor(config: FaultConfig = CONFIG) {
    this.config = config;
  }
  feed(input: FaultInput, stepMs = 1_000) {
    this.now += stepMs;
    const r = evaluate(this.state, input, this.now, this.config);
    this.state = r.state;
    this.raised.push(...r.raised);
    this.cleared.push(...r.cleared);
    return r;
  }
  samples(n: number, ...gpus: GpuSample[]) {
    for (let i = 0; i < n; i++) this.feed({ type: "sample", gpus });
  }
  kernel(line: string, stepMs = 1_000) {
    const event = parseKernelMessage(line);
    assert.ok(event, line);
    return this.feed({ type: "kernel", event }, stepMs);
  }
  active(): string[] {
    return [...this.state.active.keys()].sort();
  }
}

