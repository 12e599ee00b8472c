/**
 * The emergency cache in a real daemon (`llmsup run`): built from [cache] and
 * the state directory, filled by real answers, shown by `llmsup status`,
 * serving when every tier is dead, its alert mailed, kept across a restart.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { Agent, fetch as undiciFetch } from "undici";
import { startDaemon, waitStatus, writeDaemonConfig, type RunningDaemon } from "../helpers/daemon.ts";
import { SMTP_PASSWORD, SMTP_USER, startSmtp } from "../alerts/helpers.ts";
import type { DaemonStatus } from "../../src/daemon/status.ts";
import { waitUntil } from "../helpers/wait.ts";

const Q = "Explain the difference between TCP and UDP.";

async function statusJson(d: RunningDaemon): Promise<DaemonStatus> {
  return JSON.parse((await d.cli("status", "--json")).stdout) as DaemonStatus;
}

async function waitCache(d: RunningDaemon, what: string, pred: (c: NonNullable<DaemonStatus["cache"]>) => boolean, ms = 10_000): Promise<DaemonStatus> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await statusJson(d);
    if (s.cache && pred(s.cache)) return s;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}: ${JSON.stringify(s.cache)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("a daemon with a cached route: filled, shown in status, served and mailed when all tiers die, kept across a restart", async (t) => {
  const smtp = await startSmtp(t);
  const files = await writeDaemonConfig(
    t,
    [{ name: "cpu", kind: "llamacpp", process: `  restart = "never"\n` }],
    `[[route]]\nmodel = "llama"\ncache = true\ntiers = [{ backend = "cpu", model = "m" }]\n`,
    `[cache]\nmax_entries = 50\nsimilarity = 0.8\n\n[alerts]\nenabled = true\nfrom = "llmsup@box.example.com"\nto = ["oncall@example.com"]\ncoalesce_window = "1s"\n[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "TEST_SMTP_PASSWORD"\ntimeout = "3s"\n`,
  );
  const env = { TEST_SMTP_PASSWORD: SMTP_PASSWORD };
  const d = await startDaemon(t, files, env);
  const ready = await waitStatus(d, "serving", (s) => s.router.routes[0]!.serving_tier === 0);
  const agent = new Agent({ connect: { socketPath: files.socket } });
  t.after(() => agent.close());
  const ask = (content: string) =>
    undiciFetch("http://llmsup/v1/chat/completions", { method: "POST", dispatcher: agent, headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "llama", messages: [{ role: "user", content }] }) });

  const live = await ask(Q);
  assert.equal(live.status, 200);
  const liveBody = (await live.json()) as { choices: { message: { content: string } }[] };
  const s1 = await waitCache(d, "the answer stored", (c) => c.entries === 1);
  assert.equal(s1.cache!.state, "ok");
  assert.deepEqual(s1.cache!.routes, ["llama"]);
  assert.equal(s1.cache!.max_entries, 50);
  assert.equal(s1.cache!.similarity, 0.8);
  assert.ok(existsSync(`${files.dir}/state/cache.sqlite`), "in the state directory");

  process.kill(ready.json.backends[0]!.pid!, "SIGKILL");
  await waitStatus(d, "no serving tier", (s) => s.router.routes[0]!.serving_tier < 0);
  const hit = await ask("Please explain the difference between TCP and UDP");
  assert.equal(hit.status, 200);
  assert.equal(hit.headers.get("x-llmsup-cache"), "hit");
  const body = (await hit.json()) as { choices: { message: { content: string } }[]; _from_cache: boolean };
  assert.equal(body._from_cache, true);
  assert.equal(body.choices[0]!.message.content, liveBody.choices[0]!.message.content);
  assert.equal((await ask("Something never asked before")).status, 503);

  const s2 = await waitCache(d, "the hit counted", (c) => c.hits === 1);
  assert.equal(s2.cache!.misses, 1);
  assert.equal(s2.cache!.last_hit?.route, "llama");
  const human = await d.cli("status");
  assert.match(human.stdout, /Cache\s+1\/50 answers, .* of 256\.0MiB; 1 served \(1 similar\), 1 missed since start, last llama .* ago; routes llama/);
  const metrics = await (await undiciFetch("http://llmsup/metrics", { dispatcher: agent })).text();
  assert.match(metrics, /llmsup_cache_hits_total\{route="llama",match="similar"\} 1/);

  // The router's cache.served event reaches the alerter: a mail says the route serves from the cache.
  const mail = await waitUntil("a mail about the cache", () => smtp.mails.find((m) => /cache/i.test(m.subject)), { everyMs: 100 });
  assert.match(mail.subject, /llama/);
  assert.match(mail.text, /emergency\s+(response\s+)?cache/, "the mail says it (wrapped at any word)");

  // A restart keeps the answers.
  process.kill(d.pid, "SIGTERM");
  assert.equal((await d.exited).code, 0);
  const d2 = await startDaemon(t, files, env);
  const s3 = await waitCache(d2, "the reopened store", () => true);
  assert.equal(s3.cache!.entries, 1);
  assert.equal(s3.cache!.hits, 0, "counters are since the start");
  process.kill(d2.pid, "SIGTERM");
  await d2.exited;
});

test("no route with the cache on: no store file, no cache in status", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "cpu", kind: "llamacpp" }], `[[route]]\nmodel = "llama"\ntiers = [{ backend = "cpu", model = "m" }]\n`);
  const d = await startDaemon(t, files);
  const s = await statusJson(d);
  assert.equal(s.cache, null);
  assert.doesNotMatch((await d.cli("status")).stdout, /Cache/);
  assert.equal(existsSync(`${files.dir}/state/cache.sqlite`), false, "privacy: nothing written unless asked for");
  process.kill(d.pid, "SIGTERM");
  await d.exited;
});
