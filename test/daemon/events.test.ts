/** `llmsup events`: the history, kept in state_dir across daemon restarts, filtered, and followed as it happens. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { CLI_ENTRY, REPO_ROOT } from "../helpers/cli.ts";
import { startDaemon, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";
import { waitUntil } from "../helpers/wait.ts";

test("events survive a daemon restart, filter by backend, kind and time, and -f prints new ones as they happen", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp" }, { name: "fallback", kind: "llamacpp" }], `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`);
  const first = await startDaemon(t, files);
  const ok = await waitStatus(first, "both ready", (s) => s.backends.every((b) => b.state === "ready"));
  process.kill(ok.json.backends.find((b) => b.name === "primary")!.pid!, "SIGKILL");
  await waitStatus(first, "primary back", (s) => s.backends.find((b) => b.name === "primary")!.generation === 2 && s.backends.find((b) => b.name === "primary")!.state === "ready", 20_000);
  process.kill(first.pid, "SIGTERM");
  await first.exited;

  const second = await startDaemon(t, files);
  await waitStatus(second, "both ready again", (s) => s.backends.every((b) => b.state === "ready"));
  const all = JSON.parse((await second.cli("events", "--json")).stdout) as { events: { kind: string; summary: string; backend?: string }[] };
  const kinds = all.events.map((e) => e.kind);
  assert.ok(kinds.filter((k) => k === "daemon").length >= 3, `two starts and a stop: ${kinds.join(", ")}`);
  assert.ok(all.events.some((e) => e.kind === "exit" && e.backend === "primary" && /SIGKILL/.test(e.summary)), "the first life's exit is still there");
  const stopAt = all.events.findIndex((e) => /llmsup stopping/.test(e.summary));
  const restartAt = all.events.findIndex((e, i) => i > stopAt && e.kind === "daemon");
  assert.deepEqual(all.events.slice(stopAt + 1, restartAt).filter((e) => e.kind === "failover" || e.kind === "all_down"), [], "a deliberate stop is no failover and no outage");

  const mine = await second.cli("events", "--backend", "primary", "--kind", "exit");
  assert.equal(mine.code, 0);
  assert.match(mine.stdout, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ {2}exit {7}primary: ready → exited: killed by SIGKILL/m);
  assert.doesNotMatch(mine.stdout, /fallback|daemon/);
  assert.equal((await second.cli("events", "--since", "1ms")).stdout, "", "nothing in the last millisecond");
  assert.equal((await second.cli("events", "--since", "soon")).code, 64);

  // Follow: the next event is printed as it happens.
  const follower = spawn(process.execPath, [CLI_ENTRY, "events", "-f", "--backend", "fallback", "--config", files.config], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  t.after(() => follower.kill("SIGKILL"));
  let out = "";
  follower.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  await new Promise((r) => setTimeout(r, 500));
  const restart = await second.cli("restart", "fallback");
  assert.equal(restart.code, 0, restart.stderr);
  await waitUntil("the follower to print the fallback's restart", () => /fallback: .*→ ready/.test(out), { timeoutMs: 15_000, everyMs: 50 });
  assert.doesNotMatch(out, /primary/, "the filter applies to followed events too");
});
