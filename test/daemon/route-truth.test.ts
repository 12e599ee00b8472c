/** What the daemon tells about its routes is what happened: nothing at boot or in a quiet run, one fallback and one recovery for one outage, whatever requests are in flight. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { startDaemon, status, waitStatus, requestPump, writeDaemonConfig } from "../helpers/daemon.ts";
import { SMTP_PASSWORD, SMTP_USER, startSmtp } from "../alerts/helpers.ts";
import { waitUntil } from "../helpers/wait.ts";

test("requests in flight from boot through one SIGKILL of the primary: no route event or mail at boot or while quiet, then exactly one fallback and one recovery (events and mails)", async (t) => {
  const smtp = await startSmtp(t);
  const files = await writeDaemonConfig(
    t,
    [
      { name: "primary", kind: "llamacpp", args: ["--load-time", "1500ms"], process: `  restart_sec = "1s"\n  restart_max_delay = "1s"` },
      { name: "fallback", kind: "llamacpp" },
    ],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`,
    `[alerts]\nenabled = true\nfrom = "llmsup@box.example.com"\nto = ["oncall@example.com"]\ncoalesce_window = "10m"\n[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "TEST_SMTP_PASSWORD"\ntimeout = "3s"\n`,
  );
  const d = await startDaemon(t, files, { TEST_SMTP_PASSWORD: SMTP_PASSWORD });
  const { answers } = requestPump(t, files.socket, "llama", 50);
  const ok = await waitStatus(d, "both ready, on tier 0", (s) => s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0, 20_000);
  const readyAt = answers.length;
  await new Promise((r) => setTimeout(r, 3_000));
  const quiet = await status(d);
  const routeKinds = (s: typeof quiet.json) => s.events.filter((e) => ["failover", "recovery", "all_down"].includes(e.kind)).map((e) => e.kind);
  assert.deepEqual(routeKinds(quiet.json), [], "boot and a quiet run are no failover");
  assert.deepEqual(smtp.mails.map((m) => m.subject).filter((s) => !/started/.test(s)), [], "no mail but the start");
  assert.ok(answers.length > readyAt + 10, "requests were flowing");

  const inFlightBefore = answers.length;
  process.kill(ok.json.backends.find((b) => b.name === "primary")!.pid!, "SIGKILL");
  await waitStatus(d, "back on the primary", (s) => s.backends.find((b) => b.name === "primary")!.generation === 2 && s.router.routes[0]!.serving_tier === 0, 20_000);
  await new Promise((r) => setTimeout(r, 2_500));
  const after = await status(d);
  assert.deepEqual(routeKinds(after.json), ["failover", "recovery"], after.json.events.map((e) => `${e.kind}: ${e.summary}`).join("\n"));
  await smtp.waitFor(3, 10_000);
  const subjects = smtp.mails.map((m) => m.subject);
  assert.equal(subjects.filter((s) => /failed over/.test(s)).length, 1, subjects.join("\n"));
  assert.equal(subjects.filter((s) => /recovered|back on/.test(s)).length, 1, subjects.join("\n"));
  assert.ok(answers.length > inFlightBefore + 10, "requests kept flowing through the outage");
  assert.deepEqual(answers.slice(readyAt).filter((a) => a.status !== 200), [], "once a tier was up, no client saw an error");
});

test("a primary that cannot start at boot: once fatal, the route's fallback is announced (no waiting out its start-up time); fixed and reset, the all-clear reaches the fatal's recipients", async (t) => {
  const smtp = await startSmtp(t);
  const files = await writeDaemonConfig(
    t,
    [
      { name: "primary", kind: "llamacpp", process: `  restart_sec = "100ms"\n  restart_max_delay = "100ms"\n  start_limit_burst = 2` },
      { name: "fallback", kind: "llamacpp" },
    ],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`,
    `[alerts]\nenabled = true\nfrom = "llmsup@box.example.com"\nto = ["oncall@example.com"]\ncritical_to = ["boss@example.com"]\n[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "TEST_SMTP_PASSWORD"\ntimeout = "3s"\n`,
  );
  // The primary's model files are "missing" until the flag file exists.
  const flag = path.join(files.dir, "model-present");
  const text = readFileSync(files.config, "utf8");
  const at = text.indexOf("command = ", text.indexOf(`name = "primary"`));
  const line = text.slice(at, text.indexOf("\n", at));
  const argv = JSON.parse(line.slice("command = ".length)) as string[];
  const wrapped = ["/bin/sh", "-c", `test -f ${flag} || { echo "error: model file not found" >&2; exit 1; }; exec "$0" "$@"`, ...argv];
  writeFileSync(files.config, text.replace(line, `command = ${JSON.stringify(wrapped)}`));

  const d = await startDaemon(t, files, { TEST_SMTP_PASSWORD: SMTP_PASSWORD });
  await waitStatus(d, "primary fatal, route on the fallback", (s) => s.backends.find((b) => b.name === "primary")!.state === "fatal" && s.router.routes[0]!.serving_tier === 1, 20_000);
  await waitUntil("the fatal and the route's fallback mailed", () => smtp.mails.some((m) => /llama failed over/.test(m.subject)) && smtp.mails.some((m) => /primary/.test(m.subject) && /fatal|gave up|restart budget/i.test(m.subject)), { timeoutMs: 10_000, everyMs: 50 });
  const fatalMail = smtp.mails.find((m) => /primary/.test(m.subject) && /fatal|gave up|restart budget/i.test(m.subject));
  assert.ok(fatalMail, smtp.mails.map((m) => m.subject).join("\n"));
  assert.ok(fatalMail.to.includes("boss@example.com"), "a fatal goes to critical_to");
  assert.equal(smtp.mails.filter((m) => /llama failed over/.test(m.subject)).length, 1, "the route's fallback is announced once the first tier stopped trying");
  assert.ok(!smtp.mails.some((m) => /ALL TIERS DOWN/.test(m.subject)), "the fallback still loading at boot is no outage");

  writeFileSync(flag, "");
  const reset = await d.cli("reset", "primary");
  assert.equal(reset.code, 0, reset.stderr);
  await waitStatus(d, "back on the primary", (s) => s.backends.find((b) => b.name === "primary")!.state === "ready" && s.router.routes[0]!.serving_tier === 0, 20_000);
  const mail = await waitUntil("the all-clear mail for primary", () => smtp.mails.find((m) => /primary ready again/.test(m.subject)), { timeoutMs: 10_000, everyMs: 100 });
  assert.ok(mail.to.includes("boss@example.com"), "the all-clear reaches whoever was told of the fatal");
  // Mails leave through the outbox in their own time: the route's recovery may come after the backend's all-clear.
  await waitUntil("the route's recovery mail", () => smtp.mails.some((m) => /llama recovered/.test(m.subject)), { timeoutMs: 10_000, everyMs: 100 });
  assert.equal(smtp.mails.filter((m) => /llama recovered/.test(m.subject)).length, 1);
});
