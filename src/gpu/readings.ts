/**
 * What the monitor shows of each GPU's readings: the latest good values,
 * carried past implausible ones (marked stale, plausible.ts), and the one
 * warning each implausible (GPU, field) gets — not one per sample.
 */
import type { Logger } from "../log/logger.ts";
import type { Observation } from "./conditions.ts";
import { carryForward, READING_JSON_NAME, type Reading } from "./plausible.ts";

export class ReadingBook {
  readonly #readings = new Map<number, Reading>();
  /** (GPU, field) pairs already said implausible. */
  readonly #said = new Set<string>();
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  get readings(): ReadonlyMap<number, Reading> {
    return this.#readings;
  }

  /** One sample's observations, taken at `at`. */
  take(observed: readonly Observation[], at: number): void {
    for (const o of observed) {
      for (const x of o.screened.rejected) {
        const key = `${o.index}:${x.field}`;
        if (this.#said.has(key)) continue;
        this.#said.add(key);
        this.#log.warn(
          { event: "gpu.reading.implausible", code: "LLMSUP_E_GPU_READING_IMPLAUSIBLE", gpu: o.index, field: READING_JSON_NAME[x.field], value: String(x.value), why: x.why },
          `GPU ${o.index}: ${READING_JSON_NAME[x.field]} reads ${x.value}, ${x.why}: ignored, the last good value is kept (said once)`,
        );
      }
      const next = carryForward(this.#readings.get(o.index), o.screened, at);
      if (next) this.#readings.set(o.index, next);
    }
  }
}
