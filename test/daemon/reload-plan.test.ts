import { test } from "node:test";
import assert from "node:assert/strict";
import { changeLine, refusalOf, reloadStatus, reloadSummary, restartNotes, settingChanges } from "../../src/daemon/reload-plan.ts";
import { LlmsupError } from "../../src/errors/error.ts";
import { testConfig } from "../helpers/supervise.ts";

const base = (extra: string, backend = "", tier = "") =>
  testConfig(
    "/tmp/llmsup-reload-plan",
    `${extra}\n[[backend]]\nname = "a"\nkind = "openai"\nurl = "http://127.0.0.1:1"\n${backend}\n[[route]]\nmodel = "m"\ntiers = [{ backend = "a", model = "m"${tier} }]\n`,
  );

test("reload plan: an identical configuration changes nothing", () => {
  assert.deepEqual(settingChanges(base(""), base("")), []);
  assert.deepEqual(restartNotes(base(""), base("")), []);
});

test("reload plan: nested keys are named by their path, durations read as durations, live ones are applied", () => {
  const lines = settingChanges(base(""), base(`[router]\nrecovery_hold = "5s"\n[router.breaker]\nopen_interval = "10s"\n[alerts]\nenabled = true\nto = ["ops@example.com"]`, "", `, ttft_timeout = "60s"`)).map(changeLine);
  assert.ok(lines.includes("router.recovery_hold 1s → 5s (applied)"), lines.join("\n"));
  assert.ok(lines.includes("router.breaker.open_interval 30s → 10s (applied)"), lines.join("\n"));
  assert.ok(lines.includes("alerts.enabled false → true (applied)"), lines.join("\n"));
  assert.ok(lines.includes('alerts.to [] → ["ops@example.com"] (applied)'), lines.join("\n"));
  assert.ok(lines.some((l) => /^route m: tiers\[0\]\.ttft_timeout \S+ → 1m \(applied\)$/.test(l)), lines.join("\n"));
});

test("reload plan: a backend's settings are named after it; added and removed backends are listed", () => {
  const lines = settingChanges(base(""), base("", `[backend.health]\ninterval = "2s"`)).map(changeLine);
  assert.ok(lines.some((l) => /^a: health\.interval \S+ → 2s \(applied\)$/.test(l)), lines.join("\n"));
  const added = settingChanges(base(""), base(`[[backend]]\nname = "b"\nkind = "openai"\nurl = "http://127.0.0.1:2"`)).map(changeLine);
  assert.ok(added.includes("backend b (none) → (added) (applied)"), added.join("\n"));
});

test("reload plan: secrets are never shown, only that they changed", () => {
  const lines = settingChanges(base(`[alerts.smtp]\nuser = "u"\npassword_env = "OLD_PW"`), base(`[alerts.smtp]\nuser = "u"\npassword_env = "NEW_PW"`)).map(changeLine);
  assert.deepEqual(lines, ["alerts.smtp.password_env (changed) (applied)"]);
  assert.ok(!lines.join("").includes("PW"));
});

test("reload plan: listeners, directories and the nvidia-smi process need a restart; GPU thresholds apply", () => {
  const changes = settingChanges(base(""), base(`[gpu]\ninterval = "9s"\ntemperature_limit = 80\n[router]\nlisten = "127.0.0.1:9999"\n[control]\nsocket = "/tmp/elsewhere.sock"`));
  assert.deepEqual(
    changes.filter((c) => !c.applied).map((c) => c.key),
    ["control.socket", "router.listen", "gpu.interval"],
  );
  assert.deepEqual(changes.filter((c) => c.applied).map((c) => c.key), ["gpu.temperature_limit"]);
  assert.deepEqual(restartNotes(base(""), base(`[router]\nlisten = "127.0.0.1:9999"`)), ['router.listen "127.0.0.1:8181" → "127.0.0.1:9999" (needs a restart of llmsup)']);
  assert.deepEqual(restartNotes(base(""), base(`[router]\nrecovery_hold = "5s"`)), [], "router settings other than the listeners apply at once");
});

test("reload plan: the summary counts backends and names applied and waiting settings", () => {
  const settings = settingChanges(base(""), base(`[router]\nlisten = "127.0.0.1:9999"\nrecovery_hold = "5s"`));
  assert.equal(
    reloadSummary({ unchanged: ["a"], restarted: ["b", "c"], started: [], stopped: ["d"] } as never, settings),
    "configuration reloaded: 1 unchanged, 2 restarted (b, c), 0 added, 1 removed; applied: router.recovery_hold; needs a restart of llmsup: router.listen",
  );
  assert.match(reloadSummary({ unchanged: ["a"], restarted: [], started: [], stopped: [] } as never, []), /no setting changed$/);
});

test("reload plan: a refused reload reads as its code and message with one line per problem", () => {
  const e = new LlmsupError("LLMSUP_E_CONFIG_INVALID", "2 problems in /etc/llmsup/supervisor.toml", { problems: [{ path: "router.listen", message: "not a host:port" }, { message: "no route" }] });
  const r = refusalOf(e, Date.UTC(2026, 0, 1));
  assert.deepEqual(r, { at: Date.UTC(2026, 0, 1), error: "LLMSUP_E_CONFIG_INVALID: 2 problems in /etc/llmsup/supervisor.toml", problems: ["router.listen: not a host:port", "no route"] });
  assert.deepEqual(refusalOf(new Error("EACCES: permission denied"), 0), { at: 0, error: "error: EACCES: permission denied", problems: [] });
});

test("reload plan: status names the settings that wait for a restart of llmsup and the refusal in force", () => {
  const start = base("");
  assert.deepEqual(reloadStatus(start, start, null), { needs_restart: [], refused: null });
  const next = base(`[control]\nsocket = "/tmp/llmsup-elsewhere.sock"\n[router]\nrecovery_hold = "5s"`);
  const s = reloadStatus(start, next, { at: Date.UTC(2026, 0, 1), error: "E: x", problems: ["p"] });
  assert.deepEqual(s.needs_restart, ["control.socket"]);
  assert.deepEqual(s.refused, { time: "2026-01-01T00:00:00.000Z", error: "E: x", problems: ["p"] });
});

test("reload plan: host thresholds and interval and the backend log limits apply live", () => {
  const withDaemon = (extra: string) => testConfig("/tmp/llmsup-reload-plan", `${extra}\n[[backend]]\nname = "a"\nkind = "openai"\nurl = "http://127.0.0.1:1"\n[[route]]\nmodel = "m"\ntiers = [{ backend = "a", model = "m" }]\n`);
  const prev = withDaemon("");
  const next = withDaemon(`[host]\nmin_free_disk = "2GiB"\ninterval = "10s"`);
  const logs = { ...next, daemon: { ...next.daemon, backend_log_max: 5 * 1024 * 1024, backend_log_keep: 1 } };
  const lines = settingChanges(prev, logs).map(changeLine);
  for (const key of ["host.min_free_disk", "host.interval", "daemon.backend_log_max", "daemon.backend_log_keep"]) {
    assert.ok(lines.some((l) => l.startsWith(`${key} `) && l.endsWith("(applied)")), `${key} applied:\n${lines.join("\n")}`);
  }
});
