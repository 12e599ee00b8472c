/** The whole chain: a real daemon, simulated backends, a real SMTP server on loopback. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { decide, initialPolicyState } from "../../src/alerts/policy.ts";
import { startDaemon, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";
import { SMTP_PASSWORD, SMTP_USER, startSmtp } from "../alerts/helpers.ts";

/** A primary and a fallback llama-server behind route "llama", alerts to a real SMTP server. */
async function primaryAndFallback(t: Parameters<typeof startSmtp>[0]) {
  const smtp = await startSmtp(t);
  const files = await writeDaemonConfig(
    t,
    [
      { name: "primary", kind: "llamacpp", process: `  restart_sec = "1500ms"\n  restart_max_delay = "1500ms"` },
      { name: "fallback", kind: "llamacpp" },
    ],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`,
    `[alerts]\nenabled = true\nfrom = "llmsup@box.example.com"\nto = ["oncall@example.com"]\n[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "TEST_SMTP_PASSWORD"\ntimeout = "3s"\n`,
  );
  return { smtp, files };
}

test("a killed primary produces exactly one failover mail and one recovery mail, with the right content", async (t) => {
  const { smtp, files } = await primaryAndFallback(t);
  const d = await startDaemon(t, files, { TEST_SMTP_PASSWORD: SMTP_PASSWORD });
  const ok = await waitStatus(d, "both ready", (s) => s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0);
  const started = await smtp.waitFor(1, 10_000);
  assert.match(started[0]!.subject, /^\[llmsup\] \S+: llmsup \S+ started/);
  process.kill(ok.json.backends.find((b) => b.name === "primary")!.pid!, "SIGKILL");
  await waitStatus(d, "back on the primary", (s) => s.backends.find((b) => b.name === "primary")!.generation === 2 && s.router.routes[0]!.serving_tier === 0, 20_000);
  const mails = await smtp.waitFor(3, 15_000);
  await new Promise((r) => setTimeout(r, 1_000));
  const subjects = smtp.mails.map((m) => m.subject);
  const failovers = smtp.mails.filter((m) => /failed over/.test(m.subject));
  const recoveries = smtp.mails.filter((m) => /recovered|back on/.test(m.subject));
  assert.equal(failovers.length, 1, subjects.join("\n"));
  assert.equal(recoveries.length, 1, subjects.join("\n"));
  assert.match(failovers[0]!.subject, /llama failed over to tier 1 \(fallback\)/);
  assert.match(failovers[0]!.text, /primary/);
  assert.match(failovers[0]!.text, /killed by SIGKILL|process/);
  assert.match(recoveries[0]!.subject, /after \d/);
  assert.ok(mails.length >= 3);
  const before = smtp.mails.length;
  process.kill(d.pid, "SIGTERM");
  await d.exited;
  await new Promise((r) => setTimeout(r, 300));
  const after = smtp.mails.slice(before).map((m) => m.subject);
  assert.ok(!after.some((s) => /ALL TIERS DOWN|failed over/.test(s)), `a deliberate stop is no outage: ${after.join(", ")}`);
});

test("a failover a previous daemon left unrecovered is forgotten at start: no phantom mail, and the next real failover is mailed", async (t) => {
  const { smtp, files } = await primaryAndFallback(t);
  // What the last daemon left: llama on tier 1, mailed, never recovered.
  const before = Date.now() - 3_600_000;
  const left = decide(
    initialPolicyState(),
    { kind: "failover", at: before, route: "llama", from: { index: 0, backend: "primary" }, to: { index: 1, backend: "fallback" }, reasonClass: "connect", error: "connect ECONNREFUSED" },
    before,
    { coalesceWindowMs: 600_000, maxPerHour: 30 },
  ).state;
  mkdirSync(path.join(files.dir, "state", "alerts"), { recursive: true, mode: 0o700 });
  writeFileSync(path.join(files.dir, "state", "alerts", "policy.json"), JSON.stringify(left));

  const d = await startDaemon(t, files, { TEST_SMTP_PASSWORD: SMTP_PASSWORD });
  const ok = await waitStatus(d, "both ready", (s) => s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0);
  await smtp.waitFor(1, 10_000);
  process.kill(ok.json.backends.find((b) => b.name === "primary")!.pid!, "SIGKILL");
  await waitStatus(d, "back on the primary", (s) => s.backends.find((b) => b.name === "primary")!.generation === 2 && s.router.routes[0]!.serving_tier === 0, 20_000);
  await smtp.waitFor(3, 15_000);
  await new Promise((r) => setTimeout(r, 1_000));
  const subjects = smtp.mails.map((m) => m.subject);
  assert.match(subjects[0]!, /llmsup \S+ started/, subjects.join("\n"));
  assert.equal(subjects.filter((s) => /failed over/.test(s)).length, 1, subjects.join("\n"));
  assert.match(subjects[1]!, /llama failed over to tier 1 \(fallback\)/, "the failover is mailed, not folded into the last life's outage");
  const recoveries = subjects.filter((s) => /recovered/.test(s));
  assert.equal(recoveries.length, 1, subjects.join("\n"));
  assert.doesNotMatch(recoveries[0]!, /after \d+h/, "paired with this life's failover, not the last life's");
  process.kill(d.pid, "SIGTERM");
  await d.exited;
});
