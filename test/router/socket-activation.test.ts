/**
 * systemd socket activation, end to end with real sockets: a stand-in for
 * systemd (test/fixtures/activation/fake-systemd.ts) holds a unix and a TCP
 * listening socket and never accepts; RouterServer children get them as fds 3
 * and 4 with LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES. Requests sent while no
 * child runs wait in the kernel and are answered by the next child.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import path from "node:path";
import { promisify } from "node:util";
import { validateConfigText } from "../../src/config/load.ts";
import { REPO_ROOT } from "../helpers/cli.ts";
import { tempDir } from "../helpers/tmp.ts";

const HOLDER = path.join(REPO_ROOT, "test/fixtures/activation/fake-systemd.ts");

type Line = Record<string, unknown> & { event: string };

interface Holder {
  readonly port: number;
  /** The next line with this event (lines are consumed in order; others before it are skipped and kept in `seen`). */
  next(event: string, ms?: number): Promise<Line>;
  start(args: Record<string, unknown>): void;
  readonly seen: Line[];
}

/** Starts the stand-in for systemd; everything it started is killed after the test. */
async function startHolder(t: { after(fn: () => void | Promise<void>): void }, socket: string, tcpHost: string): Promise<Holder> {
  const child = spawn(process.execPath, [HOLDER, "--unix", socket, "--tcp-host", tcpHost], { cwd: REPO_ROOT, stdio: ["pipe", "pipe", "pipe"] });
  const seen: Line[] = [];
  const queue: Line[] = [];
  let wake: (() => void) | undefined;
  let buf = "";
  let stderr = "";
  const pids = new Set<number>();
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  child.stdout!.setEncoding("utf8").on("data", (d: string) => {
    buf += d;
    for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
      const text = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let line: Line;
      try {
        line = JSON.parse(text) as Line;
      } catch {
        line = { event: "text", text };
      }
      if (line.event === "ready" && typeof line.pid === "number") pids.add(line.pid);
      seen.push(line);
      queue.push(line);
      wake?.();
    }
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  t.after(async () => {
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    child.kill("SIGKILL");
    await exited;
  });
  const next = async (event: string, ms = 20_000): Promise<Line> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = queue.findIndex((l) => l.event === event || (l.event === "exited" && event !== "exited"));
      if (i >= 0) {
        const line = queue.splice(0, i + 1)[i]!;
        if (line.event !== event) assert.fail(`the router child exited before "${event}"; lines: ${JSON.stringify(seen)}; stderr: ${stderr}`);
        return line;
      }
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`no "${event}" from the holder within ${ms}ms; lines: ${JSON.stringify(seen)}; stderr: ${stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  };
  const listening = await next("listening");
  return { port: listening.port as number, next, start: (args) => child.stdin!.write(`start ${JSON.stringify(args)}\n`), seen };
}

interface Sent {
  /** Resolves when the kernel accepted the connection into the listening socket's backlog. */
  readonly connected: Promise<void>;
  readonly answer: Promise<{ status: number; body: string }>;
}

/** GET `pathname` on a fresh connection (no keep-alive), over the unix socket or TCP. */
function get(to: { socketPath: string } | { port: number }, pathname: string, headers: Record<string, string> = {}): Sent {
  let connected!: () => void;
  let refused!: (e: Error) => void;
  const connectedP = new Promise<void>((resolve, reject) => {
    connected = resolve;
    refused = reject;
  });
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ ...("socketPath" in to ? { socketPath: to.socketPath } : { host: "127.0.0.1", port: to.port }), path: pathname, headers, agent: false, timeout: 20_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("socket", (s) => s.once("connect", () => connected()));
    req.on("timeout", () => req.destroy(new Error(`no answer to ${pathname} within 20s`)));
    req.on("error", (e) => {
      refused(e);
      reject(e);
    });
    req.end();
  });
  connectedP.catch(() => undefined);
  return { connected: connectedP, answer };
}

function modelOf(body: string): string {
  return (JSON.parse(body) as { data: { id: string }[] }).data.map((m) => m.id).join(",");
}

test("a router on sockets passed the way systemd does answers on both; requests sent between two runs wait in the kernel and are answered by the next one", { timeout: 90_000 }, async (t) => {
  const dir = tempDir(t);
  const socket = path.join(dir, "api.sock");
  const holder = await startHolder(t, socket, "127.0.0.1");
  const child = { dir, socket, listen: `127.0.0.1:${holder.port}` };

  const t0 = Date.now();
  holder.start({ ...child, gen: 1 });
  const first = await holder.next("ready");
  const firstReadyMs = Date.now() - t0;
  const listening = first.listening as { socket: string; tcp: { host: string; port: number }; activated: { fd: number; name: string; address: string; configured: boolean }[] };
  assert.equal(listening.socket, socket);
  assert.deepEqual(listening.tcp, { host: "127.0.0.1", port: holder.port });
  assert.deepEqual(listening.activated, [
    { fd: 3, name: "api", address: socket, configured: true },
    { fd: 4, name: "api-tcp", address: `127.0.0.1:${holder.port}`, configured: true },
  ]);
  const log = first.log as Line[];
  assert.ok(log.some((l) => l.event === "router.listening" && l.activated === true), JSON.stringify(log));
  assert.ok(!log.some((l) => l.event === "router.inherited_unconfigured"), "both sockets are the configured ones");
  assert.deepEqual(first.grandchild, ["LISTEN_PID="], "a process the router starts inherits neither the variables nor the sockets");

  // (a) both sockets answer, from the child.
  for (const to of [{ socketPath: socket }, { port: holder.port }]) {
    const r = await get(to, "/v1/models").answer;
    assert.equal(r.status, 200);
    assert.equal(modelOf(r.body), "gen-1");
  }

  // (b) the first run dies hard; nothing accepts until the second starts.
  process.kill(first.pid as number, "SIGKILL");
  const gone = await holder.next("exited");
  assert.equal(gone.signal, "SIGKILL");
  assert.ok(existsSync(socket), "the socket file is the holder's: a killed router leaves it");
  const gap = Date.now();
  const sent = [
    ...Array.from({ length: 4 }, () => get({ socketPath: socket }, "/v1/models")),
    ...Array.from({ length: 4 }, () => get({ port: holder.port }, "/v1/models")),
  ];
  // Every connection is taken by the kernel (none refused) while no process accepts.
  await Promise.all(sent.map((s) => s.connected));
  const early = await Promise.race([Promise.any(sent.map((s) => s.answer)).then(() => "answered"), new Promise((r) => setTimeout(() => r("waiting"), 300))]);
  assert.equal(early, "waiting", "nobody answers while no router runs");

  holder.start({ ...child, gen: 2 });
  const second = await holder.next("ready");
  const answers = await Promise.all(sent.map((s) => s.answer));
  const waited = Date.now() - gap;
  for (const a of answers) {
    assert.equal(a.status, 200);
    assert.equal(modelOf(a.body), "gen-2", "the queued requests are answered by the second run");
  }

  // A router that closes its listeners (a clean stop) leaves the path to systemd: nothing is unlinked.
  process.kill(second.pid as number, "SIGTERM");
  await holder.next("closed");
  await holder.next("exited");
  assert.ok(existsSync(socket), "closing an inherited socket does not unlink its path");
  const after = get({ socketPath: socket }, "/health");
  after.answer.catch(() => undefined); // reset when the holder goes at the end of the test
  await after.connected; // still listening (held by the stand-in for systemd), queued for the next run
  t.diagnostic(`first run ready after ${firstReadyMs}ms; the queued requests waited ${waited}ms, until the second run answered`);
});

test("a TCP socket systemd passes that no setting names is served anyway, and beyond loopback only with API keys", { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const socket = path.join(dir, "api.sock");
  const holder = await startHolder(t, socket, "0.0.0.0");
  // router.listen = "": llmsup would not listen on TCP by itself.
  const child = { dir, socket, listen: "" };

  holder.start({ ...child, gen: 1 });
  const refused = await holder.next("failed");
  assert.equal(refused.code, "LLMSUP_E_ROUTER_EXPOSED");
  assert.match(refused.message as string, /passed by systemd as fd 4, api-tcp/);
  await holder.next("exited");

  const keysFile = path.join(dir, "keys");
  writeFileSync(keysFile, "sk-test\n");
  holder.start({ ...child, gen: 2, keysFile });
  const ready = await holder.next("ready");
  const listening = ready.listening as { socket: string; tcp: { host: string; port: number }; activated: { address: string; configured: boolean }[] };
  assert.deepEqual(listening.tcp, { host: "0.0.0.0", port: holder.port });
  assert.deepEqual(listening.activated.map((a) => [a.address, a.configured]), [[socket, true], [`0.0.0.0:${holder.port}`, false]]);
  assert.ok((ready.log as Line[]).some((l) => l.event === "router.inherited_unconfigured" && l.fd === 4), "a warning names the socket no setting names");
  assert.equal((await get({ port: holder.port }, "/v1/models").answer).status, 401);
  const ok = await get({ port: holder.port }, "/v1/models", { authorization: "Bearer sk-test" }).answer;
  assert.equal(ok.status, 200);
  assert.equal(modelOf(ok.body), "gen-2");
});

test("systemd/llmsup.socket listens where llmsup's defaults do, as llmsup's user, and passes systemd-analyze verify", async (t) => {
  const unit = readFileSync(path.join(REPO_ROOT, "systemd/llmsup.socket"), "utf8");
  const service = readFileSync(path.join(REPO_ROOT, "systemd/llmsup.service"), "utf8");
  const defaults = validateConfigText(`[[backend]]\nname = "a"\nkind = "vllm"\nurl = "http://127.0.0.1:9"\n[[route]]\nmodel = "m"\ntiers = [{ backend = "a", model = "m" }]\n`, { hostname: "x" });
  const example = validateConfigText(readFileSync(path.join(REPO_ROOT, "supervisor.toml"), "utf8"), { hostname: "x" });
  assert.ok(defaults.ok && example.ok);
  const listens = [...unit.matchAll(/^#?ListenStream=(.*)$/gm)].map((m) => m[0]);
  assert.deepEqual(listens, [`ListenStream=${defaults.config.router.socket}`, `#ListenStream=${defaults.config.router.listen}`], "the unix socket on, TCP as a commented example");
  assert.equal(example.config.router.socket, defaults.config.router.socket);
  assert.equal(/^SocketUser=(.*)$/m.exec(unit)?.[1], /^User=(.*)$/m.exec(service)?.[1]);
  assert.equal(/^SocketGroup=(.*)$/m.exec(unit)?.[1], /^Group=(.*)$/m.exec(service)?.[1]);
  assert.match(unit, /^SocketMode=0660$/m);
  assert.match(unit, /^Service=llmsup\.service$/m);
  assert.match(unit, /^\[Install\]\nWantedBy=sockets\.target$/m);

  const analyze = await promisify(execFile)("systemd-analyze", ["--version"]).then(() => true, () => false);
  if (!analyze) return t.skip("systemd-analyze is not installed");
  // verify loads the service the socket names from the same directory; its executables must exist.
  for (const text of [unit, unit.replace(/^#ListenStream=/m, "ListenStream=")]) {
    const dir = tempDir(t);
    writeFileSync(path.join(dir, "llmsup.service"), service.replaceAll("/usr/bin/llmsup", path.join(REPO_ROOT, "scripts/llmsup")));
    writeFileSync(path.join(dir, "llmsup.socket"), text);
    const { stdout, stderr } = await promisify(execFile)("systemd-analyze", ["verify", path.join(dir, "llmsup.socket")]).catch((e: { stdout: string; stderr: string; code: number }) => {
      assert.fail(`systemd-analyze verify failed (${e.code}):\n${e.stderr}${e.stdout}`);
    });
    // Older systemd (before 254) does not know the service's backoff keys and says so; nothing else may be reported.
    const complaints = `${stdout}${stderr}`.split("\n").filter((l) => l.trim() !== "" && !/Unknown key '(RestartSteps|RestartMaxDelaySec)'/.test(l));
    assert.deepEqual(complaints, []);
  }
});
