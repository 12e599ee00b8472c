/** The daemon as operators run it: a real `llmsup run` process on simulated backends, driven through the CLI. */
import { test } from "node:test";
import path from "node:path";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { isAlive } from "../../src/platform/procfs.ts";
import { startDaemon, status, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";
import { runLlmsup } from "../helpers/cli.ts";

const ROUTE_TWO = `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`;

function ask(socket: string, body: unknown): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json" } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

test("status reflects a killed primary (fallback serving, exit 1), a route with nothing left (exit 2), a stopped daemon (exit 3)", async (t) => {
  const files = await writeDaemonConfig(
    t,
    [
      { name: "primary", kind: "llamacpp", process: `  restart = "never"` },
      { name: "fallback", kind: "llamacpp", process: `  restart = "never"` },
    ],
    ROUTE_TWO,
  );
  const d = await startDaemon(t, files);
  const ok = await waitStatus(d, "both ready", (s) => s.backends.every((b) => b.state === "ready"));
  assert.equal(ok.code, 0);
  assert.equal(ok.json.summary.state, "ok");
  const primaryPid = ok.json.backends.find((b) => b.name === "primary")!.pid!;

  process.kill(primaryPid, "SIGKILL");
  const degraded = await waitStatus(d, "fallback serving", (s) => s.router.routes[0]!.serving_tier === 1);
  assert.equal(degraded.code, 1);
  assert.match(degraded.json.summary.text, /^WARNING: llama on fallback tier 1 \(fallback\)/);
  const answer = await ask(files.socket, { model: "llama", messages: [{ role: "user", content: "hi" }] });
  assert.equal(answer.status, 200);
  assert.equal(answer.headers["x-llmsup-backend"], "fallback");

  const fallbackPid = degraded.json.backends.find((b) => b.name === "fallback")!.pid!;
  process.kill(fallbackPid, "SIGKILL");
  const critical = await waitStatus(d, "nothing left", (s) => s.router.routes[0]!.serving_tier === -1);
  assert.equal(critical.code, 2);
  assert.match(critical.json.summary.text, /^CRITICAL: llama has no serving tier/);
  const human = await d.cli("status");
  assert.equal(human.code, 2);
  assert.match(human.stdout, /CRITICAL/);
  assert.match(human.stdout, /primary +llamacpp +exited/);

  process.kill(d.pid, "SIGTERM");
  assert.deepEqual(await d.exited, { code: 0, signal: null });
  const gone = await d.cli("status");
  assert.equal(gone.code, 3);
  assert.match(gone.stderr, /llmsup is not running/);
  assert.match(gone.stderr, /systemctl start llmsup/);
  const goneJson = await d.cli("status", "--json");
  assert.equal(goneJson.code, 3);
  assert.equal((JSON.parse(goneJson.stdout) as { running: boolean }).running, false);
});

test("reload keeps an unchanged backend's pid, restarts a changed one; an invalid reload keeps the old config", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp" }, { name: "fallback", kind: "llamacpp" }], ROUTE_TWO);
  const d = await startDaemon(t, files);
  const before = await waitStatus(d, "both ready", (s) => s.backends.every((b) => b.state === "ready"));
  const pid = (name: string, s = before.json) => s.backends.find((b) => b.name === name)!.pid;

  const text = readFileSync(files.config, "utf8");
  // Change only the fallback's command (a different token rate).
  const changed = text.replace(`"--port","${files.ports.fallback}","--load-time","0s"`, `"--port","${files.ports.fallback}","--load-time","0s","--token-rate","900"`);
  assert.notEqual(changed, text);
  writeFileSync(files.config, changed);
  const r = await d.cli("reload");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /reloaded: unchanged primary; restarted fallback/);
  const after = await waitStatus(d, "fallback back", (s) => s.backends.find((b) => b.name === "fallback")!.state === "ready" && pid("fallback", s) !== pid("fallback"));
  assert.equal(pid("primary", after.json), pid("primary"), "unchanged backend untouched");
  assert.notEqual(pid("fallback", after.json), pid("fallback"));

  writeFileSync(files.config, readFileSync(files.config, "utf8").replace('restart_sec = "200ms"', 'restart_sec = "soon"'));
  const bad = await d.cli("reload");
  assert.equal(bad.code, 78);
  assert.match(bad.stderr, /reload refused, the running configuration is kept/);
  assert.match(bad.stderr, /backend\[0\]\.process\.restart_sec/);
  const still = await status(d);
  assert.equal(still.code, 1, "a refused reload is a warning until a good reload");
  assert.match(still.json.summary.text, /reload refused/);
  assert.equal(pid("primary", still.json), pid("primary"));

  // SIGHUP reloads too (and is refused the same way while the file is broken).
  process.kill(d.pid, "SIGHUP");
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await status(d)).code, 1);
});

