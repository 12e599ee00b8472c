import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { SMTPServer } from "smtp-server";
import { createMailer, readSmtpPassword } from "../../src/alerts/mailer.ts";
import type { AlertsConfig } from "../../src/config/types.ts";
import { describeSmtpFailure, scrub, smtpFailure } from "../../src/alerts/smtp-failure.ts";
import { freePort } from "../helpers/sim.ts";
import { tempDir } from "../helpers/tmp.ts";
import { alertsConfig, SMTP_ENV, SMTP_PASSWORD, SMTP_USER, startSmtp } from "./helpers.ts";

const SMTP = alertsConfig(25).smtp;

/** The test [alerts] section with some [alerts.smtp] keys changed. */
function withSmtp(port: number, patch: Partial<AlertsConfig["smtp"]>): AlertsConfig {
  const a = alertsConfig(port);
  return { ...a, smtp: { ...a.smtp, ...patch } };
}

test("the password comes from a file (one trailing newline removed) or an environment variable", async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, "smtp-password");
  writeFileSync(file, "  spaced pass  \n");
  assert.equal(await readSmtpPassword({ ...SMTP, password_env: undefined, password_file: file }, {}), "  spaced pass  ");
  assert.equal(await readSmtpPassword({ ...SMTP, password_env: "P" }, { P: "from-env" }), "from-env");
  assert.equal(await readSmtpPassword({ ...SMTP, password_env: undefined }, {}), undefined);
});

test("an unreadable password is LLMSUP_E_SECRET_UNREADABLE naming the key, never the value", async (t) => {
  const dir = tempDir(t);
  const empty = path.join(dir, "empty");
  writeFileSync(empty, "\n");
  const cases: [Parameters<typeof readSmtpPassword>, RegExp][] = [
    [[{ ...SMTP, password_env: undefined, password_file: path.join(dir, "absent") }, {}], /alerts\.smtp\.password_file .*absent: no such file/],
    [[{ ...SMTP, password_env: undefined, password_file: empty }, {}], /is empty/],
    [[{ ...SMTP, password_env: "NOPE" }, {}], /NOPE \(alerts\.smtp\.password_env\) is not set/],
  ];
  for (const [args, says] of cases) {
    await assert.rejects(readSmtpPassword(...args), (e: Error & { code?: string }) => {
      assert.equal(e.code, "LLMSUP_E_SECRET_UNREADABLE");
      assert.match(e.message, says);
      return true;
    });
  }
});

test("nodemailer errors map to stable codes; message-level refusals are told apart from outages", () => {
  const cases: [Record<string, unknown>, string, boolean][] = [
    [{ code: "EAUTH", responseCode: 535, response: "535 5.7.8 bad", command: "AUTH PLAIN" }, "LLMSUP_E_SMTP_AUTH", false],
    [{ code: "ESOCKET", originalCode: "ECONNREFUSED", command: "CONN", message: "connect ECONNREFUSED 127.0.0.1:1" }, "LLMSUP_E_SMTP_UNREACHABLE", false],
    [{ code: "ETIMEDOUT", command: "CONN", message: "Timeout" }, "LLMSUP_E_SMTP_UNREACHABLE", false],
    [{ code: "ESOCKET", originalCode: "DEPTH_ZERO_SELF_SIGNED_CERT", message: "self-signed certificate" }, "LLMSUP_E_SMTP_TLS", false],
    [{ code: "ETLS", message: "STARTTLS failed" }, "LLMSUP_E_SMTP_TLS", false],
    [{ code: "EENVELOPE", responseCode: 550, response: "550 5.1.1 no such user", command: "RCPT TO", permanent: true }, "LLMSUP_E_SMTP_REJECTED", true],
    [{ code: "EENVELOPE", responseCode: 452, response: "452 mailbox full", command: "RCPT TO", permanent: false }, "LLMSUP_E_SMTP_REJECTED", false],
    [{ code: "EMESSAGE", responseCode: 421, response: "421 try later", command: "DATA" }, "LLMSUP_E_SMTP_REJECTED", false],
  ];
  for (const [err, code, rejected] of cases) {
    const f = smtpFailure(Object.assign(new Error(String(err.message ?? err.response)), err));
    assert.equal(f.llmsupCode, code, JSON.stringify(err));
    assert.equal(f.messageRejected, rejected, JSON.stringify(err));
  }
  assert.equal(describeSmtpFailure(smtpFailure(Object.assign(new Error("Invalid login: 535 5.7.8 bad"), cases[0]![0]))), "EAUTH 535 5.7.8 bad [AUTH PLAIN]");
  assert.equal(describeSmtpFailure(smtpFailure(Object.assign(new Error("x"), cases[1]![0]))), "ESOCKET connect ECONNREFUSED 127.0.0.1:1");
});

