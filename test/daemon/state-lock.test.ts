/** One daemon per state_dir, with real `llmsup run` processes: a second daemon is refused; a killed daemon's lock is taken over. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseLock } from "../../src/daemon/lock-decision.ts";
import { procStartTime, signalGroup } from "../../src/platform/procfs.ts";
import { CLI_ENTRY, REPO_ROOT } from "../helpers/cli.ts";
import { startDaemon, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";

const ROUTE = `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }]\n`;

/** `llmsup run` until it exits by itself (killed after 20 s, so the test cleans up whatever happens). */
function runToExit(config: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI_ENTRY, "run", "--config", config], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const timer = setTimeout(() => signalGroup(child.pid!, "SIGKILL"), 20_000);
  return new Promise((resolve) =>
    child.on("exit", (code) => {
      clearTimeout(timer);
      signalGroup(child.pid!, "SIGKILL");
      resolve({ code, stdout, stderr });
    }),
  );
}

test("a second daemon on the same state_dir is refused (exit 69, naming the holder); a SIGKILLed daemon's lock is taken over", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp" }], ROUTE);
  const lockFile = path.join(files.dir, "state", "llmsup.lock");
  const first = await startDaemon(t, files);
  const ready = await waitStatus(first, "primary ready", (s) => s.backends.every((b) => b.state === "ready"));
  const backendPid = ready.json.backends[0]!.pid!;
  t.after(() => void signalGroup(backendPid, "SIGKILL"));

  const held = parseLock(readFileSync(lockFile, "utf8"));
  assert.equal(held?.pid, first.pid);
  assert.equal(held?.start_time, await procStartTime(first.pid));
  assert.equal(held?.config, files.config);

  // The same configuration but its own run_dir (so its sockets do not collide): only the state_dir is shared.
  const other = path.join(files.dir, "other.toml");
  writeFileSync(other, readFileSync(files.config, "utf8").replaceAll(`${files.dir}/run`, `${files.dir}/run2`));
  const second = await runToExit(other);
  assert.equal(second.code, 69, second.stderr);
  assert.match(second.stderr, /LLMSUP_E_STATE_LOCKED/);
  assert.ok(second.stderr.includes(`pid ${first.pid} (config ${files.config}`), second.stderr);
  assert.match(second.stderr, /systemctl stop llmsup/);
  assert.ok(!existsSync(`${files.dir}/run2/api.sock`), "the refused daemon bound no socket");

  const still = await waitStatus(first, "first still serving", (s) => s.backends[0]!.state === "ready" && s.backends[0]!.pid === backendPid);
  assert.equal(still.code, 0);
  assert.equal(parseLock(readFileSync(lockFile, "utf8"))?.pid, first.pid, "the refused daemon left the lock alone");

  // SIGKILL: the lock file stays behind, and so do the backends (their own process groups), which we stop by hand.
  process.kill(first.pid, "SIGKILL");
  await first.exited;
  signalGroup(backendPid, "SIGKILL");
  assert.ok(existsSync(lockFile));

  const third = await startDaemon(t, files);
  await waitStatus(third, "primary ready again", (s) => s.backends.every((b) => b.state === "ready"));
  assert.match(third.stdout(), new RegExp(`"event":"daemon.lock.stale".*"pid":${first.pid}`));
  assert.equal(parseLock(readFileSync(lockFile, "utf8"))?.pid, third.pid);

  // A clean stop releases the lock.
  process.kill(third.pid, "SIGTERM");
  assert.deepEqual(await third.exited, { code: 0, signal: null });
  assert.ok(!existsSync(lockFile), "a clean stop removes the lock file");
});
