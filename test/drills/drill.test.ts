/** Drills against a real daemon on simulated backends, with a real SMTP server for the alert. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startDaemon, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";
import { SMTP_PASSWORD, SMTP_USER, startSmtp } from "../alerts/helpers.ts";
import type { DrillReport } from "../../src/drills/report.ts";

const ROUTE = `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m", ttft_timeout = "600ms" }, { backend = "fallback", model = "m" }]\n`;

async function setup(t: Parameters<typeof startSmtp>[0], schedule = "") {
  const smtp = await startSmtp(t);
  const files = await writeDaemonConfig(
    t,
    [
      { name: "primary", kind: "llamacpp", process: `  restart_sec = "300ms"\n  restart_max_delay = "300ms"` },
      { name: "fallback", kind: "llamacpp" },
    ],
    ROUTE,
    `[router.breaker]\nopen_interval = "1s"\n[alerts]\nenabled = true\nfrom = "llmsup@box.example.com"\nto = ["oncall@example.com"]\n[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "TEST_SMTP_PASSWORD"\ntimeout = "3s"\n${schedule}`,
  );
  const d = await startDaemon(t, files, { TEST_SMTP_PASSWORD: SMTP_PASSWORD });
  await waitStatus(d, "both ready", (s) => s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0);
  return { smtp, files, d };
}

for (const scenario of ["primary-outage", "backend-crash", "backend-hang"] as const) {
  test(`drill ${scenario}: detected, failed over without client errors, recovered, alert delivered`, async (t) => {
    const { d } = await setup(t);
    const r = await d.cli("drill", scenario, "--duration", "1500ms", "--json");
    const report = JSON.parse(r.stdout) as DrillReport;
    assert.equal(r.code, 0, `${r.stderr}\n${JSON.stringify(report, null, 1)}`);
    assert.equal(report.verdict, "pass");
    assert.equal(report.client_errors, 0);
    assert.ok(report.requests >= 5);
    assert.ok(report.fallback_answers > 0, "some answers came from the fallback");
    assert.ok(report.detection_ms !== null && report.detection_ms < 5_000, `detection ${report.detection_ms}`);
    assert.ok(report.failover_ms !== null);
    assert.ok(report.recovery_ms !== null);
    assert.deepEqual(report.alert, { raised: true, delivered: true });
    const human = await d.cli("status");
    assert.match(human.stdout, new RegExp(`drill ${scenario} on llama: pass`));
  });
}

test("a drill is refused while the route is not on its first tier; unknown scenarios are usage errors", async (t) => {
  const { d } = await setup(t);
  const s = await waitStatus(d, "ready", (x) => x.backends.every((b) => b.state === "ready"));
  const stop = await d.cli("stop", "primary");
  assert.equal(stop.code, 0);
  const r = await d.cli("drill", "primary-outage", "--duration", "1s");
  assert.equal(r.code, 69);
  assert.match(r.stderr, /LLMSUP_E_DRILL_REFUSED: llama is not on its first tier/);
  const u = await d.cli("drill", "meteor-strike");
  assert.equal(u.code, 64);
  assert.ok(s);
});

test("a scheduled drill runs by itself and mails its report", async (t) => {
  const { smtp } = await setup(t, `[schedule]\ndrill = "*/4 * * * * *"\ndrill_scenario = "primary-outage"\ndrill_duration = "1s"\n`);
  const deadline = Date.now() + 30_000;
  while (!smtp.mails.some((m) => /drill primary-outage (passed|FAILED)/.test(m.subject)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  const mail = smtp.mails.find((m) => /drill primary-outage/.test(m.subject));
  assert.ok(mail, smtp.mails.map((m) => m.subject).join("\n"));
  assert.match(mail.subject, /passed/, mail.text);
  assert.match(mail.text, /detection/);
  assert.match(mail.text, /client errors +0/);
});
