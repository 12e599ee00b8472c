/** The webhook channel through the Alerter: signed JSON to a loopback receiver, its own durable outbox, refusals set aside. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Alerter } from "../../src/alerts/alerter.ts";
import { sign, verifySignature } from "../../src/alerts/webhook.ts";
import { alertChannelStatus } from "../../src/daemon/status.ts";
import { freePort } from "../helpers/sim.ts";
import { memoryLogger } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";
import { waitUntil } from "../helpers/wait.ts";
import { everyKind, failover, MIN, recovery, ROUTE, T0 } from "./fixtures.ts";
import { alertsConfig, ManualClock, realDelivery, SMTP_ENV, startSmtp } from "./helpers.ts";
import { startWebhookReceiver } from "./receivers.ts";

const SECRET = "whsec-Lantern-4471-shared";

type T = Parameters<typeof tempDir>[0];

/** An alerter whose only channel is one webhook (or mail too, given an SMTP port); the secret in a file under `dir`. */
async function openAlerter(t: T, url: string, o: { dir?: string; clock?: ManualClock; smtpPort?: number } = {}) {
  const dir = o.dir ?? tempDir(t);
  const secretFile = path.join(dir, "webhook-secret");
  writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  const clock = o.clock ?? new ManualClock(T0);
  const log = memoryLogger();
  const mail = o.smtpPort !== undefined;
  const alerter = await Alerter.open({
    config: alertsConfig(o.smtpPort ?? 1, { ...(mail ? {} : { to: [], criticalTo: [] }), alerts: `[[alerts.webhook]]\nurl = "${url}"\nsecret_file = "${secretFile}"\ntimeout = "2s"` }),
    hostname: "gpu-box-1",
    stateDir: dir,
    logger: log.logger,
    clock,
    env: SMTP_ENV,
    ...realDelivery,
    timeZone: "UTC",
    retry: { baseMs: 1_000, maxMs: 8_000 },
  });
  t.after(() => alerter.close());
  return { alerter, clock, log, dir };
}

const outboxFiles = (dir: string, sub = "") => readdirSync(path.join(dir, "alerts", "outbox-webhook-0", sub)).filter((f) => f.endsWith(".json"));

test("the signature is HMAC-SHA256 over timestamp.body; a changed body, another secret or an old timestamp fails verification", () => {
  const body = '{"version":1}';
  const sig = sign(SECRET, 1_767_300_000, body);
  assert.match(sig, /^sha256=[0-9a-f]{64}$/);
  const ok = (s: string, ts: string, b: string, now = 1_767_300_010) => verifySignature(SECRET, { timestamp: ts, signature: s }, b, now);
  assert.equal(ok(sig, "1767300000", body), true);
  assert.equal(ok(sig, "1767300000", '{"version":2}'), false);
  assert.equal(ok(sign("another-secret", 1_767_300_000, body), "1767300000", body), false);
  assert.equal(ok(sig, "1767300001", body), false, "the timestamp is signed");
  assert.equal(ok(sig, "1767300000", body, 1_767_300_000 + 301), false, "older than the replay window");
});

test("a failover then its recovery reach the webhook as signed firing then resolved messages with the mail's facts", async (t) => {
  const hook = await startWebhookReceiver(t, SECRET);
  const { alerter, clock, dir } = await openAlerter(t, hook.url);
  alerter.notify(failover(clock.now()));
  await alerter.flush(5_000);
  clock.advance(7 * MIN + 12_000);
  alerter.notify(recovery(clock.now()));
  const s = await alerter.flush(5_000);
  const [fired, resolved] = await hook.waitFor(2);
  assert.equal(hook.received.length, 2);
  assert.ok(fired!.verified && resolved!.verified);
  assert.deepEqual(s.channels.map((c) => [c.channel, c.kind, c.delivered, c.pending]), [["webhook-0", "webhook", 2, 0]], "no mail channel: to is empty");

  const f = fired!.json;
  assert.deepEqual(
    { version: f.version, kind: f.kind, state: f.state, severity: f.severity, subject: f.subject, box: f.box, summary: f.summary, why: f.why, at: f.at },
    { version: 1, kind: "failover", state: "firing", severity: "warning", subject: `route:${ROUTE}`, box: "gpu-box-1", summary: "llama-3.1-8b failed over to tier 1 (gpu2)", why: "connect: connect ECONNREFUSED 127.0.0.1:8000", at: new Date(T0).toISOString() },
  );
  assert.deepEqual(f.labels, { alertname: "LlmsupFailover", box: "gpu-box-1", route: ROUTE, backend: "vllm-gpu0", severity: "warning" });
  assert.equal(f.what, "Route llama-3.1-8b moved from tier 0 (vllm-gpu0) to tier 1 (gpu2).");
  assert.match(String(f.action), /Requests go to tier 1 \(gpu2\) meanwhile/);
  assert.match(String(f.text), /^What: {3}Route llama-3\.1-8b moved from tier 0/);
  assert.equal(fired!.headers["x-llmsup-delivery"], f.id);
  assert.match(String(f.id), /^\d{12}-\d+$/);

  const r = resolved!.json;
  assert.deepEqual([r.kind, r.state, r.summary], ["recovery", "resolved", "llama-3.1-8b recovered on tier 0 (vllm-gpu0) after 7m12s"]);
  assert.equal((r.labels as Record<string, string>).alertname, "LlmsupFailover", "the labels of the alert it resolves");
  await waitUntil("an empty outbox on disk", () => outboxFiles(dir).length === 0);
});

