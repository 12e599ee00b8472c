/** The Alertmanager channel: labels and the alert lifecycle (pure), then the Alerter against a real Alertmanager on loopback. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { readdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import path from "node:path";
import { Alerter } from "../../src/alerts/alerter.ts";
import { alertChanges, alertsEndpoint, toPost, type QueuedAlert } from "../../src/alerts/alertmanager.ts";
import type { AlertEvent } from "../../src/alerts/events.ts";
import { httpFailure } from "../../src/alerts/http-post.ts";
import { ALERT_NAMES, alertLabels } from "../../src/alerts/labels.ts";
import { decide, initialPolicyState, type PolicyState } from "../../src/alerts/policy.ts";
import { freePort } from "../helpers/sim.ts";
import { memoryLogger } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";
import { waitUntil } from "../helpers/wait.ts";
import { everyKind, failover, MIN, recovery, ROUTE, T0 } from "./fixtures.ts";
import { alertsConfig, ManualClock, realDelivery } from "./helpers.ts";
import { alertmanagerMissing, startAlertmanager } from "./receivers.ts";

const CFG = { coalesceWindowMs: 10 * MIN, maxPerHour: 30 };
const BOX = "gpu-box-1";

/** Runs events through the policy, returning each step's Alertmanager changes. */
function steps(events: readonly AlertEvent[], resendMs = MIN): QueuedAlert[][] {
  let st: PolicyState = initialPolicyState();
  return events.map((e) => {
    const next = decide(st, e, e.at, CFG).state;
    const out = alertChanges(st, next, e, e.at, BOX, resendMs);
    st = next;
    return out;
  });
}

const iso = (ms: number) => new Date(ms).toISOString();

test("every event kind has its own stable CamelCase alertname, and labels are only the bounded ones that apply", () => {
  const names = Object.values(ALERT_NAMES);
  assert.equal(new Set(names).size, names.length, "one name per kind");
  for (const n of names) assert.match(n, /^Llmsup[A-Z][A-Za-z]+$/);
  assert.deepEqual(alertLabels(failover(T0), BOX), { alertname: "LlmsupFailover", box: BOX, route: ROUTE, backend: "vllm-gpu0", severity: "warning" });
  const byKind = Object.fromEntries(everyKind(T0).map((e) => [e.kind, alertLabels(e, BOX)]));
  assert.deepEqual(byKind.all_tiers_down, { alertname: "LlmsupAllTiersDown", box: BOX, route: ROUTE, severity: "critical" });
  assert.deepEqual(byKind.backend_fatal, { alertname: "LlmsupBackendFatal", box: BOX, backend: "vllm-gpu0", severity: "critical" });
  assert.deepEqual(byKind.gpu_fault, { alertname: "LlmsupGpuFault", box: BOX, gpu: "0", fault: "thermal", severity: "critical" });
  assert.deepEqual(byKind.gpu_reboot_required, { alertname: "LlmsupGpuRebootRequired", box: BOX, gpu: "0", severity: "critical" });
  assert.deepEqual(byKind.daemon_started, { alertname: "LlmsupDaemonStarted", box: BOX, severity: "info" });
  for (const [kind, labels] of Object.entries(byKind)) {
    for (const [k, v] of Object.entries(labels)) assert.ok(v.length <= 64 && !/\s/.test(v), `${kind}: label ${k}=${JSON.stringify(v)} is no free text`);
  }
});

test("a raise fires from when it was raised; going further down ends the old alert and fires the new; the recovery ends it at the clear time", () => {
  const allDown: AlertEvent = { kind: "all_tiers_down", at: T0 + 2 * MIN, route: ROUTE, tiers: [], retryAfterMs: 10_000 };
  const [raised, repeat, escalated, cleared] = steps([failover(T0), failover(T0 + MIN), allDown, recovery(T0 + 7 * MIN)]);
  assert.equal(raised!.length, 1);
  assert.deepEqual(raised![0]!.labels, alertLabels(failover(T0), BOX));
  assert.deepEqual({ startsAt: raised![0]!.startsAt, endsAt: raised![0]!.endsAt }, { startsAt: iso(T0), endsAt: null }, "fires with no end of its own until posted");
  assert.deepEqual(Object.keys(raised![0]!.annotations), ["summary", "what", "why", "action"]);
  assert.equal(raised![0]!.annotations.summary, "llama-3.1-8b failed over to tier 1 (gpu2)");
  assert.match(raised![0]!.annotations.action!, /Requests go to tier 1 \(gpu2\) meanwhile/);
  assert.deepEqual(repeat, [], "a repeat of the same state changes nothing");
  assert.deepEqual(
    escalated!.map((a) => [a.labels.alertname, a.startsAt, a.endsAt]),
    [
      ["LlmsupFailover", iso(T0), iso(T0 + 2 * MIN)],
      ["LlmsupAllTiersDown", iso(T0 + 2 * MIN), null],
    ],
  );
  assert.deepEqual(cleared!.map((a) => [a.labels.alertname, a.startsAt, a.endsAt]), [["LlmsupAllTiersDown", iso(T0 + 2 * MIN), iso(T0 + 7 * MIN)]]);
});

