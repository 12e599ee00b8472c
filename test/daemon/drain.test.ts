/** `llmsup drain` / `undrain`: a backend out of rotation on purpose — no client error, no failover mail, DRAINED in status (WARNING), one "drained by" event, kept across a daemon restart. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Agent } from "undici";
import { startDaemon, status, waitStatus, requestPump, writeDaemonConfig, type RunningDaemon } from "../helpers/daemon.ts";
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

/** One streamed chat through the router socket: resolves `firstToken` at its first content token and `done` with the whole answer. */
function streamOne(t: { after(fn: () => void | Promise<void>): void }, socket: string, model: string) {
  const agent = new Agent({ connect: { socketPath: socket } });
  t.after(() => agent.close());
  let first!: () => void;
  const firstToken = new Promise<void>((r) => (first = r));
  const done = (async () => {
    const res = await agent.request({ origin: "http://llmsup", path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model, stream: true, messages: [{ role: "user", content: "Tell me about drains." }] }) });
    let raw = "";
    for await (const chunk of res.body) {
      raw += (chunk as Buffer).toString("utf8");
      if (/"content":"[^"]/.test(raw)) first();
    }
    const finish = [...raw.matchAll(/"finish_reason":"(\w+)"/g)].map((m) => m[1]);
    return { status: res.statusCode, tier: res.headers["x-llmsup-tier"], finish: finish.at(-1), done: raw.trimEnd().endsWith("data: [DONE]"), endedAt: Date.now() };
  })();
  return { firstToken, done };
}

test("drain with a slow stream on the primary: the answer says 1 request is still on it, status shows it; --wait --timeout 1s gives up with exit 75 naming it; --wait returns once the stream ended whole, while new requests went to the fallback", async (t) => {
  const files = await writeDaemonConfig(
    t,
    [{ name: "primary", kind: "llamacpp", args: ["--token-rate", "5"] }, { name: "fallback", kind: "llamacpp" }],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`,
  );
  const d = await startDaemon(t, files);
  await waitStatus(d, "both ready, on tier 0", (s) => s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0, 20_000);

  // A stream of 20 to 39 tokens at 5 a second: 4 s or more on the primary.
  const slow = streamOne(t, files.socket, "llama");
  await slow.firstToken;
  const drained = await d.cli("drain", "primary");
  assert.equal(drained.code, 0, drained.stderr);
  assert.match(drained.stdout, /^primary: drained by \S+ since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; 1 request still on it \(they finish\), new ones go to the next tier\./);
  const s = await status(d);
  const row = s.json.backends.find((b) => b.name === "primary") as unknown as { inflight: number; drained: unknown };
  assert.ok(row.drained);
  assert.equal(row.inflight, 1, "status --json: 1 request in flight on the drained primary");
  assert.match((await d.cli("status")).stdout, /drained by \S+: 1 in flight — `llmsup undrain primary`/);

  // Not long enough: exit 75, and how many are left.
  const impatient = await d.cli("drain", "primary", "--wait", "--timeout", "1s");
  assert.equal(impatient.code, 75, impatient.stdout + impatient.stderr);
  assert.match(impatient.stderr, /^llmsup drain primary: LLMSUP_E_DRAIN_TIMEOUT: 1 request still on primary after 1s; it stays drained/);

  // Long enough: back once the stream is over; meanwhile new requests go to tier 1.
  const waitStarted = Date.now();
  const waiting = d.cli("drain", "primary", "--wait").then((r) => ({ ...r, at: Date.now() }));
  const { answers } = requestPump(t, files.socket, "llama", 100);
  const answer = await slow.done;
  const waited = await waiting;
  assert.equal(waited.code, 0, waited.stdout + waited.stderr);
  assert.match(waited.stdout, /primary: drained and idle( after \S+)?: safe for maintenance/);
  assert.ok(waited.at >= answer.endedAt - 50, `--wait returned ${answer.endedAt - waited.at} ms before the stream ended`);
  assert.ok(waited.at - waitStarted >= 1_000, "--wait waited for the stream");
  assert.deepEqual({ status: answer.status, tier: answer.tier, finish: answer.finish, done: answer.done }, { status: 200, tier: "0", finish: "stop", done: true }, "the stream on the drained primary finished whole");
  assert.ok(answers.length >= 3, `requests went on meanwhile (${answers.length})`);
  assert.deepEqual(new Set(answers.map((a) => `${a.status} tier ${a.tier}`)), new Set(["200 tier 1"]), "new requests went to the fallback");
  const after = (await status(d)).json.backends.find((b) => b.name === "primary") as unknown as { inflight: number };
  assert.equal(after.inflight, 0);
  assert.match((await d.cli("status")).stdout, /drained by \S+: idle — `llmsup undrain primary`/);
});
