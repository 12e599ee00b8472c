/**
 * A metric family prom-client's registry collects like its own metrics, its series read by `values()` at
 * each scrape: the registry's contract is a name, get() and reset(). Used where prom-client's own classes
 * cost too much per call (hot-metrics.ts) or hold nothing between scrapes (daemon/daemon-metrics.ts).
 */
import type { Metric, Registry } from "prom-client";

export interface FamilyValue {
  readonly labels: Record<string, string | number>;
  readonly value: number;
  /** For a histogram's _bucket, _sum and _count series. */
  readonly metricName?: string;
}

export interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  values(): FamilyValue[];
}

/** Registers `f` on `registry`. */
export function registerFamily(registry: Registry, f: Family): void {
  const metric = {
    name: f.name,
    help: f.help,
    type: f.type,
    aggregator: "sum" as const,
    get: async () => ({ name: f.name, help: f.help, type: f.type, aggregator: "sum" as const, values: f.values() }),
    // What a family holds is its owner's: nothing to reset here (Registry.resetMetrics calls it).
    reset: () => undefined,
  };
  // The registry needs only the name, get() and reset(); prom-client's types list its own classes.
  registry.registerMetric(metric as unknown as Metric);
}