test("a notice is one short-lived alert that ends a resend interval after it happened", () => {
  const started: AlertEvent = { kind: "daemon_started", at: T0, version: "1.0.0", pid: 42, config: "/etc/llmsup/supervisor.toml" };
  const [out] = steps([started], 2 * MIN);
  assert.deepEqual(out!.map((a) => [a.labels.alertname, a.startsAt, a.endsAt]), [["LlmsupDaemonStarted", iso(T0), iso(T0 + 2 * MIN)]]);
});

test("as posted, a firing alert ends four resend intervals later and an ended one keeps its end; the endpoint keeps a path prefix", () => {
  const firing: QueuedAlert = { labels: { alertname: "LlmsupFailover" }, annotations: {}, startsAt: iso(T0), endsAt: null };
  const ended: QueuedAlert = { ...firing, endsAt: iso(T0 + MIN) };
  assert.deepEqual(toPost([firing, ended], T0 + 5 * MIN, MIN).map((a) => a.endsAt), [iso(T0 + 9 * MIN), iso(T0 + MIN)]);
  assert.equal(alertsEndpoint("http://am:9093"), "http://am:9093/api/v2/alerts");
  assert.equal(alertsEndpoint("http://am:9093/alertmanager/"), "http://am:9093/alertmanager/api/v2/alerts");
});

test("a receiver's answer: 5xx, 408 and 429 are retried; any other 4xx or a redirect is a refusal for good", () => {
  const retried = [500, 503, 408, 429].map((s) => httpFailure(s, "", "POST x"));
  for (const f of retried) assert.deepEqual([f.llmsupCode, f.messageRejected], ["LLMSUP_E_ALERT_RECEIVER_UNREACHABLE", false], f.code);
  const refused = [400, 401, 404, 422, 302].map((s) => httpFailure(s, "bad  request\n", "POST x"));
  for (const f of refused) assert.deepEqual([f.llmsupCode, f.messageRejected], ["LLMSUP_E_ALERT_RECEIVER_REJECTED", true], f.code);
  assert.equal(httpFailure(400, "token s3cret-token-x rejected", "POST x", ["s3cret-token-x"]).response, "400 token [redacted] rejected");
});

const skip = alertmanagerMissing();

async function openAlerter(t: Parameters<typeof tempDir>[0], url: string, clock: ManualClock, dir = tempDir(t)) {
  const log = memoryLogger();
  const alerter = await Alerter.open({
    config: alertsConfig(1, { to: [], criticalTo: [], alerts: `[alerts.alertmanager]\nurl = "${url}"\ntimeout = "2s"\nresend_interval = "1m"` }),
    hostname: BOX,
    stateDir: dir,
    logger: log.logger,
    clock,
    env: {},
    ...realDelivery,
    timeZone: "UTC",
    retry: { baseMs: 1_000, maxMs: 8_000 },
  });
  t.after(() => alerter.close());
  return { alerter, log, dir };
}

