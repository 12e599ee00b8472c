/**
 * The metrics counted on every request (requests by outcome, time to first
 * token, the router's own overhead), kept in plain maps keyed by the label
 * values and read out by prom-client's registry at each scrape — the same
 * contract as the status-derived families (daemon-metrics.ts): name, get(),
 * reset(). prom-client's own Counter and Histogram hash a label object (and a
 * histogram makes a closure) on every call; these cost a string key and a
 * map lookup.
 */
import type { Metric, Registry } from "prom-client";

type Value = { labels: Record<string, string | number>; value: number; metricName?: string };

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "histogram";
  values(): Value[];
}

/** Registers `f` on `registry` as prom-client collects its own metrics. */
function register(registry: Registry, f: Family): void {
  const metric = {
    name: f.name,
    help: f.help,
    type: f.type,
    aggregator: "sum" as const,
    get: async () => ({ name: f.name, help: f.help, type: f.type, aggregator: "sum" as const, values: f.values() }),
    // Counts live as long as the router's registry: nothing to reset (Registry.resetMetrics calls it).
    reset: () => undefined,
  };
  // The registry needs only the name, get() and reset(); prom-client's types list its own classes.
  registry.registerMetric(metric as unknown as Metric);
}

/** The label values of a series, joined as its key (a NUL never appears in a configured name or a stable code). */
const keyOf = (values: readonly string[]) => values.join("\u0000");

function labelsOf(names: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  names.forEach((n, i) => (labels[n] = values[i]!));
  return labels;
}

/** A counter with labels; a series exists from its first increment. */
export class HotCounter {
  private readonly series = new Map<string, { labels: Record<string, string>; value: number }>();
  private readonly labelNames: readonly string[];

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[]) {
    this.labelNames = labelNames;
    register(registry, { name, help, type: "counter", values: () => [...this.series.values()].map((s) => ({ labels: { ...s.labels }, value: s.value })) });
  }

  /** Adds `n` to the series of these label values (in labelNames' order). */
  inc(values: readonly string[], n = 1): void {
    const key = keyOf(values);
    const s = this.series.get(key);
    if (s) s.value += n;
    else this.series.set(key, { labels: labelsOf(this.labelNames, values), value: n });
  }
}

/** A histogram with fixed buckets (upper bounds, ascending) and labels; a series exists from its first observation. */
export class HotHistogram {
  private readonly series = new Map<string, { labels: Record<string, string>; counts: Float64Array; sum: number; count: number }>();
  private readonly labelNames: readonly string[];
  private readonly buckets: readonly number[];

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    this.labelNames = labelNames;
    this.buckets = buckets;
    register(registry, { name, help, type: "histogram", values: () => this.values(name) });
    // Without labels there is one series, there from the start (zeros until the first observation).
    if (labelNames.length === 0) this.series.set("", { labels: {}, counts: new Float64Array(buckets.length), sum: 0, count: 0 });
  }

  /** One observation in the series of these label values (in labelNames' order). */
  observe(values: readonly string[], v: number): void {
    const key = keyOf(values);
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { labels: labelsOf(this.labelNames, values), counts: new Float64Array(this.buckets.length), sum: 0, count: 0 }));
    const b = this.buckets;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        s.counts[i]!++;
        break;
      }
    }
    s.sum += v;
    s.count++;
  }

  /** The exposition's series: cumulative buckets (le), +Inf, _sum and _count per label set. */
  private values(name: string): Value[] {
    const out: Value[] = [];
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += s.counts[i]!;
        out.push({ metricName: `${name}_bucket`, labels: { le, ...s.labels }, value: cumulative });
      });
      out.push({ metricName: `${name}_bucket`, labels: { le: "+Inf", ...s.labels }, value: s.count });
      out.push({ metricName: `${name}_sum`, labels: { ...s.labels }, value: s.sum });
      out.push({ metricName: `${name}_count`, labels: { ...s.labels }, value: s.count });
    }
    return out;
  }
}
