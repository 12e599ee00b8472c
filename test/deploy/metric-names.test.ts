/**
 * The Grafana dashboard and the alert rules read only metrics llmsup exports:
 * every name in their PromQL is in a real scrape of a running daemon (with a
 * simulated GPU and alert mail, so the GPU and alert metrics are registered),
 * HELP/TYPE lines counting for metrics without samples yet.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { writeWrapper } from "../../src/sim/gpu/cli.ts";
import { defaultGpuState, writeGpuState } from "../../src/sim/gpu/state.ts";
import { SMTP_PASSWORD, SMTP_USER, startSmtp } from "../alerts/helpers.ts";
import { waitStatus } from "../helpers/daemon.ts";
import { DEPLOY, exportedNames, promqlMetricNames, scrape, startTcpDaemon } from "./helpers.ts";

interface Target {
  readonly expr?: string;
}
interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly datasource?: unknown;
  readonly gridPos?: { h: number; w: number; x: number; y: number };
  readonly targets?: readonly Target[];
  readonly panels?: readonly Panel[];
}
interface Dashboard {
  readonly uid: string;
  readonly title: string;
  readonly panels: readonly Panel[];
  readonly templating: { readonly list: readonly { name: string; type: string; query?: unknown; definition?: string }[] };
  readonly annotations?: { readonly list: readonly { expr?: string }[] };
}

const dashboard = JSON.parse(readFileSync(path.join(DEPLOY, "grafana/llmsup-dashboard.json"), "utf8")) as Dashboard;
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const dashboardExprs = [...panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, expr: t.expr ?? "" }))), ...(dashboard.annotations?.list ?? []).map((a) => ({ where: "annotation", expr: a.expr ?? "" }))];
const variableExprs = dashboard.templating.list.flatMap((v) => (v.definition ? [{ where: `variable $${v.name}`, expr: /label_values\((.*),\s*\w+\)$/.exec(v.definition)?.[1] ?? v.definition }] : []));
const rulesText = readFileSync(path.join(DEPLOY, "prometheus/llmsup-rules.yml"), "utf8");
const ruleExprs = [...rulesText.matchAll(/- alert: (\w+)\n\s*(?:#.*\n\s*)*expr: (.+)$/gm)].map((m) => ({ where: `alert ${m[1]}`, expr: m[2]! }));

test("promqlMetricNames finds the metrics and only them: not functions, aggregations, labels, durations, keywords or variables", () => {
  assert.deepEqual(
    promqlMetricNames('histogram_quantile(0.99, sum by (le, box) (rate(llmsup_router_overhead_seconds_bucket{box=~"$box"}[$__rate_interval])))'),
    ["llmsup_router_overhead_seconds_bucket"],
  );
  assert.deepEqual(promqlMetricNames("llmsup_route_serving_tier == -1 unless on (instance, job, route) llmsup_route_settling == 1"), ["llmsup_route_serving_tier", "llmsup_route_settling"]);
  assert.deepEqual(promqlMetricNames('absent(up{job="llmsup"})'), ["up"]);
  assert.deepEqual(promqlMetricNames("time() - llmsup_alerts_last_delivery_timestamp_seconds offset 5m > 1e3"), ["llmsup_alerts_last_delivery_timestamp_seconds"]);
  assert.deepEqual(exportedNames("# HELP a_seconds x\n# TYPE a_seconds histogram\n# HELP b y\n# TYPE b gauge\nc_total 1\n"), new Set(["a_seconds", "a_seconds_bucket", "a_seconds_sum", "a_seconds_count", "b", "c_total"]));
});

test("the Grafana dashboard parses and has the panels an operator needs, each filtered by the $box variable", () => {
  assert.equal(dashboard.uid, "llmsup-fleet");
  const box = dashboard.templating.list.find((v) => v.name === "box");
  assert.ok(box && box.type === "query", "a $box variable");
  assert.match(box.definition ?? "", /label_values\(up\{job="llmsup"\}, box\)/);
  const ids = panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length, "panel ids are unique");
  const used = (name: string) => dashboardExprs.some((e) => promqlMetricNames(e.expr).includes(name));
  for (const [what, name] of [
    ["routes and serving tiers over time", "llmsup_route_serving_tier"],
    ["failovers", "llmsup_failovers_total"],
    ["backend states", "llmsup_backend_state"],
    ["GPU temperatures", "llmsup_gpu_temperature_celsius"],
    ["GPU faults", "llmsup_gpu_faults"],
    ["router latency", "llmsup_router_overhead_seconds_bucket"],
    ["requests by outcome", "llmsup_requests_total"],
    ["alerts delivery", "llmsup_alerts_delivery_failing"],
    ["alerts waiting", "llmsup_alerts_pending"],
  ]) {
    assert.ok(used(name!), `a panel shows ${what} (${name})`);
  }
  assert.ok(dashboardExprs.some((e) => /sum by \(outcome\) \(rate\(llmsup_requests_total/.test(e.expr)), "requests by outcome");
  for (const p of panels.filter((p) => p.type !== "row")) {
    assert.ok(p.datasource, `panel "${p.title}" has a data source`);
    assert.ok(p.gridPos && p.gridPos.w > 0 && p.gridPos.x + p.gridPos.w <= 24, `panel "${p.title}" fits the grid`);
    assert.ok((p.targets ?? []).length > 0, `panel "${p.title}" has a query`);
    for (const t of p.targets ?? []) assert.match(t.expr ?? "", /box=~"\$box"/, `panel "${p.title}": ${t.expr} follows $box`);
  }
});

test("every metric the dashboard and the alert rules read is exported by a running llmsup (a real scrape)", async (t) => {
  const smtp = await startSmtp(t);
  const { d, url } = await startTcpDaemon(
    t,
    [
      { name: "primary", kind: "llamacpp", extra: "gpus = [0]", args: ["--gpus", "0"] },
      { name: "fallback", kind: "llamacpp" },
    ],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`,
    {
      extra: `[alerts]\nenabled = true\nfrom = "llmsup@box.example.com"\nto = ["oncall@example.com"]\n[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "TEST_SMTP_PASSWORD"\ntimeout = "3s"\n`,
      env: { TEST_SMTP_PASSWORD: SMTP_PASSWORD },
      edit: async (files) => {
        const state = path.join(files.dir, "gpus.json");
        await writeGpuState(state, defaultGpuState(1));
        const smi = await writeWrapper(state, path.join(files.dir, "nvidia-smi"));
        writeFileSync(files.config, readFileSync(files.config, "utf8").replace("[gpu]\nenabled = false\n", `[gpu]\nnvidia_smi = "${smi}"\ninterval = "300ms"\ndeadline = "3s"\nkernel_log = "off"\n`));
        return { LLMSUP_SIM_GPU_STATE: state };
      },
    },
  );
  await waitStatus(d, "both ready on tier 0", (s) => s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0, 20_000);
  const text = await scrape(`${url}/metrics`);
  const exported = exportedNames(text);
  exported.add("up"); // Prometheus's own, per target.
  const missing: string[] = [];
  for (const { where, expr } of [...dashboardExprs, ...variableExprs, ...ruleExprs]) {
    for (const name of promqlMetricNames(expr)) if (!exported.has(name)) missing.push(`${name} (${where})`);
  }
  assert.ok(ruleExprs.length >= 13, "every alert rule's expression was read");
  assert.deepEqual([...new Set(missing)], [], `metrics read but not exported by llmsup:\n${[...new Set(missing)].join("\n")}`);
});
