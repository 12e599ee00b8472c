/**
 * The metrics counted on every request (requests by outcome, time to first
 * token, the router's own overhead), kept in plain maps keyed by the label
 * values and read out by prom-client's registry at each scrape
 * (metric-family.ts). prom-client's own Counter and Histogram hash a label
 * object (and a histogram makes a closure) on every call; these cost a map
 * lookup per label.
 */
import type { Registry } from "prom-client";
import { registerFamily, type FamilyValue } from "./metric-family.ts";

/**
 * Series by their label values, looked up level by level in nested maps — no key string is built per call,
 * and configured names keep their cached hashes; `all` in the order the series first appeared.
 */
class SeriesIndex<S> {
  readonly all: S[] = [];
  private readonly root = new Map<string, unknown>();
  private readonly labelNames: readonly string[];
  private readonly make: (labels: Record<string, string>) => S;

  constructor(labelNames: readonly string[], make: (labels: Record<string, string>) => S) {
    this.labelNames = labelNames;
    this.make = make;
    // Without labels there is one series, there from the start.
    if (labelNames.length === 0) this.all.push(make({}));
  }

  /** The series of these label values (in labelNames' order), made on first use. */
  get(values: readonly string[]): S {
    const last = values.length - 1;
    if (last < 0) return this.all[0]!;
    let level = this.root;
    for (let i = 0; i < last; i++) {
      let next = level.get(values[i]!) as Map<string, unknown> | undefined;
      if (!next) level.set(values[i]!, (next = new Map()));
      level = next;
    }
    let s = level.get(values[last]!) as S | undefined;
    if (s === undefined) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((n, i) => (labels[n] = values[i]!));
      level.set(values[last]!, (s = this.make(labels)));
      this.all.push(s);
    }
    return s;
  }
}

/** A counter with labels; a series exists from its first increment. */
export class HotCounter {
  private readonly series: SeriesIndex<{ labels: Record<string, string>; value: number }>;

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[]) {
    this.series = new SeriesIndex(labelNames, (labels) => ({ labels, value: 0 }));
    registerFamily(registry, { name, help, type: "counter", values: () => this.series.all.map((s) => ({ labels: { ...s.labels }, value: s.value })) });
  }

  /** Adds `n` to the series of these label values (in labelNames' order). */
  inc(values: readonly string[], n = 1): void {
    this.series.get(values).value += n;
  }
}

/** A histogram with fixed buckets (upper bounds, ascending) and labels; a series exists from its first observation (without labels, from the start). */
export class HotHistogram {
  private readonly series: SeriesIndex<{ labels: Record<string, string>; counts: Float64Array; sum: number; count: number }>;
  private readonly buckets: readonly number[];

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    this.buckets = buckets;
    this.series = new SeriesIndex(labelNames, (labels) => ({ labels, counts: new Float64Array(buckets.length), sum: 0, count: 0 }));
    registerFamily(registry, { name, help, type: "histogram", values: () => this.values(name) });
  }

  /** One observation in the series of these label values (in labelNames' order). */
  observe(values: readonly string[], v: number): void {
    const s = this.series.get(values);
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
  private values(name: string): FamilyValue[] {
    const out: FamilyValue[] = [];
    for (const s of this.series.all) {
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
