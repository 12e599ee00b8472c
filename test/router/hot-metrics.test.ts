/** The per-request metrics (src/router/hot-metrics.ts) expose exactly what prom-client's own Counter and Histogram would for the same counts. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Counter, Histogram, Registry } from "prom-client";
import { HotCounter, HotHistogram } from "../../src/router/hot-metrics.ts";

const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05];

test("a HotCounter's exposition is byte for byte prom-client's Counter's for the same increments, label values with quotes and backslashes included", async () => {
  const ours = new Registry();
  const theirs = new Registry();
  const hot = new HotCounter(ours, "x_requests_total", "Requests.", ["route", "tier", "outcome"]);
  const ref = new Counter({ name: "x_requests_total", help: "Requests.", labelNames: ["route", "tier", "outcome"], registers: [theirs] });
  const incs: [string, string, string, number][] = [["llama", "0", "ok", 1], ["llama", "1", "connect", 1], ['we"ird\\route', "0", "ok", 3], ["llama", "0", "ok", 1], ["mistral", "-1", "all_tiers_down", 1]];
  for (const [route, tier, outcome, n] of incs) {
    hot.inc([route, tier, outcome], n);
    ref.inc({ route, tier, outcome }, n);
  }
  assert.equal(await ours.metrics(), await theirs.metrics());
  assert.match(await ours.metrics(), /x_requests_total\{route="llama",tier="0",outcome="ok"\} 2/);
});

test("a HotHistogram's exposition is byte for byte prom-client's Histogram's: buckets on their bounds, +Inf, sum and count; an unlabelled one has its zero series from the start", async () => {
  const ours = new Registry();
  const theirs = new Registry();
  const hot = new HotHistogram(ours, "x_overhead_seconds", "Overhead.", [], BUCKETS);
  const ref = new Histogram({ name: "x_overhead_seconds", help: "Overhead.", buckets: BUCKETS, registers: [theirs] });
  assert.equal(await ours.metrics(), await theirs.metrics(), "zeros before any observation");
  const labelled = new HotHistogram(ours, "x_ttft_seconds", "TTFT.", ["route", "backend"], [0.05, 0.1, 1]);
  const refLabelled = new Histogram({ name: "x_ttft_seconds", help: "TTFT.", labelNames: ["route", "backend"], buckets: [0.05, 0.1, 1], registers: [theirs] });
  // Exactly on a bound, between bounds, past the last one, and zero.
  for (const v of [0.0001, 0.0003, 0.05, 0.07, 3, 0, 0.0025, 0.01]) {
    hot.observe([], v);
    ref.observe(v);
  }
  for (const [route, backend, v] of [["llama", "gpu0", 0.05], ["llama", "cpu", 0.5], ["llama", "gpu0", 2]] as const) {
    labelled.observe([route, backend], v);
    refLabelled.observe({ route, backend }, v);
  }
  assert.equal(await ours.metrics(), await theirs.metrics());
  assert.match(await ours.metrics(), /x_overhead_seconds_bucket\{le="0\.05"\} 6\nx_overhead_seconds_bucket\{le="\+Inf"\} 8/);
});
