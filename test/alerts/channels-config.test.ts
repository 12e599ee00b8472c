/** [alerts.alertmanager] and [[alerts.webhook]]: validation with clear problems, secrets by file only, and test-alert over every channel. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { Alerter } from "../../src/alerts/alerter.ts";
import { testAlertCommand } from "../../src/cli/test-alert.ts";
import { decideHostChecks, hostNeeds, type HostFacts, type PathFact } from "../../src/config/host-checks.ts";
import { validateConfigText } from "../../src/config/load.ts";
import type { Config, ConfigProblem } from "../../src/config/types.ts";
import { runIo } from "../helpers/cli.ts";
import { freePort } from "../helpers/sim.ts";
import { memoryLogger } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";
import { T0 } from "./fixtures.ts";
import { alertsConfig, alertsToml, ManualClock, realDelivery } from "./helpers.ts";
import { alertmanagerMissing, startAlertmanager, startWebhookReceiver } from "./receivers.ts";

/** A whole configuration, alerts enabled, mail to nobody, `channels` added to [alerts]. */
function problems(channels: string, to: string[] = []): readonly ConfigProblem[] {
  const r = validateConfigText(alertsToml(25, { to, criticalTo: [], alerts: `enabled = true\n${channels}` }), { hostname: "gpu-box-1" });
  return r.ok ? [] : r.problems;
}

const brief = (ps: readonly ConfigProblem[]) => ps.map((p) => `${p.path} ${p.rule}`);

test("alerts may go to Alertmanager or a webhook without mail; with no channel at all, alerts.to is missing", () => {
  assert.deepEqual(problems('[alerts.alertmanager]\nurl = "http://127.0.0.1:9093"'), []);
  assert.deepEqual(problems('[[alerts.webhook]]\nurl = "https://hooks.example.com/x"\nsecret_file = "/etc/llmsup/hook"'), []);
  const none = problems("");
  assert.deepEqual(brief(none), ["alerts.to missing"]);
  assert.match(none[0]!.expected!, /an \[alerts\.alertmanager\] url or an \[\[alerts\.webhook\]\]/);
  const c = alertsConfig(25, { to: [], criticalTo: [], alerts: '[alerts.alertmanager]\nurl = ["http://am1:9093", "http://am2:9093/prefix"]' }).alertmanager!;
  assert.deepEqual([c.url, c.timeout, c.resend_interval], [["http://am1:9093", "http://am2:9093/prefix"], 10_000, 60_000], "a list of URLs; defaults 10s and 1m");
});

test("bad URLs, credentials in a URL, a missing secret_file, half of basic auth and clashing names are each a clear problem", () => {
  const bad = problems('[alerts.alertmanager]\nurl = "am.example.com:9093"\n[[alerts.webhook]]\nurl = "ftp://hooks.example.com/x"\nsecret_file = "/etc/llmsup/hook"');
  assert.deepEqual(brief(bad).sort(), ["alerts.alertmanager.url invalid", "alerts.webhook[0].url invalid"].sort(), JSON.stringify(bad));
  for (const p of bad) assert.match(p.message, /expected an http\(s\) URL/);
  assert.deepEqual(brief(problems('[alerts.alertmanager]\nurl = "http://llmsup:pw-9981@am:9093"')), ["alerts.alertmanager.url inline_secret"]);
  assert.deepEqual(brief(problems('[[alerts.webhook]]\nurl = "https://hooks.example.com/x"')), ["alerts.webhook[0].secret_file missing"]);
  assert.deepEqual(brief(problems('[[alerts.webhook]]\nurl = "https://hooks.example.com/x"\nsecret_file = "relative/path"')).map((s) => s.split(" ")[0]), ["alerts.webhook[0].secret_file"]);
  assert.deepEqual(brief(problems('[alerts.alertmanager]\nurl = "http://am:9093"\npassword_file = "/etc/llmsup/am"')), ["alerts.alertmanager.username missing"]);
  assert.deepEqual(brief(problems('[alerts.alertmanager]\nurl = "http://am:9093"\nbearer_token_file = "/etc/llmsup/t"\nusername = "u"\npassword_file = "/etc/llmsup/am"')), ["alerts.alertmanager.bearer_token_file conflict"]);
  const hooks = '[[alerts.webhook]]\nurl = "https://a.example.com/"\nsecret_file = "/s"\n[[alerts.webhook]]\nname = "webhook-0"\nurl = "https://b.example.com/"\nsecret_file = "/s"\n[[alerts.webhook]]\nname = "alertmanager"\nurl = "https://c.example.com/"\nsecret_file = "/s"';
  assert.deepEqual(brief(problems(hooks)), ["alerts.webhook[1].name duplicate", "alerts.webhook[2].name duplicate"]);
});

test("an unreadable secret file stops the alerter with LLMSUP_E_SECRET_UNREADABLE naming the key, never a value", async (t) => {
  const dir = tempDir(t);
  const open = (alerts: string) =>
    Alerter.open({ config: alertsConfig(25, { to: [], criticalTo: [], alerts }), hostname: "gpu-box-1", stateDir: dir, logger: memoryLogger().logger, clock: new ManualClock(T0), env: {}, ...realDelivery });
  await assert.rejects(open(`[[alerts.webhook]]\nurl = "http://127.0.0.1:9/"\nsecret_file = "${dir}/absent"`), (e: Error & { code?: string }) => {
    assert.equal(e.code, "LLMSUP_E_SECRET_UNREADABLE");
    assert.match(e.message, /the webhook secret from alerts\.webhook \(webhook-0\) secret_file .*absent: no such file/);
    return true;
  });
  writeFileSync(path.join(dir, "empty"), "\n");
  await assert.rejects(open(`[alerts.alertmanager]\nurl = "http://127.0.0.1:9/"\nbearer_token_file = "${dir}/empty"`), /alerts\.alertmanager\.bearer_token_file .*empty is empty/);
});

