/** A real Alertmanager with the shipped alertmanager.yml: a box that is down silences its other alerts, a route with no tier silences its fallback alert, and nothing else is silenced. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { freePort } from "../helpers/sim.ts";
import { tempDir } from "../helpers/tmp.ts";
import { waitUntil } from "../helpers/wait.ts";
import { DEPLOY, startService, which } from "./helpers.ts";

interface AmAlert {
  readonly labels: Record<string, string>;
  readonly status: { readonly state: string; readonly inhibitedBy: readonly string[] };
}

test("Alertmanager inhibits a down box's other alerts and a no-tier route's fallback alert, on that box and route only", async (t) => {
  const alertmanager = which("prometheus-alertmanager") ?? which("alertmanager");
  if (!alertmanager) return t.skip("prometheus-alertmanager not installed: apt-get install prometheus-alertmanager");
  const dir = tempDir(t);
  writeFileSync(path.join(dir, "alertmanager.yml"), readFileSync(path.join(DEPLOY, "alertmanager/alertmanager.yml"), "utf8").replace("/etc/alertmanager/smtp-password", path.join(dir, "smtp-password")));
  writeFileSync(path.join(dir, "smtp-password"), "unused\n", { mode: 0o600 });
  const port = await freePort();
  const am = startService(t, alertmanager, [`--config.file=${path.join(dir, "alertmanager.yml")}`, `--storage.path=${path.join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--cluster.listen-address="]);
  const base = `http://127.0.0.1:${port}/api/v2`;
  await waitUntil("Alertmanager ready", async () => (await fetch(`http://127.0.0.1:${port}/-/ready`).catch(() => undefined))?.status === 200, { timeoutMs: 15_000, everyMs: 100 });

  const box = (n: number) => ({ instance: `gpu-0${n}:8181`, job: "llmsup", box: `gpu-0${n}` });
  const alerts = [
    { labels: { alertname: "LlmsupDown", severity: "critical", ...box(1) } },
    { labels: { alertname: "LlmsupBackendFatal", severity: "critical", backend: "vllm", ...box(1) } },
    { labels: { alertname: "LlmsupRouteOnFallback", severity: "warning", route: "llama", ...box(1) } },
    { labels: { alertname: "LlmsupRouteNoServingTier", severity: "critical", route: "qwen", ...box(2) } },
    { labels: { alertname: "LlmsupRouteOnFallback", severity: "warning", route: "qwen", ...box(2) } },
    { labels: { alertname: "LlmsupRouteOnFallback", severity: "warning", route: "llama", ...box(2) } },
    { labels: { alertname: "LlmsupGpuFaultDown", severity: "critical", gpu: "0", kind: "xid_79", ...box(2) } },
    { labels: { alertname: "LlmsupGpuFaultDegraded", severity: "warning", gpu: "0", kind: "thermal", ...box(2) } },
    { labels: { alertname: "LlmsupGpuFaultDegraded", severity: "warning", gpu: "1", kind: "thermal", ...box(2) } },
  ];
  const post = await fetch(`${base}/alerts`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(alerts) });
  assert.equal(post.status, 200, await post.text());

  const key = (a: { labels: Record<string, string> }) => `${a.labels.alertname} ${a.labels.box} ${a.labels.route ?? ""}${a.labels.backend ?? ""}${a.labels.gpu ?? ""}`.trim();
  const got = await waitUntil(`the alerts listed with their inhibitions\n${am.output().slice(-2000)}`, async () => {
    const list = (await (await fetch(`${base}/alerts`)).json()) as AmAlert[];
    return list.length === alerts.length && list.some((a) => a.status.inhibitedBy.length > 0) ? list : undefined;
  }, { timeoutMs: 15_000, everyMs: 200 });
  const inhibited = got.filter((a) => a.status.inhibitedBy.length > 0).map(key).sort();
  assert.deepEqual(inhibited, [
    "LlmsupBackendFatal gpu-01 vllm",
    "LlmsupGpuFaultDegraded gpu-02 0",
    "LlmsupRouteOnFallback gpu-01 llama",
    "LlmsupRouteOnFallback gpu-02 qwen",
  ]);
});
