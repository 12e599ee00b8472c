/** The router's registry: gauges read from the tier-state model at each scrape (a route or backend gone is gone), the continuation counter, the Node process metrics under their standard names. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { RouterMetrics, type ModelView } from "../../src/router/metrics.ts";
import { backend, startRouter } from "../helpers/router.ts";
import { startSim } from "../helpers/sim.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";
import { promtoolCheckMetrics } from "../helpers/tools.ts";

const tier = (backend: string, breaker: string, admissible = true): ModelView["tiers"][number] => ({ backend, model: "m", breaker, admission: admissible ? { admissible } : { admissible, code: "breaker_open" } });

test("breaker state per (backend, model) comes from the model at each scrape: 1 open, 0.5 half-open, 0 closed; a backend no longer routed has no series", async () => {
  const m = new RouterMetrics();
  m.follow(() => [{ model: "llama", serving: 1, tiers: [tier("a", "open", false), tier("b", "half_open"), tier("c", "closed")] }]);
  const text = await m.registry.metrics();
  assert.match(text, /^llmsup_breaker_state\{backend="a",model="m"\} 1$/m);
  assert.match(text, /^llmsup_breaker_state\{backend="b",model="m"\} 0\.5$/m);
  assert.match(text, /^llmsup_breaker_state\{backend="c",model="m"\} 0$/m);
  assert.match(text, /^llmsup_route_serving_tier\{route="llama"\} 1$/m);

  m.follow(() => [{ model: "solo", serving: 0, tiers: [tier("c", "closed")] }]);
  const reloaded = await m.registry.metrics();
  assert.doesNotMatch(reloaded, /backend="a"|backend="b"|route="llama"/);
  assert.match(reloaded, /^llmsup_breaker_state\{backend="c",model="m"\} 0$/m);
});

test("a broken stream's continuations are counted by route, from, to and outcome", async () => {
  const m = new RouterMetrics();
  m.continuation("llama", "gpu0", "cpu", "continued");
  m.continuation("llama", "gpu0", "cpu", "continued");
  m.continuation("llama", "gpu0", "cpu", "failed");
  const text = await m.registry.metrics();
  assert.match(text, /^# TYPE llmsup_stream_continuations_total counter$/m);
  assert.match(text, /^llmsup_stream_continuations_total\{route="llama",from="gpu0",to="cpu",outcome="continued"\} 2$/m);
  assert.match(text, /^llmsup_stream_continuations_total\{route="llama",from="gpu0",to="cpu",outcome="failed"\} 1$/m);
});

test("a stream broken on tier 0 whose continuation on tier 1 breaks too and tier 2 finishes: counted failed from a to b, then continued from b to c", async (t) => {
  const sims = await Promise.all(
    [["--cut-after", "5"], ["--cut-after", "3"], []].map(async (args) => {
      const s = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", ...args]);
      await waitUntil(`${s.url} to answer`, () => answers200(`${s.url}/health`));
      return s;
    }),
  );
  const h = await startRouter(t, `${["a", "b", "c"].map((n, i) => backend(n, "llamacpp", sims[i]!.port)).join("")}[[route]]\nmodel = "llama"\ntiers = [{ backend = "a", model = "m" }, { backend = "b", model = "m" }, { backend = "c", model = "m" }]\n`);
  const res = await h.fetch("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "llama", stream: true, messages: [{ role: "user", content: "Why do streams break?" }] }) });
  const raw = await res.text();
  assert.match(raw, /^: llmsup: the answer continues on tier 1 \(b\)/m);
  assert.match(raw, /^: llmsup: the answer continues on tier 2 \(c\)/m);
  assert.equal(raw.match(/^data: \[DONE\]$/gm)?.length, 1, "the answer was finished");
  const text = await h.metrics.registry.metrics();
  assert.match(text, /^llmsup_stream_continuations_total\{route="llama",from="a",to="b",outcome="failed"\} 1$/m);
  assert.match(text, /^llmsup_stream_continuations_total\{route="llama",from="b",to="c",outcome="continued"\} 1$/m);
  assert.equal(text.match(/^llmsup_stream_continuations_total\{/gm)?.length, 2, text.split("\n").filter((l) => l.includes("continuations")).join("\n"));
});

test("the Node process metrics under the client library's standard names (process_*, nodejs_*), none prefixed llmsup_, and none a gauge named like a counter", async (t) => {
  const m = new RouterMetrics({ defaultMetrics: true });
  const text = await m.registry.metrics();
  for (const name of ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds", "nodejs_heap_size_used_bytes", "nodejs_eventloop_lag_seconds", "nodejs_version_info"]) {
    assert.match(text, new RegExp(`^# TYPE ${name} `, "m"), name);
  }
  assert.doesNotMatch(text, /^# TYPE llmsup_(?:process|nodejs)_/m);
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) assert.equal(name!.endsWith("_total"), type === "counter", `${name} is a ${type}`);
  await t.test("promtool check metrics finds no problem in it", (st) => {
    const r = promtoolCheckMetrics(text);
    if ("missing" in r) return st.skip(r.missing);
    assert.equal(r.findings, "", "promtool's findings");
    assert.equal(r.status, 0);
  });
});