test("receiver down: messages wait on disk, arrive in order once it is back, and after an alerter restart", async (t) => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/hook`;
  const dir = tempDir(t);
  const first = await openAlerter(t, url, { dir });
  first.alerter.notify(failover(T0));
  const down = await first.alerter.flush(2_000);
  const ch = down.channels[0]!;
  assert.deepEqual([ch.pending, ch.delivered, ch.failures, ch.lastError?.failure.llmsupCode, ch.lastError?.failure.cause], [1, 0, 1, "LLMSUP_E_ALERT_RECEIVER_UNREACHABLE", "ECONNREFUSED"]);
  assert.equal(ch.nextAttemptAt, T0 + 1_000, "backs off");
  assert.equal(outboxFiles(dir).length, 1);
  assert.ok(!readFileSync(path.join(dir, "alerts", "outbox-webhook-0", outboxFiles(dir)[0]!), "utf8").includes(SECRET), "the secret is not in the outbox");

  // Back: the retry delivers it.
  let hook = await startWebhookReceiver(t, SECRET, { port });
  first.clock.advance(1_000);
  await hook.waitFor(1);
  await waitUntil("an empty outbox", () => first.alerter.status().pending === 0 && outboxFiles(dir).length === 0);
  assert.equal(first.alerter.status().channels[0]!.failures, 0);

  // Down again; two more, then llmsup restarts before it is back.
  await hook.close();
  const fatal = everyKind(T0).find((e) => e.kind === "backend_fatal")!;
  first.alerter.notify({ ...fatal, at: T0 + 2_000 });
  first.alerter.notify(recovery(T0 + 3_000));
  assert.equal((await first.alerter.flush(2_000)).pending, 2);
  await first.alerter.close();
  assert.equal(outboxFiles(dir).length, 2, "both on disk across the restart");

  hook = await startWebhookReceiver(t, SECRET, { port });
  const second = await openAlerter(t, url, { dir, clock: new ManualClock(T0 + 10 * MIN) });
  const got = await hook.waitFor(2);
  assert.deepEqual(got.map((h) => [h.json.kind, h.json.state]), [["backend_fatal", "firing"], ["recovery", "resolved"]], "in order");
  assert.ok(got.every((h) => h.verified));
  assert.equal(second.log.lines().find((l) => l.event === "alert.outbox.resumed")?.channel, "webhook-0");
  await waitUntil("an empty outbox after the restart", () => second.alerter.status().pending === 0 && outboxFiles(dir).length === 0);
});

test("a 400 is a refusal for good: the message moves to rejected/ and is not retried, and the queue goes on", async (t) => {
  const hook = await startWebhookReceiver(t, SECRET);
  hook.answer = 400;
  const { alerter, clock, dir, log } = await openAlerter(t, hook.url);
  alerter.notify(failover(clock.now()));
  const s = await alerter.flush(5_000);
  const ch = s.channels[0]!;
  assert.deepEqual([ch.rejected, ch.pending, ch.failures, ch.lastError?.failure.llmsupCode, ch.lastError?.failure.response], [1, 0, 0, "LLMSUP_E_ALERT_RECEIVER_REJECTED", "400 unknown field"]);
  assert.equal(outboxFiles(dir, "rejected").length, 1, "kept in rejected/");
  assert.equal(outboxFiles(dir).length, 0);
  assert.equal(log.lines().find((l) => l.event === "alert.rejected")?.channel, "webhook-0");
  clock.advance(10 * MIN);
  await alerter.flush(1_000);
  assert.equal(hook.requests, 1, "never retried");

  hook.answer = 200;
  alerter.notify(recovery(clock.now()));
  await hook.waitFor(1);
  assert.equal(hook.received[0]!.json.kind, "recovery");
});

test("mail and a webhook side by side: each channel has its own queue and status; a webhook that is down holds up no mail", async (t) => {
  const smtp = await startSmtp(t);
  const port = await freePort();
  const { alerter } = await openAlerter(t, `http://127.0.0.1:${port}/hook`, { smtpPort: smtp.port });
  alerter.notify(failover(T0));
  await smtp.waitFor(1);
  // The clock stands still: the webhook's first attempt failed and its retry waits.
  const s = await waitUntil("mail delivered and the webhook backing off", () => {
    const st = alerter.status();
    return st.channels[0]!.delivered === 1 && st.channels[0]!.pending === 0 && st.channels[1]!.nextAttemptAt !== undefined && st;
  });
  assert.equal(smtp.mails[0]!.subject, "[llmsup] gpu-box-1: llama-3.1-8b failed over to tier 1 (gpu2)");
  const channels = s.channels.map(alertChannelStatus);
  assert.deepEqual(
    channels.map((c) => ({ ...c, last_delivered_at: c.last_delivered_at !== null })),
    [
      { channel: "smtp", pending: 0, delivered: 1, failed_attempts: 0, rejected: 0, dropped: 0, failing: false, last_error_code: null, last_error: null, last_delivered_at: true },
      { channel: "webhook-0", pending: 1, delivered: 0, failed_attempts: 1, rejected: 0, dropped: 0, failing: true, last_error_code: "LLMSUP_E_ALERT_RECEIVER_UNREACHABLE", last_error: "ECONNREFUSED", last_delivered_at: false },
    ],
  );
  assert.deepEqual([s.pending, s.delivered], [1, 1], "the totals add the channels up");
});
