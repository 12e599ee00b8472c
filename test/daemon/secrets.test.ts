/**
 * Secrets never leave, end to end: a provider key planted in a backend's api_key_file, an upstream
 * that echoes it (whole, and its head and tail) in every 401, and the daemon taking the route ALL TIERS
 * DOWN and mailing about it. No surface llmsup writes to carries the key or a piece of it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Agent } from "undici";
import { REDACTED } from "../../src/router/scrub.ts";
import { SMTP_ENV, SMTP_USER, startSmtp } from "../alerts/helpers.ts";
import { startDaemon, waitStatus } from "../helpers/daemon.ts";
import { startSim } from "../helpers/sim.ts";
import { tempDir } from "../helpers/tmp.ts";
import { waitUntil } from "../helpers/wait.ts";

/** No known key shape (no sk- prefix): only llmsup's knowledge of its own secrets can catch it. */
const KEY = "llmsup-planted-Q7mX9vK4pL8rT1wZ6yB3nC5d";
const PIECES = [KEY, KEY.slice(0, 8), KEY.slice(-8)];

/** Every file under `dir` (none when it was never made), by path, as text. */
function filesUnder(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = path.join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) out[p] = readFileSync(p, "latin1");
    }
  };
  walk(dir);
  return out;
}

test("a provider key echoed by its upstream in every 401 reaches no client body or header, log line, status, event, mail or file under state_dir and log_dir", async (t) => {
  const upstream = await startSim(t, ["--kind", "vllm", "--port", "0", "--load-time", "0s", "--model", "m", "--fault", JSON.stringify({ status: { code: 401, message: "Incorrect API key provided", echo_auth: true } })]);
  // The planted secret is in play: the upstream does echo it, whole and in pieces.
  const echoed = await fetch(`${upstream.url}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" }, body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }) });
  const echoedText = await echoed.text();
  assert.equal(echoed.status, 401);
  for (const piece of PIECES) assert.ok(echoedText.includes(piece), `the upstream echoes ${JSON.stringify(piece)}: ${echoedText}`);

  const smtp = await startSmtp(t);
  const dir = tempDir(t);
  const keyFile = path.join(dir, "provider-key");
  writeFileSync(keyFile, `${KEY}\n`, { mode: 0o600 });
  const config = path.join(dir, "supervisor.toml");
  writeFileSync(
    config,
    `[daemon]\nstate_dir = "${dir}/state"\nlog_dir = "${dir}/log"\nrun_dir = "${dir}/run"\nshutdown_timeout = "5s"\nhostname = "gpu-box-1"\nlog_level = "debug"\n\n` +
      `[router]\nsocket = "${dir}/run/api.sock"\nlisten = ""\n\n[gpu]\nenabled = false\n\n[health]\ninterval = "300ms"\ntimeout = "500ms"\nprobe_interval = "300ms"\n\n` +
      `[alerts]\nenabled = true\nfrom = "llmsup@gpu-box-1.example.com"\nto = ["oncall@example.com"]\ncritical_to = ["boss@example.com"]\n\n` +
      `[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "LLMSUP_TEST_SMTP_PASSWORD"\ntimeout = "2s"\n\n` +
      `[[backend]]\nname = "cloud"\nkind = "openai"\nurl = "${upstream.url}"\napi_key_file = "${keyFile}"\n\n` +
      `[[route]]\nmodel = "m"\ntiers = [{ backend = "cloud", model = "m" }]\n`,
  );
  const d = await startDaemon(t, { dir, config, socket: `${dir}/run/api.sock`, control: `${dir}/run/control.sock`, ports: {} }, SMTP_ENV);
  await waitStatus(d, "the route serving its tier", (s) => s.router.routes[0]?.serving_tier === 0);
  await smtp.waitFor(1, 10_000);
  // SMTP down for a while: the ALL TIERS DOWN mail waits in the outbox, a file under state_dir.
  await smtp.close();

  // Clients: answers whole and streamed, each refused upstream with the key in the text.
  const agent = new Agent({ connect: { socketPath: `${dir}/run/api.sock` } });
  t.after(() => agent.close());
  const answers: string[] = [];
  for (const stream of [false, true, false]) {
    const r = await agent.request({
      origin: "http://llmsup",
      path: "/v1/chat/completions",
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], max_tokens: 4, stream }),
    });
    answers.push(`${r.statusCode} ${JSON.stringify(r.headers)}\n${await r.body.text()}`);
  }
  assert.ok(answers.every((a) => a.startsWith("503 ")), `every request ends ALL TIERS DOWN:\n${answers.join("\n")}`);
  assert.ok(answers.some((a) => a.includes(REDACTED)), `the client sees that the upstream's words were redacted:\n${answers[0]}`);

  const outboxed = await waitUntil("the ALL TIERS DOWN mail in the outbox", () => {
    const files = filesUnder(`${dir}/state/alerts/outbox`);
    return Object.values(files).some((f) => f.includes("ALL TIERS DOWN")) ? files : undefined;
  }, { timeoutMs: 10_000 });
  const smtpAgain = await startSmtp(t, { port: smtp.port });
  await smtpAgain.waitFor(1, 15_000);
  await waitUntil("the ALL TIERS DOWN mail delivered", () => smtpAgain.mails.some((m) => m.subject.includes("ALL TIERS DOWN")), { timeoutMs: 10_000 });
  // Let the tier's recovery probes meet the 401 a few times (probe_interval 300ms).
  await waitUntil("recovery probes that met the 401", () => (d.stdout().match(/"event":"router\.probe\.failed"/g) ?? []).length >= 2, { timeoutMs: 5_000 });

  const statusJson = await d.cli("status", "--json");
  const statusHuman = await d.cli("status");
  const eventsJson = await d.cli("events", "--json");
  const eventsHuman = await d.cli("events");
  assert.match(statusJson.stdout, /401/, "status does report the 401");

  process.kill(d.pid, "SIGTERM");
  assert.equal((await d.exited).code, 0, d.stderr());

  const surfaces: Record<string, string> = {
    "client answers": answers.join("\n"),
    "daemon stdout": d.stdout(),
    "daemon stderr": d.stderr(),
    "status --json": statusJson.stdout + statusJson.stderr,
    status: statusHuman.stdout + statusHuman.stderr,
    "events --json": eventsJson.stdout + eventsJson.stderr,
    events: eventsHuman.stdout + eventsHuman.stderr,
    ...Object.fromEntries([...smtp.mails, ...smtpAgain.mails].map((m, i) => [`mail ${i + 1} (${m.subject})`, `${m.subject}\n${[...m.headers].map(([k, v]) => `${k}: ${v}`).join("\n")}\n${m.text}`])),
    ...Object.fromEntries(Object.entries(outboxed).map(([p, text]) => [`${p} (while SMTP was down)`, text])),
    ...filesUnder(`${dir}/state`),
    ...filesUnder(`${dir}/log`),
    ...filesUnder(`${dir}/run`),
  };
  t.diagnostic(`${Object.keys(surfaces).length} surfaces searched: ${Object.keys(surfaces).map((k) => k.replace(dir, "")).join(", ")}`);
  assert.ok(Object.keys(surfaces).some((k) => k.includes("/state/state.json")), "the state_dir's history is searched");
  assert.ok(Object.keys(surfaces).some((k) => k.includes("/outbox/")), "an outbox file is searched");
  assert.ok(Object.keys(surfaces).some((k) => k.includes("ALL TIERS DOWN")), "the ALL TIERS DOWN mail is searched");
  assert.ok(surfaces["daemon stdout"]!.includes("router.probe.failed") && surfaces["daemon stdout"]!.includes("401"), "the log does tell of the 401s");
  const leaks: string[] = [];
  for (const [where, text] of Object.entries(surfaces)) {
    for (const piece of PIECES) {
      const at = text.indexOf(piece);
      if (at >= 0) leaks.push(`${where.replace(dir, "")} contains ${JSON.stringify(piece)}: …${text.slice(Math.max(0, at - 120), at + 60)}…`);
    }
  }
  assert.deepEqual(leaks, [], "no surface carries the key or its head or tail");
});