test("test-alert tries every channel and says which got it: a webhook that took it, one that is down", async (t) => {
  const dir = tempDir(t);
  const secret = path.join(dir, "hook-secret");
  writeFileSync(secret, "whsec-test-alert-1\n", { mode: 0o600 });
  const hook = await startWebhookReceiver(t, "whsec-test-alert-1");
  const downPort = await freePort();
  const file = path.join(dir, "supervisor.toml");
  const am = alertmanagerMissing() ? undefined : await startAlertmanager(t);
  const amSection = am ? `[alerts.alertmanager]\nurl = "${am.url}"\n` : "";
  writeFileSync(
    file,
    alertsToml(25, {
      to: [],
      criticalTo: [],
      alerts: `${amSection}[[alerts.webhook]]\nname = "chatops"\nurl = "${hook.url}"\nsecret_file = "${secret}"\n[[alerts.webhook]]\nurl = "http://127.0.0.1:${downPort}/"\nsecret_file = "${secret}"\ntimeout = "2s"`,
    }),
  );
  const io = await runIo((x) => testAlertCommand({ config: file }, x), { NO_COLOR: "1" });
  assert.equal(io.code, 69);
  assert.match(io.stdout, /^test alert sent to chatops \(http:\/\/127\.0\.0\.1:\d+\/hook\) in \d+ ms$/m);
  assert.match(io.stderr, /^error LLMSUP_E_ALERT_RECEIVER_UNREACHABLE: cannot send the test alert to webhook-1 \(http:\/\/127\.0\.0\.1:\d+\/\): ECONNREFUSED/m);
  const [got] = await hook.waitFor(1);
  assert.deepEqual([got!.verified, got!.json.kind, got!.json.state, (got!.json.labels as Record<string, string>).alertname], [true, "test", "notice", "LlmsupTestAlert"]);
  if (am) {
    assert.match(io.stdout, /^test alert sent to alertmanager \(http:\/\/127\.0\.0\.1:\d+\) in \d+ ms$/m);
    const alerts = await am.alerts();
    assert.deepEqual(alerts.map((a) => [a.labels.alertname, a.status.state]), [["LlmsupTestAlert", "active"]]);
  } else t.diagnostic(alertmanagerMissing()!);

  const json = await runIo((x) => testAlertCommand({ config: file, json: true }, x), { NO_COLOR: "1" });
  assert.equal(json.code, 69);
  const r = JSON.parse(json.stdout) as { sent: boolean; code: string; channels: { channel: string; sent: boolean; code?: string }[] };
  assert.deepEqual([r.sent, r.code], [false, "LLMSUP_E_ALERT_RECEIVER_UNREACHABLE"]);
  assert.deepEqual(
    r.channels.map((c) => [c.channel, c.sent, c.code ?? null]),
    [...(am ? [["alertmanager", true, null]] : []), ["chatops", true, null], ["webhook-1", false, "LLMSUP_E_ALERT_RECEIVER_UNREACHABLE"]],
  );
});

test("check-config's host checks cover the channels' secret files: missing is an error with alerts on, a warning with them off", () => {
  const text = (enabled: boolean) =>
    alertsToml(25, { to: [], criticalTo: [], alerts: `enabled = ${enabled}\n[alerts.alertmanager]\nurl = "http://127.0.0.1:9093"\nbearer_token_file = "/etc/llmsup/am-token"\n[[alerts.webhook]]\nurl = "https://hooks.example.com/x"\nsecret_file = "/etc/llmsup/hook-secret"` }).replace(/password_env = .*\n/, "");
  const facts = (c: Config): HostFacts => ({
    env: { PATH: "/usr/bin" },
    cwd: "/",
    daemon: { name: "llmsup", uid: 990, gids: [990] },
    checkerUid: 0,
    users: new Map(),
    groups: new Map(),
    paths: new Map<string, PathFact>([
      ["/", { kind: "dir", mode: 0o755, uid: 0, gid: 0 }],
      ["/etc", { kind: "dir", mode: 0o755, uid: 0, gid: 0 }],
      ["/etc/llmsup", { kind: "dir", mode: 0o750, uid: 0, gid: 990 }],
      ["/etc/llmsup/am-token", { kind: "file", mode: 0o640, uid: 0, gid: 990 }],
      ...[...hostNeeds(c, {}, "/").paths].filter((p) => p === "/etc/llmsup/hook-secret").map((p): [string, PathFact] => [p, { error: "ENOENT" }]),
    ]),
    ports: new Map(),
  });
  const on = validateConfigText(text(true));
  const off = validateConfigText(text(false));
  assert.ok(on.ok && off.ok);
  const r = decideHostChecks(on.config, facts(on.config));
  assert.deepEqual(r.errors.map((p) => `${p.path} ${p.rule}`), ["alerts.webhook[0].secret_file secret_unreadable"]);
  assert.match(r.errors[0]!.message, /cannot read \/etc\/llmsup\/hook-secret/);
  const soft = decideHostChecks(off.config, facts(off.config));
  assert.deepEqual([soft.errors.length, soft.warnings.map((p) => `${p.path} ${p.rule}`)], [0, ["alerts.webhook[0].secret_file secret_unreadable"]]);
});
