/** The systemd side: notifications on a real datagram socket, and the unit file passing systemd-analyze verify. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { startDaemon, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";
import { REPO_ROOT } from "../helpers/cli.ts";
import { tempDir } from "../helpers/tmp.ts";

const require = createRequire(import.meta.url);
const { DgramSocket } = require("node-unix-socket") as { DgramSocket: new () => { bind(p: string): void; on(e: "data", fn: (b: Buffer) => void): void; close(): void } };

test("READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 arrive as datagrams on $NOTIFY_SOCKET", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp" }], `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }]\n`);
  const sockPath = path.join(files.dir, "notify.sock");
  const sock = new DgramSocket();
  sock.bind(sockPath);
  t.after(() => sock.close());
  const messages: string[] = [];
  sock.on("data", (b) => messages.push(b.toString()));
  const d = await startDaemon(t, files, { NOTIFY_SOCKET: sockPath, WATCHDOG_USEC: "200000" });
  await waitStatus(d, "ready", (s) => s.backends[0]!.state === "ready");
  await new Promise((r) => setTimeout(r, 400));
  const ready = messages.find((m) => m.split("\n").includes("READY=1"));
  assert.ok(ready, `READY=1 among ${JSON.stringify(messages)}`);
  assert.match(ready, new RegExp(`^MAINPID=${d.pid}$`, "m"));
  assert.match(ready, /^STATUS=\S/m);
  assert.ok(messages.filter((m) => m === "WATCHDOG=1").length >= 2, "watchdog pings every half of WATCHDOG_USEC");
  process.kill(d.pid, "SIGTERM");
  await d.exited;
  assert.ok(messages.some((m) => m.split("\n").includes("STOPPING=1")));
});

test("outside systemd (no NOTIFY_SOCKET) nothing is sent and nothing fails", async () => {
  const { createNotifier, watchdogInterval } = await import("../../src/daemon/notify.ts");
  const { silentLogger } = await import("../../src/log/logger.ts");
  const n = createNotifier({}, silentLogger());
  assert.equal(n.active, false);
  n.notify({ READY: 1 });
  assert.equal(watchdogInterval({ WATCHDOG_USEC: "30000000" }), 15_000);
  assert.equal(watchdogInterval({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "1" }, 2), undefined, "the watchdog of another process");
  assert.equal(watchdogInterval({}), undefined);
});

test("systemd/llmsup.service passes systemd-analyze verify and has the settings a supervisor needs", async (t) => {
  const unit = readFileSync(path.join(REPO_ROOT, "systemd/llmsup.service"), "utf8");
  for (const line of [
    "Type=notify",
    "Restart=on-failure",
    "RestartPreventExitStatus=78",
    "KillMode=process",
    "RestartKillSignal=SIGUSR2",
    "RuntimeDirectoryPreserve=yes",
    "OOMPolicy=continue",
    "ExecReload=/bin/kill -HUP $MAINPID",
  ]) {
    assert.match(unit, new RegExp(`^${line.replace(/[$]/g, "\\$")}$`, "m"), line);
  }
  assert.match(unit, /^\[Unit\][\s\S]*^StartLimitIntervalSec=\d+[\s\S]*^StartLimitBurst=\d+[\s\S]*^\[Service\]/m, "start limits live in [Unit]");
  assert.match(unit, /^WatchdogSec=\d+s$/m);
  const stopSec = Number(/^TimeoutStopSec=(\d+)s$/m.exec(unit)?.[1]);
  assert.ok(stopSec > 60 + 5, "TimeoutStopSec is above the default shutdown_timeout plus the daemon's backstop");
  assert.doesNotMatch(unit, /^PrivateDevices=yes$/m, "the inference servers need /dev/nvidia*");
  // verify needs the executables to exist: point them at this checkout's launcher.
  const dir = tempDir(t);
  const file = path.join(dir, "llmsup.service");
  writeFileSync(file, unit.replaceAll("/usr/bin/llmsup", path.join(REPO_ROOT, "scripts/llmsup")));
  const { stdout, stderr } = await promisify(execFile)("systemd-analyze", ["verify", file]).catch((e: { stdout: string; stderr: string; code: number }) => {
    assert.fail(`systemd-analyze verify failed (${e.code}):\n${e.stderr}${e.stdout}`);
  });
  // Older systemd (before 254) does not know the backoff keys and says so; nothing else may be reported.
  const complaints = `${stdout}${stderr}`.split("\n").filter((l) => l.trim() !== "" && !/Unknown key '(RestartSteps|RestartMaxDelaySec)'/.test(l));
  assert.deepEqual(complaints, []);
});
