/**
 * The control socket's door, on a real unix socket with real proof files:
 * reading is open, acting needs a proof whose owner the kernel set, and every
 * way around it — a claimed header, a stale, reused or expired nonce, a link,
 * a file moved in — is refused before the daemon is asked anything. The
 * daemon behind the socket is a port that records what it is asked (the real
 * daemon is in daemon-auth.test.ts); time is a test clock.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { ask } from "./helpers.ts";
import { chmodSync, linkSync, lstatSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { AUTH_DIR_MODE, CHALLENGE_PATH, NONCE_TTL_MS, PROOF_HEADER } from "../../src/control/auth.ts";
import { callDaemon } from "../../src/control/client.ts";
import { ControlServer, type ControlApi } from "../../src/control/server.ts";
import { Drains } from "../../src/daemon/drains.ts";
import { LlmsupError } from "../../src/errors/error.ts";
import { createLogger } from "../../src/log/logger.ts";
import { realClock } from "../../src/platform/clock.ts";
import { ManualClock } from "../helpers/clock.ts";
import { tempDir } from "../helpers/tmp.ts";

const ME = process.getuid!();

/** A daemon port that records each thing it is asked to do. */
function recordingPort(): { api: ControlApi; calls: string[] } {
  const calls: string[] = [];
  const drains = new Drains();
  const known = (name: string) => {
    if (name !== "primary") throw new LlmsupError("LLMSUP_E_BACKEND_UNKNOWN", `no backend named "${name}"`);
  };
  const api: ControlApi = {
    status: () => ({ summary: { code: 0 } }),
    reload: async () => {
      calls.push("reload");
      return { ok: true };
    },
    drill: async (spec) => {
      calls.push(`drill ${spec.scenario} ${spec.durationMs}`);
      throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", "the route is not on its first tier");
    },
    operate: async (name, op) => {
      known(name);
      calls.push(`${op} ${name}`);
      return { name, state: op === "stop" ? "stopped" : "starting" };
    },
    check: known,
    drain: (name, on, by) => {
      known(name);
      calls.push(`${on ? "drain" : "undrain"} ${name} by ${by}`);
      return { ...drains.set(name, on, by, 0), inflight: 0 };
    },
    drainState: (name) => ({ backend: name, drained: drains.get(name) ?? null, inflight: 0 }),
    logTail: async () => ["a line"],
    followOutput: () => () => undefined,
    events: () => [],
    followEvents: () => () => undefined,
    clearGpuFaults: (gpu, reason, by) => {
      calls.push(`clear ${gpu ?? "all"} ${reason} by ${by}`);
      return [];
    },
  };
  return { api, calls };
}

interface Served {
  readonly socket: string;
  readonly dir: string;
  readonly clock: ManualClock;
  readonly calls: string[];
  /** The log lines, parsed. */
  readonly log: Record<string, unknown>[];
}

async function serve(t: TestContext, o: { clockStart?: number } = {}): Promise<Served> {
  const run = path.join(tempDir(t), "run");
  const socket = path.join(run, "control.sock");
  const clock = new ManualClock(o.clockStart);
  const log: Record<string, unknown>[] = [];
  const logger = createLogger({ destination: { write: (line: string) => void log.push(JSON.parse(line) as Record<string, unknown>) } });
  const { api, calls } = recordingPort();
  const server = new ControlServer(api, logger, { clock, daemonUid: process.getuid!() });
  await server.listen({ socket, mode: 0o660, group: "", admin_group: "" });
  t.after(() => server.close());
  return { socket, dir: path.join(run, "control-auth"), clock, calls, log };
}


async function challenge(s: Served): Promise<{ nonce: string; dir: string }> {
  const r = await ask(s.socket, "POST", CHALLENGE_PATH);
  assert.equal(r.status, 200);
  return r.body as unknown as { nonce: string; dir: string };
}

/** A proof as the CLI makes it: a new file of this process's own, named by the nonce. */
async function proof(s: Served): Promise<string> {
  const { nonce, dir } = await challenge(s);
  writeFileSync(path.join(dir, nonce), "", { flag: "wx", mode: 0o600 });
  return nonce;
}