test("a secret is scrubbed from failure texts, in clear and in base64", () => {
  const pass = "hunter2-secret";
  const plain = Buffer.from(`\0u\0${pass}`).toString("base64");
  const f = smtpFailure(Object.assign(new Error(`server said ${pass}`), { code: "EAUTH", response: `535 echo ${Buffer.from(pass).toString("base64")} ${plain}` }), [pass, `\0u\0${pass}`]);
  assert.ok(!JSON.stringify(f).includes(pass));
  assert.ok(!JSON.stringify(f).includes(plain));
  assert.equal(scrub("a hunter2-secret b", [pass]), "a [redacted] b");
});

test("security = starttls upgrades the connection; an untrusted certificate is refused unless told otherwise", async (t) => {
  // smtp-server offers STARTTLS with its built-in certificate, which no CA vouches for.
  const mails: string[] = [];
  const server = new SMTPServer({
    logger: false,
    closeTimeout: 50,
    authOptional: false,
    onAuth: (a, s, cb) => (s.secure && a.username === SMTP_USER && a.password === SMTP_PASSWORD ? cb(null, { user: a.username }) : cb(new Error("no"))),
    onData(stream, s, cb) {
      stream.resume();
      stream.on("end", () => {
        mails.push(String(s.secure));
        cb(null, "queued");
      });
    },
  });
  server.listen(0, "127.0.0.1");
  await once(server.server, "listening");
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.server.address() as { port: number }).port;

  const strict = await createMailer(withSmtp(port, { security: "starttls" }), { env: SMTP_ENV });
  const refused = await strict.send({ to: ["oncall@example.com"], subject: "s", text: "t" });
  strict.close();
  assert.equal(refused.ok, false);
  if (!refused.ok) assert.equal(refused.failure.llmsupCode, "LLMSUP_E_SMTP_TLS", describeSmtpFailure(refused.failure));

  const lax = await createMailer(withSmtp(port, { security: "starttls", tls_reject_unauthorized: false }), { env: SMTP_ENV });
  const sent = await lax.send({ to: ["oncall@example.com"], subject: "s", text: "t" });
  lax.close();
  assert.equal(sent.ok, true, JSON.stringify(sent));
  assert.deepEqual(mails, ["true"], "the mail went over TLS");
});

test("security = tls against a plain server, and a port nobody listens on, fail fast with their codes", async (t) => {
  const smtp = await startSmtp(t);
  const tls = await createMailer(withSmtp(smtp.port, { security: "tls" }), { env: SMTP_ENV, pool: false });
  const r1 = await tls.send({ to: ["oncall@example.com"], subject: "s", text: "t" });
  tls.close();
  assert.ok(!r1.ok && r1.failure.llmsupCode === "LLMSUP_E_SMTP_TLS", JSON.stringify(r1));
  const port = await freePort();
  const down = await createMailer(alertsConfig(port), { env: SMTP_ENV, pool: false });
  const r2 = await down.send({ to: ["oncall@example.com"], subject: "s", text: "t" });
  down.close();
  assert.ok(!r2.ok && r2.failure.code === "ESOCKET" && r2.failure.cause === "ECONNREFUSED", JSON.stringify(r2));
});
