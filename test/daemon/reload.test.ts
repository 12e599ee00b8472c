/** Reload applies what it can, names every changed setting, and a refused reload is seen: status, history, mail. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Agent, fetch as undiciFetch } from "undici";
import { startDaemon, status, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";
import { SMTP_PASSWORD, SMTP_USER, startSmtp } from "../alerts/helpers.ts";

const ROUTE = `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`;

async function setup(t: Parameters<typeof startSmtp>[0], enabled: boolean) {
  const smtp = await startSmtp(t);
  const files = await writeDaemonConfig(
    t,
    [
      { name: "primary", kind: "llamacpp", process: `  restart_sec = "1500ms"\n  restart_max_delay = "1500ms"` },
      { name: "fallback", kind: "llamacpp" },
    ],
    ROUTE,
    `[alerts]\nenabled = ${enabled}\nfrom = "llmsup@box.example.com"\nto = ["oncall@example.com"]\n[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "TEST_SMTP_PASSWORD"\ntimeout = "3s"\n`,
  );
  const d = await startDaemon(t, files, { TEST_SMTP_PASSWORD: SMTP_PASSWORD });
  return { smtp, files, d };
}

test("alerts enabled by a reload are live at once: the reload names the change and the next failover is mailed", async (t) => {
  const { smtp, files, d } = await setup(t, false);
  const ok = await waitStatus(d, "both ready", (s) => s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0);
  writeFileSync(files.config, readFileSync(files.config, "utf8").replace("[alerts]\nenabled = false", "[alerts]\nenabled = true").replace('listen = ""', 'listen = "127.0.0.1:0"'));
  const r = await d.cli("reload");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /alerts\.enabled false → true \(applied\)/);
  assert.match(r.stdout, /router\.listen "" → "127\.0\.0\.1:0" \(needs a restart of llmsup\)/);
  const json = JSON.parse((await d.cli("reload", "--json")).stdout) as { settings: string[] };
  assert.deepEqual(json.settings, [], "a second reload of the same file changes nothing");
  const s = await status(d);
  assert.equal(s.code, 1);
  assert.match(s.json.summary.text, /settings changed that need a restart of llmsup: router\.listen/);
  const events = JSON.parse((await d.cli("events", "--json")).stdout) as { events: { kind: string; summary: string }[] };
  assert.ok(events.events.some((e) => /needs a restart of llmsup: router\.listen/.test(e.summary)), JSON.stringify(events.events.slice(-3)));

  process.kill(ok.json.backends.find((b) => b.name === "primary")!.pid!, "SIGKILL");
  const mails = await smtp.waitFor(1, 15_000);
  assert.ok(mails.some((m) => /llama failed over to tier 1 \(fallback\)/.test(m.subject)), mails.map((m) => m.subject).join("\n"));
});

test("a bad configuration sent by SIGHUP is refused loudly: status warns, the history and a mail say why; a good reload clears it", async (t) => {
  const { smtp, files, d } = await setup(t, true);
  await waitStatus(d, "both ready", (s, code) => code === 0 && s.backends.every((b) => b.state === "ready"));
  await smtp.waitFor(1, 10_000); // started
  const good = readFileSync(files.config, "utf8");
  writeFileSync(files.config, good.replace('restart_sec = "200ms"', 'restart_sec = "soon"'));
  process.kill(d.pid, "SIGHUP");
  const refused = await waitStatus(d, "the refusal in status", (_s, code) => code === 1);
  assert.match(refused.json.summary.text, /reload refused at .*restart_sec/);
  const events = JSON.parse((await d.cli("events", "--json")).stdout) as { events: { kind: string; summary: string }[] };
  assert.ok(events.events.some((e) => e.kind === "reload_refused" && /restart_sec/.test(e.summary)), JSON.stringify(events.events.slice(-3)));
  const mails = await smtp.waitFor(2, 10_000);
  const mail = mails.find((m) => /reload REFUSED/.test(m.subject));
  assert.ok(mail, mails.map((m) => m.subject).join("\n"));
  assert.match(mail.text, /restart_sec/);

  writeFileSync(files.config, good);
  const r = await d.cli("reload");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /no setting changed/);
  assert.equal((await status(d)).code, 0);
});

test("a reload reads the API keys file again: a rotated key takes effect at once, and a file left with no key is refused with the old keys kept", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp" }], `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }]\n`);
  const keysFile = path.join(files.dir, "keys");
  writeFileSync(keysFile, "# rotated monthly\nkey-Alpha-1111\n", { mode: 0o600 });
  writeFileSync(files.config, readFileSync(files.config, "utf8").replace("[router]\n", `[router]\napi_keys_file = "${keysFile}"\n`));
  const d = await startDaemon(t, files);
  await waitStatus(d, "ready", (s) => s.backends.every((b) => b.state === "ready"));
  const agent = new Agent({ connect: { socketPath: files.socket } });
  t.after(() => agent.close());
  const ask = async (key: string) =>
    (
      await undiciFetch("http://llmsup/v1/chat/completions", {
        method: "POST",
        dispatcher: agent,
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body: JSON.stringify({ model: "llama", messages: [{ role: "user", content: "hi" }], max_tokens: 4 }),
      }).then(async (r) => (await r.arrayBuffer(), r))
    ).status;
  assert.deepEqual([await ask("key-Alpha-1111"), await ask("key-Bravo-2222")], [200, 401]);

  writeFileSync(keysFile, "key-Bravo-2222\n");
  const rotated = await d.cli("reload");
  assert.equal(rotated.code, 0, rotated.stderr);
  assert.deepEqual([await ask("key-Alpha-1111"), await ask("key-Bravo-2222")], [401, 200], "the rotated key is the one that works");

  writeFileSync(keysFile, "# emptied by mistake\n");
  const refused = await d.cli("reload");
  assert.notEqual(refused.code, 0);
  assert.match(refused.stdout + refused.stderr, /LLMSUP_E_API_KEYS_EMPTY|holds no key/);
  assert.equal(await ask("key-Bravo-2222"), 200, "the keys in force stay in force");
  assert.equal(await ask("anything"), 401, "and a refused reload opens nothing");
});
