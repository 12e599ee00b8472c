/** A real Prometheus scrapes a running llmsup (with the shipped alert rules loaded) and sees the route's serving tier go from 0 to 1 when the first tier's simulator is killed. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { freePort } from "../helpers/sim.ts";
import { tempDir } from "../helpers/tmp.ts";
import { waitUntil } from "../helpers/wait.ts";
import { waitStatus } from "../helpers/daemon.ts";
import { DEPLOY, startService, startTcpDaemon, which } from "./helpers.ts";

interface Sample {
  readonly metric: Record<string, string>;
  readonly value: [number, string];
}

async function query(base: string, promql: string): Promise<Sample[]> {
  const r = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`);
  const body = (await r.json()) as { status: string; data?: { result: Sample[] }; error?: string };
  if (body.status !== "success") throw new Error(`${promql}: ${body.error}`);
  return body.data!.result;
}

test("Prometheus scrapes llmsup (up == 1) and llmsup_route_serving_tier goes 0 → 1 after the first tier's simulator is killed; the shipped rules load", async (t) => {
  const prometheus = which("prometheus");
  if (!prometheus) return t.skip("prometheus not installed: apt-get install prometheus");
  const { d, port } = await startTcpDaemon(
    t,
    [
      // Restarted only long after a crash: the outage lasts past a few scrapes.
      { name: "primary", kind: "llamacpp", process: `  restart_sec = "60s"\n  restart_max_delay = "60s"\n  start_limit_interval = "10m"` },
      { name: "fallback", kind: "llamacpp" },
    ],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`,
  );
  const ready = await waitStatus(d, "both ready on tier 0", (s) => s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0, 20_000);

  const dir = tempDir(t);
  const web = await freePort();
  writeFileSync(
    path.join(dir, "prometheus.yml"),
    [
      "global:",
      "  scrape_interval: 1s",
      "  evaluation_interval: 1s",
      "rule_files:",
      `  - ${path.join(DEPLOY, "prometheus/llmsup-rules.yml")}`,
      "scrape_configs:",
      "  - job_name: llmsup",
      "    metrics_path: /metrics",
      "    static_configs:",
      `      - targets: ["127.0.0.1:${port}"]`,
      "        labels: { box: test-box }",
      "",
    ].join("\n"),
  );
  const prom = startService(t, prometheus, [
    `--config.file=${path.join(dir, "prometheus.yml")}`,
    `--storage.tsdb.path=${path.join(dir, "data")}`,
    `--web.listen-address=127.0.0.1:${web}`,
    "--storage.tsdb.retention.time=1h",
  ]);
  const base = `http://127.0.0.1:${web}`;
  const value = async (promql: string) => (await query(base, promql).catch(() => []))[0]?.value[1];
  await waitUntil(`Prometheus scraping llmsup (up == 1)\n${prom.output().slice(-2000)}`, async () => (await value('up{job="llmsup", box="test-box"}')) === "1", { timeoutMs: 30_000, everyMs: 250 });
  await waitUntil("serving tier 0 scraped", async () => (await value('llmsup_route_serving_tier{route="llama"}')) === "0", { timeoutMs: 15_000, everyMs: 250 });

  const rules = (await (await fetch(`${base}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string }[] }[] } };
  const loaded = rules.data.groups.flatMap((g) => g.rules);
  assert.ok(loaded.some((r) => r.name === "LlmsupRouteOnFallback"), "the shipped alert rules are loaded");

  // The first tier's simulator is killed: the route fails over to the second tier.
  process.kill(ready.json.backends.find((b) => b.name === "primary")!.pid!, "SIGKILL");
  await waitUntil("serving tier 1 scraped after the primary was killed", async () => (await value('llmsup_route_serving_tier{route="llama"}')) === "1", { timeoutMs: 30_000, everyMs: 250 });
  assert.equal(await value('llmsup_route_on_fallback{route="llama"}'), "1", "the route is on a fallback tier");
  await waitUntil("the rules evaluated healthily", async () => {
    const r = (await (await fetch(`${base}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } };
    const all = r.data.groups.flatMap((g) => g.rules);
    return all.length > 0 && all.every((x) => x.health === "ok");
  }, { timeoutMs: 10_000, everyMs: 250 });
});