const refused = (s: Served) => s.log.filter((l) => l.event === "control.refused");
const audited = (s: Served) => s.log.filter((l) => l.event === "control.command");

test("reading needs no proof: status, logs and a drain's state answer anyone who can connect", async (t) => {
  const s = await serve(t);
  assert.equal((await ask(s.socket, "GET", "/status")).status, 200);
  assert.deepEqual((await ask(s.socket, "GET", "/backends/primary/logs?n=5")).body, { backend: "primary", lines: ["a line"] });
  assert.equal((await ask(s.socket, "GET", "/backends/primary/drain")).status, 200);
  assert.deepEqual(s.calls, []);
});

test("listening makes the auth directory the daemon's own, mode 1733, and empties it of an earlier daemon's proofs", async (t) => {
  const base = tempDir(t);
  const dir = path.join(base, "run", "control-auth");
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  writeFileSync(path.join(dir, "0123456789abcdef0123456789abcdef"), "");
  const { api } = recordingPort();
  const server = new ControlServer(api, createLogger({ level: "silent" }), { clock: realClock, daemonUid: process.getuid!() });
  await server.listen({ socket: path.join(base, "run", "control.sock"), mode: 0o660, group: "", admin_group: "" });
  t.after(() => server.close());
  const st = lstatSync(dir);
  assert.equal(st.mode & 0o7777, AUTH_DIR_MODE);
  assert.equal(st.uid, ME);
  assert.deepEqual(readdirSync(dir), []);
});

test("an auth directory that is a symbolic link stops the control socket from listening", async (t) => {
  const base = tempDir(t);
  mkdirSync(path.join(base, "run"));
  mkdirSync(path.join(base, "elsewhere"));
  symlinkSync(path.join(base, "elsewhere"), path.join(base, "run", "control-auth"));
  const server = new ControlServer(recordingPort().api, createLogger({ level: "silent" }), { clock: realClock, daemonUid: process.getuid!() });
  await assert.rejects(server.listen({ socket: path.join(base, "run", "control.sock"), mode: 0o660, group: "", admin_group: "" }), (e: LlmsupError) => e.code === "LLMSUP_E_LISTEN_FAILED" && /is a symbolic link: remove it/.test(e.message));
});

test("a proof of one's own acts once, the audit line names the uid that owns the file, and the file is gone", async (t) => {
  const s = await serve(t);
  const nonce = await proof(s);
  const r = await ask(s.socket, "POST", "/backends/primary/stop", { [PROOF_HEADER]: nonce });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(s.calls, ["stop primary"]);
  assert.deepEqual(
    audited(s).map((l) => [l.action, l.target, l.uid]),
    [["stop", "primary", ME]],
  );
  assert.deepEqual(readdirSync(s.dir), [], "the daemon removed the proof");
});

test("a client that claims uid 0 in x-llmsup-uid without a proof cannot act", async (t) => {
  const s = await serve(t);
  const r = await ask(s.socket, "POST", "/backends/primary/stop", { "x-llmsup-uid": "0", "x-llmsup-user": "root" });
  assert.equal(r.status, 401);
  assert.equal(r.body.error?.code, "LLMSUP_E_CONTROL_UNAUTHENTICATED");
  assert.match(r.body.error?.message ?? "", /^stop primary refused: no proof of identity/);
  assert.deepEqual(s.calls, [], "the daemon was not asked");
  assert.deepEqual(
    refused(s).map((l) => [l.action, l.target, l.uid, l.user, l.code]),
    [["stop", "primary", null, null, "LLMSUP_E_CONTROL_UNAUTHENTICATED"]],
  );
});