test("SIGTERM drains an in-flight stream and leaves no child process behind", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "vllm", args: ["--model", "m", "--token-rate", "20"] }], `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }]\n`);
  const d = await startDaemon(t, files);
  const s = await waitStatus(d, "ready", (x) => x.backends[0]!.state === "ready");
  const parent = s.json.backends[0]!.pid!;
  const engine = Number(readFileSync(`/proc/${parent}/task/${parent}/children`, "utf8").trim().split(/\s+/)[0]);
  const streaming = ask(files.socket, { model: "llama", messages: [{ role: "user", content: "a long answer please" }], stream: true });
  await new Promise((r) => setTimeout(r, 300));
  process.kill(d.pid, "SIGTERM");
  const answer = await streaming;
  assert.equal(answer.status, 200);
  assert.match(answer.text, /"finish_reason":"stop"/);
  assert.match(answer.text, /data: \[DONE\]\n\n$/, "the stream in flight finished");
  assert.deepEqual(await d.exited, { code: 0, signal: null });
  assert.equal(await isAlive(parent), false);
  assert.equal(await isAlive(engine), false, "the vLLM engine child is gone too");
});

test("a backend's logs, restart and stop through the CLI; unknown names are clear errors", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp" }], `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }]\n`);
  const d = await startDaemon(t, files);
  const s = await waitStatus(d, "ready", (x) => x.backends[0]!.state === "ready");
  const logs = await d.cli("logs", "primary", "-n", "5");
  assert.equal(logs.code, 0);
  assert.match(logs.stdout, /server is listening/);
  const restarted = await d.cli("restart", "primary");
  assert.equal(restarted.code, 0, restarted.stderr);
  const again = await waitStatus(d, "ready again", (x) => x.backends[0]!.state === "ready" && x.backends[0]!.pid !== s.json.backends[0]!.pid);
  assert.equal(again.json.backends[0]!.restarts, "0/5");
  // Every line carries the time it was read; every start leaves a marker with its generation, pid and why.
  const after = (await d.cli("logs", "primary", "-n", "200")).stdout;
  assert.match(after, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z {2}/m);
  assert.match(after, new RegExp(`──── llmsup: generation 1 started, pid ${s.json.backends[0]!.pid}: `));
  assert.match(after, new RegExp(`──── llmsup: generation 2 started, pid ${again.json.backends[0]!.pid}: .*restart`));
  const logFile = readFileSync(path.join(files.dir, "log", "primary.log"), "utf8");
  assert.match(logFile, /──── llmsup: generation 2 started/, "the marker is in the log file too");
  const stopped = await d.cli("stop", "primary");
  assert.equal(stopped.code, 0);
  assert.match(stopped.stdout, /primary: stopped/);
  assert.equal((await status(d)).code, 2);
  const unknown = await d.cli("restart", "nope");
  assert.equal(unknown.code, 64);
  assert.match(unknown.stderr, /LLMSUP_E_BACKEND_UNKNOWN/);
  assert.match(d.stdout(), /"event":"control.command","action":"restart","target":"primary","uid":\d+/, "mutations are logged with the caller's uid");
});

test("fatal and the event history survive a daemon restart; a corrupt state file is set aside", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp", args: ["--crash-exit-code", "9"], process: `  start_limit_burst = 2` }], `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }]\n`);
  const d = await startDaemon(t, files);
  await waitStatus(d, "fatal", (x) => x.backends[0]!.state === "fatal");
  process.kill(d.pid, "SIGTERM");
  await d.exited;
  const d2 = await startDaemon(t, files);
  const s = await status(d2);
  assert.equal(s.json.backends[0]!.state, "fatal", "still fatal: needs an explicit reset");
  assert.equal(s.json.backends[0]!.generation ?? 0, 0, "a fatal restored from the state file is not started");
  assert.ok(s.json.events.some((e) => e.kind === "fatal"));
  process.kill(d2.pid, "SIGTERM");
  await d2.exited;
  writeFileSync(`${files.dir}/state/state.json`, "{ not json");
  const d3 = await startDaemon(t, files);
  // The fatal mark was not restored: llmsup started the backend again (which, crashing at once, may by now be fatal anew).
  const s3 = await waitStatus(d3, "the backend started afresh", (x) => (x.backends[0]!.generation ?? 0) >= 1);
  assert.ok(s3.json.backends[0]!.generation! >= 1);
  assert.match(d3.stdout(), /"event":"state.corrupt"/);
  assert.ok((await import("node:fs")).readdirSync(`${files.dir}/state`).some((f) => f.startsWith("state.json.corrupt-")));
});

test("an invalid configuration stops the daemon at once with exit 78 and every problem", async () => {
  const r = await runLlmsup(["run", "--config", "/nonexistent/supervisor.toml"]);
  assert.equal(r.code, 78);
  assert.match(r.stderr, /LLMSUP_E_CONFIG_UNREADABLE/);
});
