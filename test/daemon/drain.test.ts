/** `llmsup drain` / `undrain`: a backend out of rotation on purpose — no client error, no failover mail, DRAINED in status (WARNING), one "drained by" event, kept across a daemon restart. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startDaemon, waitStatus, requestPump, writeDaemonConfig, type RunningDaemon } from "../helpers/daemon.ts";
import { SMTP_PASSWORD, SMTP_USER, startSmtp } from "../alerts/helpers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("drain primary under traffic: no client error, DRAINED and exit 1, a 'drained by' event and no failover mail; still drained after a daemon restart; undrained, back on tier 0 with no recovery mail", async (t) => {
  const smtp = await startSmtp(t);
  const files = await writeDaemonConfig(
    t,
    [{ name: "primary", kind: "llamacpp" }, { name: "fallback", kind: "llamacpp" }],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`,
    `[alerts]\nenabled = true\nfrom = "llmsup@box.example.com"\nto = ["oncall@example.com"]\n[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "TEST_SMTP_PASSWORD"\ntimeout = "3s"\n`,
  );
  const env = { TEST_SMTP_PASSWORD: SMTP_PASSWORD };
  let d: RunningDaemon = await startDaemon(t, files, env);
  const { answers } = requestPump(t, files.socket, "llama", 40);
  await waitStatus(d, "both ready, on tier 0", (s) => s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0, 20_000);
  await sleep(500);
  const from = answers.length;

  const drained = await d.cli("drain", "primary");
  assert.equal(drained.code, 0, drained.stderr);
  assert.match(drained.stdout, /primary: drained by \S+/);
  const s = await waitStatus(d, "on the fallback, WARNING", (x, code) => x.router.routes[0]!.serving_tier === 1 && code === 1);
  const primary = s.json.backends.find((b) => b.name === "primary") as unknown as { state: string; drained: { by: string } | null };
  assert.ok(primary.drained, "the backend row says drained");
  assert.equal(primary.state, "ready", "a drain leaves the process running");
  assert.match(s.json.summary.text, /^WARNING: llama on fallback tier 1 \(fallback\): tier 0 primary drained by/);
  const human = await d.cli("status");
  assert.equal(human.code, 1);
  assert.match(human.stdout, /DRAINED/);
  await sleep(1_500);
  assert.ok(answers.length > from + 10, "requests kept flowing");
  assert.deepEqual(answers.slice(from).filter((a) => a.status !== 200), [], "no client saw an error");
  assert.ok(answers.slice(-5).every((a) => a.tier === "1"), "new requests go to tier 1");
  const events = await d.cli("events");
  assert.match(events.stdout, /primary drained by \S+/);
  assert.deepEqual(smtp.mails.map((m) => m.subject).filter((x) => /failed over|recovered|back on/.test(x)), [], "no failover mail for a drain");

  // A daemon restart keeps the drain.
  process.kill(d.pid, "SIGTERM");
  await d.exited;
  d = await startDaemon(t, files, env);
  const again = await waitStatus(d, "ready again, still drained", (x) => x.backends.every((b) => b.state === "ready") && x.router.routes[0]!.serving_tier === 1, 20_000);
  assert.ok((again.json.backends.find((b) => b.name === "primary") as unknown as { drained: unknown }).drained, "still drained after a restart");
  assert.equal(again.code, 1);
  await sleep(1_500);
  const afterRestart = answers.length;
  assert.ok(answers.slice(-5).every((a) => a.tier === "1"), "still off tier 0 after the restart");

  const undrained = await d.cli("undrain", "primary");
  assert.equal(undrained.code, 0, undrained.stderr);
  await waitStatus(d, "back on tier 0, OK", (x, code) => x.router.routes[0]!.serving_tier === 0 && code === 0);
  await sleep(1_500);
  assert.deepEqual(answers.slice(afterRestart).filter((a) => a.status !== 200), [], "no client error around the undrain");
  assert.equal(answers.at(-1)!.tier, "0");
  assert.match((await d.cli("events")).stdout, /primary undrained by/);
  const subjects = smtp.mails.map((m) => m.subject);
  assert.deepEqual(subjects.filter((x) => /failed over|recovered|back on/.test(x)), [], `no failover or recovery mail for a drain: ${subjects.join(" | ")}`);
});
