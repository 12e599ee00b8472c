import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import type { Io } from "../../src/cli/output.ts";
import { testAlertCommand } from "../../src/cli/test-alert.ts";
import { freePort } from "../helpers/sim.ts";
import { tempDir } from "../helpers/tmp.ts";
import { alertsToml, SMTP_PASSWORD, startSmtp } from "./helpers.ts";

function capture(env: NodeJS.ProcessEnv = {}): Io & { out: () => string; err: () => string } {
  let out = "";
  let err = "";
  const sink = (add: (s: string) => void) =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        add(chunk.toString());
        cb();
      },
    });
  return { stdout: sink((s) => (out += s)), stderr: sink((s) => (err += s)), env: { NO_COLOR: "1", ...env }, out: () => out, err: () => err };
}

/** supervisor.toml (alerts not enabled) with the SMTP password in a file beside it. */
function configFile(dir: string, port: number, recipients: { to?: string[]; criticalTo?: string[] } = {}): string {
  const file = path.join(dir, "supervisor.toml");
  const pwFile = path.join(dir, "smtp-password");
  writeFileSync(pwFile, `${SMTP_PASSWORD}\n`, { mode: 0o600 });
  writeFileSync(file, alertsToml(port, { ...recipients, password: `password_file = "${pwFile}"` }));
  return file;
}

test("test-alert sends one mail to every recipient and prints the message id and the server's answer", async (t) => {
  const smtp = await startSmtp(t);
  const file = configFile(tempDir(t), smtp.port);
  const io = capture();
  assert.equal(await testAlertCommand({ config: file }, io), 0, io.err());
  assert.equal(smtp.mails.length, 1);
  const m = smtp.mails[0]!;
  assert.equal(m.subject, "[llmsup] gpu-box-1: test alert");
  assert.deepEqual(m.to, ["oncall@example.com", "boss@example.com"]);
  assert.match(m.text, /SMTP: {5}127\.0\.0\.1:\d+ \(none\)\n/);
  assert.match(m.text, /Alerts: {3}DISABLED \(\[alerts\] enabled = false\)/);
  assert.match(io.out(), /^test alert sent via 127\.0\.0\.1:\d+ \(none\) in \d+ ms\n {2}to: {9}oncall@example\.com, boss@example\.com\n {2}message id: <[^>]+>\n {2}server: {5}250 queued as T1\n$/);
  assert.equal(io.err(), "");
});

test("test-alert --json reports the same, machine-readable; the path may come from LLMSUP_CONFIG", async (t) => {
  const smtp = await startSmtp(t);
  const file = configFile(tempDir(t), smtp.port);
  const io = capture({ LLMSUP_CONFIG: file });
  assert.equal(await testAlertCommand({ json: true }, io), 0, io.out());
  const r = JSON.parse(io.out()) as Record<string, unknown>;
  assert.equal(r.sent, true);
  assert.equal(r.response, "250 queued as T1");
  assert.match(String(r.messageId), /^<.+>$/);
  assert.deepEqual(r.accepted, ["oncall@example.com", "boss@example.com"]);
});

test("test-alert with a wrong password exits 78 with LLMSUP_E_SMTP_AUTH and the server's exact answer", async (t) => {
  const smtp = await startSmtp(t, { password: "something-else" });
  const file = configFile(tempDir(t), smtp.port);
  const io = capture();
  assert.equal(await testAlertCommand({ config: file }, io), 78);
  assert.match(io.err(), /^error LLMSUP_E_SMTP_AUTH: cannot send the test alert via 127\.0\.0\.1:\d+ \(none\): EAUTH 535 5\.7\.8 Authentication credentials invalid \[AUTH PLAIN\]\n {2}The SMTP server refused/);
  assert.ok(!io.err().includes(SMTP_PASSWORD));
  const json = capture();
  assert.equal(await testAlertCommand({ config: file, json: true }, json), 78);
  const r = JSON.parse(json.out()) as { sent: boolean; code: string; smtp: { code: string; responseCode: number; response: string } };
  assert.deepEqual([r.sent, r.code, r.smtp.code, r.smtp.responseCode], [false, "LLMSUP_E_SMTP_AUTH", "EAUTH", 535]);
  assert.ok(!json.out().includes(SMTP_PASSWORD));
});

test("test-alert against a server that is down exits 69 with LLMSUP_E_SMTP_UNREACHABLE and the socket error", async (t) => {
  const file = configFile(tempDir(t), await freePort());
  const io = capture();
  assert.equal(await testAlertCommand({ config: file }, io), 69);
  assert.match(io.err(), /^error LLMSUP_E_SMTP_UNREACHABLE: cannot send the test alert via 127\.0\.0\.1:\d+ \(none\): ESOCKET connect ECONNREFUSED 127\.0\.0\.1:\d+\n/);
});

test("test-alert with a recipient the server refuses exits 69 with LLMSUP_E_SMTP_REJECTED", async (t) => {
  const smtp = await startSmtp(t);
  const io = capture();
  const file = configFile(tempDir(t), smtp.port, { criticalTo: ["nobody@example.com"] });
  assert.equal(await testAlertCommand({ config: file }, io), 69);
  assert.match(io.err(), /LLMSUP_E_SMTP_REJECTED: the server refused nobody@example\.com/);
  assert.equal(smtp.mails.length, 1, "the others still got it");
});

test("test-alert refuses a configuration without recipients, and an unreadable config or password, with their codes", async (t) => {
  const dir = tempDir(t);
  const noTo = capture();
  assert.equal(await testAlertCommand({ config: configFile(dir, 25, { to: [], criticalTo: [] }) }, noTo), 78);
  assert.match(noTo.err(), /LLMSUP_E_CONFIG_INVALID: .*alerts\.to is empty/);
  const missing = capture();
  assert.equal(await testAlertCommand({ config: path.join(dir, "absent.toml") }, missing), 78);
  assert.match(missing.err(), /LLMSUP_E_CONFIG_UNREADABLE/);
  const file = configFile(dir, 25);
  writeFileSync(file, `${readFileSync(file, "utf8").replace(/password_file = .*/, 'password_env = "NOT_SET_ANYWHERE"')}`);
  const secret = capture();
  assert.equal(await testAlertCommand({ config: file, json: true }, secret), 78);
  assert.equal((JSON.parse(secret.out()) as { code: string }).code, "LLMSUP_E_SECRET_UNREADABLE");
});
