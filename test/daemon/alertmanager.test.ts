/** The whole chain to Alertmanager: a real daemon, simulated backends, a real Alertmanager and a real SMTP server on loopback. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startDaemon, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";
import { waitUntil } from "../helpers/wait.ts";
import { SMTP_PASSWORD, SMTP_USER, startSmtp } from "../alerts/helpers.ts";
import { alertmanagerMissing, startAlertmanager } from "../alerts/receivers.ts";

interface AlertsJson {
  daemon: { hostname: string };
  alerts: { channels: { channel: string; delivered: number; pending: number; failing: boolean }[] };
}

test("a killed primary fires LlmsupFailover in Alertmanager and the recovery resolves it, while mail goes out alongside", { skip: alertmanagerMissing() }, async (t) => {
  const am = await startAlertmanager(t);
  const smtp = await startSmtp(t);
  const files = await writeDaemonConfig(
    t,
    [
      { name: "primary", kind: "llamacpp", process: `  restart_sec = "1500ms"\n  restart_max_delay = "1500ms"` },
      { name: "fallback", kind: "llamacpp" },
    ],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`,
    `[alerts]\nenabled = true\nfrom = "llmsup@box.example.com"\nto = ["oncall@example.com"]\n[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "TEST_SMTP_PASSWORD"\ntimeout = "3s"\n[alerts.alertmanager]\nurl = "${am.url}"\ntimeout = "3s"\n`,
  );
  const d = await startDaemon(t, files, { TEST_SMTP_PASSWORD: SMTP_PASSWORD });
  const ok = await waitStatus(d, "both ready", (s) => s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0);
  const box = (ok.json as unknown as AlertsJson).daemon.hostname;
  const failovers = async () => (await am.alerts()).filter((a) => a.labels.alertname === "LlmsupFailover");

  process.kill(ok.json.backends.find((b) => b.name === "primary")!.pid!, "SIGKILL");
  const [active] = await waitUntil("LlmsupFailover in Alertmanager", async () => (await failovers()).length === 1 && failovers(), { timeoutMs: 15_000 });
  assert.equal(active!.status.state, "active");
  assert.deepEqual(active!.labels, { alertname: "LlmsupFailover", box, route: "llama", backend: "primary", severity: "warning" });
  assert.equal(active!.annotations.summary, "llama failed over to tier 1 (fallback)");
  assert.match(active!.annotations.what!, /^Route llama moved from tier 0 \(primary\) to tier 1 \(fallback\)\.$/);
  assert.ok(active!.annotations.why && active!.annotations.action, "why and action, as the mail says");
  assert.ok(Date.parse(active!.endsAt) > Date.now() + 3 * 60_000, "ends 4 resend intervals (1m) ahead unless posted again");

  await waitStatus(d, "back on the primary", (s) => s.backends.find((b) => b.name === "primary")!.generation === 2 && s.router.routes[0]!.serving_tier === 0, 20_000);
  await waitUntil("LlmsupFailover resolved", async () => (await failovers()).length === 0, { timeoutMs: 15_000 });
  const resolved = await waitUntil("Alertmanager's resolved notification", () => am.notifications.find((n) => n.status === "resolved" && n.alerts.some((a) => a.labels.alertname === "LlmsupFailover")), { timeoutMs: 10_000 });
  assert.ok(Date.parse(resolved.alerts.find((a) => a.labels.alertname === "LlmsupFailover")!.endsAt) <= Date.now(), "ended at the recovery");

  await smtp.waitFor(3, 15_000);
  assert.equal(smtp.mails.filter((m) => /llama failed over to tier 1 \(fallback\)/.test(m.subject)).length, 1, "mail still goes out");
  const st = await waitStatus(d, "both channels delivered", (s) => {
    const ch = (s as unknown as AlertsJson).alerts.channels;
    return ch.length === 2 && ch.every((c) => c.pending === 0 && c.delivered > 0);
  });
  assert.deepEqual((st.json as unknown as AlertsJson).alerts.channels.map((c) => [c.channel, c.failing]), [["smtp", false], ["alertmanager", false]]);
  const human = await d.cli("status");
  assert.match(human.stdout, /\n {2}smtp {11}ok {2}\d+ delivered, 0 waiting/);
  assert.match(human.stdout, /\n {2}alertmanager {3}ok {2}\d+ delivered, 0 waiting/);
  process.kill(d.pid, "SIGTERM");
  await d.exited;
});