test("a claimed x-llmsup-uid beside a valid proof changes nothing: the file's owner is the caller", async (t) => {
  const s = await serve(t);
  const nonce = await proof(s);
  const r = await ask(s.socket, "POST", "/backends/primary/drain", { [PROOF_HEADER]: nonce, "x-llmsup-uid": "12345", "x-llmsup-user": "mallory" });
  assert.equal(r.status, 200);
  assert.equal(audited(s)[0]!.uid, ME);
  assert.doesNotMatch(s.calls[0]!, /mallory/, "the drain is recorded by the proven user, not the claimed one");
});

test("a nonce answers one request: the second with the same nonce is refused", async (t) => {
  const s = await serve(t);
  const nonce = await proof(s);
  assert.equal((await ask(s.socket, "POST", "/reload", { [PROOF_HEADER]: nonce })).status, 200);
  // Even with its file made again.
  writeFileSync(path.join(s.dir, nonce), "", { flag: "wx", mode: 0o600 });
  const again = await ask(s.socket, "POST", "/reload", { [PROOF_HEADER]: nonce });
  assert.equal(again.status, 401);
  assert.match(again.body.error?.message ?? "", /unknown or already used/);
  assert.deepEqual(s.calls, ["reload"]);
});

test("a challenge answered after its 10 seconds is refused as expired", async (t) => {
  const s = await serve(t);
  const nonce = await proof(s);
  s.clock.advance(NONCE_TTL_MS);
  const r = await ask(s.socket, "POST", "/backends/primary/restart", { [PROOF_HEADER]: nonce });
  assert.equal(r.status, 401);
  assert.match(r.body.error?.message ?? "", /the challenge expired/);
  assert.deepEqual(s.calls, []);
  assert.deepEqual(readdirSync(s.dir), [], "its file is removed all the same");
});

test("a nonce this daemon never issued, or a proof that is not a nonce, is refused", async (t) => {
  const s = await serve(t);
  writeFileSync(path.join(s.dir, "0123456789abcdef0123456789abcdef"), "", { flag: "wx" });
  for (const [header, why] of [
    ["0123456789abcdef0123456789abcdef", /unknown or already used/],
    ["../../../etc/passwd", /not a nonce this daemon issues/],
  ] as const) {
    const r = await ask(s.socket, "POST", "/reload", { [PROOF_HEADER]: header });
    assert.equal(r.status, 401, header);
    assert.match(r.body.error?.message ?? "", why);
  }
  assert.deepEqual(s.calls, []);
});

test("a challenge whose file was never made is refused", async (t) => {
  const s = await serve(t);
  const { nonce } = await challenge(s);
  const r = await ask(s.socket, "POST", "/reload", { [PROOF_HEADER]: nonce });
  assert.equal(r.status, 401);
  assert.match(r.body.error?.message ?? "", /no proof file for the nonce/);
});

test("a symbolic link as the proof is refused, even one to a file root owns", async (t) => {
  const s = await serve(t);
  const { nonce, dir } = await challenge(s);
  symlinkSync("/etc/passwd", path.join(dir, nonce));
  const r = await ask(s.socket, "POST", "/backends/primary/stop", { [PROOF_HEADER]: nonce });
  assert.equal(r.status, 401);
  assert.match(r.body.error?.message ?? "", /symbolic link/);
  assert.deepEqual(s.calls, []);
  assert.deepEqual(readdirSync(dir), [], "the link is removed");
});