test("a failover raised through the alerter is active in a real Alertmanager with its labels and annotations, re-posted each resend interval, and resolved by the recovery", { skip }, async (t) => {
  const am = await startAlertmanager(t);
  // Alertmanager judges endsAt by its own clock: the test's starts two minutes back so that the recovery lies in the past.
  const clock = new ManualClock(Date.now() - 2 * MIN);
  const raisedAt = clock.now();
  const { alerter } = await openAlerter(t, am.url, clock);
  alerter.notify(failover(raisedAt));
  const s = await alerter.flush(5_000);
  assert.deepEqual(s.channels.map((c) => [c.channel, c.delivered, c.pending]), [["alertmanager", 1, 0]], "no mail channel: to is empty");

  const [active] = await am.alerts();
  assert.ok(active, "the failover is in Alertmanager");
  assert.equal(active.status.state, "active");
  assert.deepEqual(active.labels, { alertname: "LlmsupFailover", box: BOX, route: ROUTE, backend: "vllm-gpu0", severity: "warning" });
  assert.equal(active.annotations.summary, "llama-3.1-8b failed over to tier 1 (gpu2)");
  assert.equal(active.annotations.why, "connect: connect ECONNREFUSED 127.0.0.1:8000");
  assert.match(active.annotations.action!, /Requests go to tier 1 \(gpu2\) meanwhile/);
  assert.equal(Date.parse(active.startsAt), raisedAt, "startsAt = when it was raised");
  assert.equal(Date.parse(active.endsAt), raisedAt + 4 * MIN, "endsAt = now + 4 resend intervals");
  await waitUntil("Alertmanager's firing notification", () => am.notifications.some((n) => n.status === "firing" && n.alerts[0]?.labels.alertname === "LlmsupFailover"));

  // One resend interval on: posted again, its end pushed on.
  clock.advance(MIN);
  await waitUntil("the re-post", async () => Date.parse((await am.alerts())[0]?.endsAt ?? "") === raisedAt + 5 * MIN);
  await waitUntil("the re-post counted", () => alerter.status().delivered === 2);

  alerter.notify(recovery(clock.now()));
  await alerter.flush(5_000);
  assert.deepEqual(await am.alerts(), [], "no longer active");
  const resolved = await waitUntil("Alertmanager's resolved notification", () => am.notifications.find((n) => n.status === "resolved"));
  assert.deepEqual(resolved.alerts.map((a) => [a.labels.alertname, a.labels.route, Date.parse(a.endsAt)]), [["LlmsupFailover", ROUTE, raisedAt + MIN]], "ended at the recovery");
});

test("Alertmanager down at first: the alert waits in its outbox and arrives once Alertmanager is up", { skip }, async (t) => {
  const port = await freePort();
  const am = await startAlertmanager(t, { port, started: false });
  const clock = new ManualClock(Date.now());
  const { alerter, log, dir } = await openAlerter(t, am.url, clock);
  alerter.notify(failover(clock.now()));
  const down = await alerter.flush(2_000);
  const ch = down.channels[0]!;
  assert.deepEqual([ch.channel, ch.pending, ch.delivered, ch.failures > 0, ch.lastError?.failure.llmsupCode], ["alertmanager", 1, 0, true, "LLMSUP_E_ALERT_RECEIVER_UNREACHABLE"]);
  assert.equal(readdirSync(path.join(dir, "alerts", "outbox-alertmanager")).filter((f) => f.endsWith(".json")).length, 1, "on disk");
  const failed = log.lines().find((l) => l.event === "alert.delivery.failed")!;
  assert.equal(failed.channel, "alertmanager");

  await am.start();
  clock.advance(1_000);
  await waitUntil("the alert in Alertmanager", async () => (await am.alerts()).length === 1);
  const [a] = await am.alerts();
  assert.deepEqual([a!.labels.alertname, a!.status.state, Date.parse(a!.startsAt)], ["LlmsupFailover", "active", clock.now() - 1_000]);
  await waitUntil("an empty outbox", () => alerter.status().pending === 0);
  assert.equal(alerter.status().channels[0]!.failures, 0);
});

test("the bearer token reaches Alertmanager and nothing else: an answer quoting it is scrubbed from status and the log", async (t) => {
  const token = "amtok-Harbor-5512-secret";
  const dir = tempDir(t);
  writeFileSync(path.join(dir, "am-token"), `${token}\n`, { mode: 0o600 });
  const seen: (string | undefined)[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers.authorization);
    req.resume();
    req.on("end", () => {
      res.statusCode = seen.length === 1 ? 503 : 200;
      res.end(seen.length === 1 ? `overloaded, your header was ${req.headers.authorization}` : "");
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const log = memoryLogger();
  const clock = new ManualClock(T0);
  const alerter = await Alerter.open({
    config: alertsConfig(1, { to: [], criticalTo: [], alerts: `[alerts.alertmanager]\nurl = "${url}"\nbearer_token_file = "${dir}/am-token"` }),
    hostname: BOX,
    stateDir: dir,
    logger: log.logger,
    clock,
    env: {},
    ...realDelivery,
    retry: { baseMs: 1_000, maxMs: 8_000 },
  });
  t.after(() => alerter.close());
  alerter.notify(failover(T0));
  const down = await alerter.flush(3_000);
  assert.equal(down.lastError?.failure.response, "503 overloaded, your header was Bearer [redacted]");
  clock.advance(1_000);
  await waitUntil("delivered on the retry", () => alerter.status().delivered === 1);
  assert.deepEqual(seen, [`Bearer ${token}`, `Bearer ${token}`]);
  const surfaces = [JSON.stringify(alerter.status()), JSON.stringify(log.lines()), ...readdirSync(path.join(dir, "alerts"), { recursive: true }).map(String)];
  for (const s of surfaces) assert.ok(!s.includes(token), `the token leaked: ${s.slice(0, 200)}`);
});
