/** The real daemon's control socket: the CLI acts with a proof the kernel vouches for; a claimed identity or a malformed URL gets nowhere. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ask } from "./helpers.ts";
import { accountOf } from "../../src/platform/users.ts";
import { startDaemon, status, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";

const ONE = `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }]\n`;


/** The daemon's JSON log lines with `event`. */
const logged = (stdout: string, event: string) =>
  stdout
    .split("\n")
    .filter((l) => l.includes(`"event":"${event}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

test("the CLI acts by its proof: stop and start work, and each audit line names the uid and user the kernel vouches for", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp" }], ONE);
  const d = await startDaemon(t, files);
  await waitStatus(d, "primary ready", (s) => s.backends[0]!.state === "ready");
  const me = await accountOf(process.getuid!());
  const stopped = await d.cli("stop", "primary");
  assert.equal(stopped.code, 0, stopped.stderr);
  await waitStatus(d, "primary stopped", (s) => s.backends[0]!.state === "stopped");
  const started = await d.cli("start", "primary");
  assert.equal(started.code, 0, started.stderr);
  assert.deepEqual(
    logged(d.stdout(), "control.command").map((l) => [l.action, l.target, l.uid, l.user]),
    [
      ["stop", "primary", me.uid, me.user ?? null],
      ["start", "primary", me.uid, me.user ?? null],
    ],
  );
  if (me.uid === 0) assert.match(d.stdout(), /"msg":"control: stop primary by root \(uid 0\)"/);
  assert.deepEqual(logged(d.stdout(), "control.refused"), []);
});

test("on the real daemon, a claimed x-llmsup-uid: 0 without a proof cannot stop the backend, and a bad percent-escape is a 400", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp" }], ONE);
  const d = await startDaemon(t, files);
  const before = await waitStatus(d, "primary ready", (s) => s.backends[0]!.state === "ready");

  const claimed = await ask(files.control, "POST", "/backends/primary/stop", { "x-llmsup-uid": "0", "x-llmsup-user": "root" });
  assert.equal(claimed.status, 401);
  assert.equal(claimed.body.error?.code, "LLMSUP_E_CONTROL_UNAUTHENTICATED");
  const after = await status(d);
  assert.equal(after.json.backends[0]!.state, "ready");
  assert.equal(after.json.backends[0]!.pid, before.json.backends[0]!.pid, "the backend was not touched");
  assert.deepEqual(
    logged(d.stdout(), "control.refused").map((l) => [l.action, l.target, l.uid, l.user, l.code]),
    [["stop", "primary", null, null, "LLMSUP_E_CONTROL_UNAUTHENTICATED"]],
  );
  assert.deepEqual(logged(d.stdout(), "control.command"), [], "nothing was done in anyone's name");

  const malformed = await ask(files.control, "GET", "/backends/%E0%A4%A/logs");
  assert.equal(malformed.status, 400);
  assert.equal(malformed.body.error?.code, "LLMSUP_E_CONTROL_BAD_REQUEST");
});

test("llmsup drill refuses a --duration of zero or over an hour before asking the daemon", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp" }], ONE);
  const d = await startDaemon(t, files);
  for (const duration of ["0s", "2h"]) {
    const r = await d.cli("drill", "primary-outage", "--duration", duration);
    assert.equal(r.code, 64, duration);
    assert.match(r.stderr, new RegExp(`--duration expects a duration from 1ms to 1h such as "30s", found "${duration}" \\(a drill lasts`), duration);
  }
  assert.deepEqual(logged(d.stdout(), "control.command"), [], "no drill was asked for");
});