test("a hard link to another file as the proof is refused", async (t) => {
  const s = await serve(t);
  const { nonce, dir } = await challenge(s);
  const other = path.join(path.dirname(dir), "someone-elses-file");
  writeFileSync(other, "");
  linkSync(other, path.join(dir, nonce));
  const r = await ask(s.socket, "POST", "/backends/primary/stop", { [PROOF_HEADER]: nonce });
  assert.equal(r.status, 401);
  assert.match(r.body.error?.message ?? "", /2 names \(a hard link/);
  assert.deepEqual(s.calls, []);
});

test("a file made before its challenge and moved into place is refused: it keeps its birth time", async (t) => {
  const s = await serve(t, { clockStart: Date.now() });
  const old = path.join(path.dirname(s.dir), "made-earlier");
  writeFileSync(old, "");
  if (lstatSync(old).birthtimeMs === 0) return t.skip(`the file system of ${old} keeps no birth time: a proof's change time stands in, which a rename renews`);
  s.clock.advance(5_000);
  const { nonce, dir } = await challenge(s);
  renameSync(old, path.join(dir, nonce));
  const r = await ask(s.socket, "POST", "/backends/primary/stop", { [PROOF_HEADER]: nonce });
  assert.equal(r.status, 401);
  assert.match(r.body.error?.message ?? "", /older than its challenge/);
  assert.deepEqual(s.calls, []);
});

test("a URL with a bad percent-escape is a 400 with a stable code, not a crash", async (t) => {
  const s = await serve(t);
  for (const [method, p] of [["GET", "/backends/%E0%A4%A/logs"], ["POST", "/backends/%E0%A4%A/stop"]] as const) {
    const r = await ask(s.socket, method, p, method === "POST" ? { [PROOF_HEADER]: await proof(s) } : {});
    assert.equal(r.status, 400, `${method} ${p}`);
    assert.equal(r.body.error?.code, "LLMSUP_E_CONTROL_BAD_REQUEST");
    assert.match(r.body.error?.message ?? "", /malformed URL: path segment "%E0%A4%A" has a bad percent-escape/);
  }
  assert.deepEqual(s.calls, []);
});

test("a drill duration that is not a number, negative, zero, fractional or over an hour is a 400 and no drill runs", async (t) => {
  const s = await serve(t);
  for (const d of ["NaN", "-1000", "0", "1500.5", "3600001"]) {
    const r = await ask(s.socket, "POST", `/drills/primary-outage?duration_ms=${d}`, { [PROOF_HEADER]: await proof(s) });
    assert.equal(r.status, 400, d);
    assert.equal(r.body.error?.code, "LLMSUP_E_CONTROL_BAD_REQUEST", d);
    assert.match(r.body.error?.message ?? "", new RegExp(`^duration_ms="${d.replace(".", "\\.")}": a drill lasts`), d);
  }
  assert.deepEqual(s.calls, []);
  const ok = await ask(s.socket, "POST", "/drills/primary-outage?duration_ms=3600000", { [PROOF_HEADER]: await proof(s) });
  assert.equal(ok.status, 409, "an hour is allowed: the port was asked (and refused it for its own reason)");
  assert.deepEqual(s.calls, ["drill primary-outage 3600000"]);
});

test("the CLI's client proves itself for a POST without being asked, and reads without a challenge", async (t) => {
  const s = await serve(t);
  const read = await callDaemon(s.socket, "GET", "/status");
  assert.equal(read.status, 200);
  const acted = await callDaemon(s.socket, "POST", "/backends/primary/restart");
  assert.equal(acted.status, 200, JSON.stringify(acted.body));
  assert.deepEqual(s.calls, ["restart primary"]);
  assert.equal(audited(s)[0]!.uid, ME);
  assert.deepEqual(readdirSync(s.dir), []);
});

test("a client that cannot make its proof is refused, and the refusal says why this side failed", async (t) => {
  const s = await serve(t);
  rmSync(s.dir, { recursive: true });
  const r = await callDaemon<{ error?: { code: string; message: string } }>(s.socket, "POST", "/backends/primary/stop");
  assert.equal(r.status, 401);
  assert.equal(r.body.error?.code, "LLMSUP_E_CONTROL_UNAUTHENTICATED");
  assert.match(r.body.error?.message ?? "", /\(this client: cannot reach the auth directory .*control-auth: ENOENT\)$/);
  assert.deepEqual(s.calls, []);
});

test("the client makes no proof in a directory that is not sticky", async (t) => {
  const s = await serve(t);
  chmodSync(s.dir, 0o733);
  const r = await callDaemon<{ error?: { code: string; message: string } }>(s.socket, "POST", "/reload");
  assert.equal(r.status, 401);
  assert.match(r.body.error?.message ?? "", /is not the daemon's auth directory \(a sticky directory\)\)$/);
  assert.deepEqual(readdirSync(s.dir), []);
});
