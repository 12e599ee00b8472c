/**
 * Bounded clients: slow headers and bodies are cut off, idle keep-alive connections close after
 * router.keepalive_timeout, connections beyond router.max_connections get 503 overloaded, the router
 * keeps answering while thousands of connections are held, and a shutdown never waits past its deadline.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import path from "node:path";
import { admitConnection, serverBounds } from "../../src/router/connections.ts";
import { startDaemon } from "../helpers/daemon.ts";
import { backend, startRouter, type RouterHarness } from "../helpers/router.ts";
import { startSim } from "../helpers/sim.ts";
import { testConfig } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";
import { waitUntil } from "../helpers/wait.ts";

type Where = { path: string } | { port: number };

/**
 * A connection. A unix socket's connect completes once queued, before the server accepts; past the
 * listen backlog it fails with EAGAIN, and a client tries again shortly, as a real one would.
 */
async function open(where: Where): Promise<Socket> {
  for (let tries = 0; ; tries++) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = "path" in where ? connect(where.path) : connect(where.port, "127.0.0.1");
        s.once("connect", () => resolve(s));
        s.once("error", reject);
      });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EAGAIN" || tries >= 500) throw e;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

/** Opens `n` connections, at most `parallel` connecting at once. */
async function openMany(where: Where, n: number, parallel = 100): Promise<Socket[]> {
  const out: Socket[] = [];
  for (let i = 0; i < n; i += parallel) out.push(...(await Promise.all(Array.from({ length: Math.min(parallel, n - i) }, () => open(where)))));
  return out;
}

/** What a connection receives until it is closed, when it closed (performance.now()), and how long after `since` that was. */
function untilClosed(s: Socket, since = performance.now()): Promise<{ text: string; ms: number; at: number }> {
  let text = "";
  s.on("data", (d: Buffer) => (text += d.toString("latin1")));
  s.on("error", () => undefined);
  return new Promise((resolve) => s.once("close", () => resolve({ text, ms: performance.now() - since, at: performance.now() })));
}

/** One whole HTTP response read off `s` (headers, then content-length bytes). */
function oneResponse(s: Socket): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const onData = (d: Buffer) => {
      buf += d.toString("latin1");
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const [statusLine, ...lines] = buf.slice(0, end).split("\r\n");
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
      const body = buf.slice(end + 4);
      if (body.length < Number(headers["content-length"] ?? 0)) return;
      s.off("data", onData);
      resolve({ status: Number(statusLine!.split(" ")[1]), headers, body });
    };
    s.on("data", onData);
    s.once("error", reject);
  });
}

const GET = (p: string) => `GET ${p} HTTP/1.1\r\nhost: llmsup\r\n\r\n`;
const CHAT = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], max_tokens: 4 });

/** A chat request through the router (a new connection on the unix socket): status and tier. */
async function chat(h: RouterHarness): Promise<{ status: number; tier: string | null }> {
  const r = await h.fetch("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: CHAT });
  await r.arrayBuffer();
  return { status: r.status, tier: r.headers.get("x-llmsup-tier") };
}

async function routerOnSim(t: Parameters<typeof startRouter>[0], routerToml: string): Promise<RouterHarness> {
  const sim = await startSim(t, ["--kind", "vllm", "--port", "0", "--load-time", "0s", "--model", "m", "--ttft", "5ms"]);
  return startRouter(t, backend("sim", "vllm", sim.port) + `[[route]]\nmodel = "m"\ntiers = [{ backend = "sim", model = "m" }]\n`, routerToml);
}

test("serverBounds: headers within router.header_timeout (never beyond client_body_timeout), the whole request within client_body_timeout, idle keep-alive closed after keepalive_timeout, checked often enough for short bounds", () => {
  assert.deepEqual(serverBounds({ header_timeout: 10_000, client_body_timeout: 60_000, keepalive_timeout: 75_000 }), {
    requestTimeout: 60_000,
    headersTimeout: 10_000,
    keepAliveTimeout: 75_000,
    connectionsCheckingInterval: 1_000,
    maxRequestsPerSocket: 0,
  });
  const short = serverBounds({ header_timeout: 10_000, client_body_timeout: 300, keepalive_timeout: 500 });
  assert.equal(short.headersTimeout, 300, "a header timeout longer than the whole request's is cut to it");
  assert.equal(short.connectionsCheckingInterval, 75, "checked at a quarter of the shortest bound");
  assert.equal(serverBounds({ header_timeout: 100, client_body_timeout: 100, keepalive_timeout: 100 }).connectionsCheckingInterval, 50, "never more often than every 50ms");
});

test("admitConnection: a connection is served while fewer than router.max_connections are held, refused from the cap on", () => {
  assert.equal(admitConnection(0, 1), true);
  assert.equal(admitConnection(4095, 4096), true);
  assert.equal(admitConnection(4096, 4096), false);
  assert.equal(admitConnection(5000, 4096), false, "a cap lowered by a reload refuses until enough have closed");
});

test("a client that never finishes its headers (or sends none) is answered 408 and closed within router.header_timeout", async (t) => {
  const h = await startRouter(t, backend("a", "vllm", 9) + `[[route]]\nmodel = "m"\ntiers = [{ backend = "a", model = "m" }]\n`, `header_timeout = "300ms"`);
  const silent = await open({ path: h.socket });
  const dripping = await open({ path: h.socket });
  const since = performance.now();
  const closed = [untilClosed(silent, since), untilClosed(dripping, since)];
  dripping.write("GET /health HTTP/1.1\r\nhost: llmsup\r\n");
  // A header line every 100ms: never idle, never done.
  const drip = setInterval(() => dripping.writable && dripping.write(`x-drip: ${Date.now()}\r\n`), 100);
  t.after(() => clearInterval(drip));
  const [a, b] = await Promise.all(closed);
  clearInterval(drip);
  for (const [what, r] of [["silent", a!], ["dripping", b!]] as const) {
    assert.ok(r.ms >= 250 && r.ms < 1_500, `the ${what} client was closed after ${Math.round(r.ms)}ms: not before router.header_timeout, and soon after`);
    assert.match(r.text, /^HTTP\/1\.1 408 /, `the ${what} client was told why`);
  }
});

test("clients still sending when their time is up are told 408 before the connection closes, never reset before the answer", async (t) => {
  const h = await startRouter(t, backend("a", "vllm", 9) + `[[route]]\nmodel = "m"\ntiers = [{ backend = "a", model = "m" }]\n`, `header_timeout = "200ms"`);
  // Twenty clients sending a header line every 2 ms: bytes are always on their way when the header time runs out.
  const clients = await Promise.all(Array.from({ length: 20 }, () => open({ path: h.socket })));
  const closed = clients.map((c) => untilClosed(c));
  const drips = clients.map((c) => {
    c.write("GET /health HTTP/1.1\r\nhost: llmsup\r\n");
    return setInterval(() => c.writable && c.write(`x-drip: ${"d".repeat(40)}\r\n`), 2);
  });
  t.after(() => drips.forEach(clearInterval));
  const results = await Promise.all(closed);
  drips.forEach(clearInterval);
  const told = results.filter((r) => /^HTTP\/1\.1 408 /.test(r.text)).length;
  assert.equal(told, clients.length, `every client read its 408 before the close (${told} of ${clients.length})`);
  for (const r of results) assert.ok(r.ms < 2_500, `closed ${Math.round(r.ms)}ms after opening: within the header time and the grace after the answer`);
});

test("a reload's router.header_timeout and keepalive_timeout apply to the listeners already open", async (t) => {
  const h = await startRouter(t, backend("a", "vllm", 9) + `[[route]]\nmodel = "m"\ntiers = [{ backend = "a", model = "m" }]\n`);
  const next = testConfig(tempDir(t), `[router]\nsocket = "${h.socket}"\nlisten = "127.0.0.1:0"\nheader_timeout = "300ms"\nkeepalive_timeout = "2s"\n` + backend("a", "vllm", 9) + `[[route]]\nmodel = "m"\ntiers = [{ backend = "a", model = "m" }]\n`);
  h.server.setRouter(h.router, next);
  const silent = await open({ path: h.socket });
  const { text, ms } = await untilClosed(silent);
  assert.match(text, /^HTTP\/1\.1 408 /);
  assert.ok(ms >= 250 && ms < 1_800, `a silent client is closed after the new header_timeout (${Math.round(ms)}ms), not the 10s it was`);
  const one = await open({ path: h.socket });
  one.write(GET("/health"));
  assert.equal((await oneResponse(one)).headers["keep-alive"], "timeout=2", "idle connections close after the new keepalive_timeout");
  one.destroy();
});

test("2,000 slow request bodies held at once: /health and a chat request still answer meanwhile, and each is answered 408 and closed within router.client_body_timeout", async (t) => {
  const h = await routerOnSim(t, `client_body_timeout = "4s"`);
  const sockets = await openMany({ path: h.socket }, 2_000);
  t.after(() => sockets.forEach((s) => s.destroy()));
  const since = performance.now();
  const closed = sockets.map((s) => untilClosed(s, since));
  const head = `POST /v1/chat/completions HTTP/1.1\r\nhost: llmsup\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{"model": "m", `;
  for (const s of sockets) s.write(head);
  // One more body byte on every connection every 250ms: never idle, never done.
  const drip = setInterval(() => sockets.forEach((s) => s.writable && s.write(" ")), 250);
  t.after(() => clearInterval(drip));

  await waitUntil("2,000 requests in flight", () => h.server.requestsInFlight === 2_000, { timeoutMs: 3_000 });
  const health = await h.fetch("/health");
  assert.deepEqual([health.status, await health.json()], [200, { status: "ok" }], "/health answers while 2,000 slow bodies are held");
  assert.deepEqual(await chat(h), { status: 200, tier: "0" }, "a chat request is routed while 2,000 slow bodies are held");
  const meanwhile = performance.now() - since;
  assert.ok(meanwhile < 3_500, `both answered before the slow bodies' timeout (${Math.round(meanwhile)}ms)`);

  const ends = await Promise.all(closed);
  clearInterval(drip);
  const slowest = Math.max(...ends.map((e) => e.ms));
  const earliest = Math.min(...ends.map((e) => e.ms));
  t.diagnostic(`2,000 slow bodies closed between ${Math.round(earliest)}ms and ${Math.round(slowest)}ms after they started`);
  assert.ok(earliest >= 3_500, `none was cut off before router.client_body_timeout (earliest ${Math.round(earliest)}ms)`);
  // Bounded, not held: within twice the timeout (Node checks every second; answering and closing 2,000 sockets on a
  // 2-core box running other test files takes a few seconds more — 4.6–5.6 s alone, up to 7.3 s under the full suite).
  assert.ok(slowest < 8_000, `every one was closed within twice router.client_body_timeout (slowest ${Math.round(slowest)}ms)`);
  assert.deepEqual(ends.filter((e) => e.text !== "" && !e.text.startsWith("HTTP/1.1 408 ")).map((e) => e.text.slice(0, 40)), [], "each got 408 or a plain close");
  await waitUntil("no request in flight", () => h.server.requestsInFlight === 0, { timeoutMs: 2_000 });
});

/**
 * Runs in a child process (its own file descriptors): opens N connections, then sends one GET /health
 * on each at once, so that all of them turn idle within a short while of each other, and holds them.
 */
const HOLDER = `
import { connect } from "node:net";
const [file, n] = [process.argv[1], Number(process.argv[2])];
const started = performance.now();
let failed = 0, closed = 0, minIdle = Infinity, maxIdle = 0;
function connectOne(tries = 0) {
  return new Promise((resolve) => {
    const s = connect(file);
    s.once("connect", () => resolve(s));
    s.once("error", (e) => {
      // Past the listen backlog: try again shortly, as a real client would.
      if (e.code === "EAGAIN" && tries < 500) setTimeout(() => connectOne(tries + 1).then(resolve), 5);
      else { failed++; resolve(undefined); }
    });
  });
}
const sockets = [];
for (let i = 0; i < n; i += 100) sockets.push(...(await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => connectOne()))).filter(Boolean));
const connectMs = performance.now() - started;
const answeredAt = await Promise.all(sockets.map((s) => new Promise((resolve) => {
  let text = "";
  let at;
  s.on("error", () => undefined);
  s.on("data", (d) => {
    text += d;
    if (at === undefined && text.endsWith('{"status":"ok"}')) { at = performance.now(); resolve(at); }
  });
  s.once("close", () => {
    if (at === undefined) { failed++; resolve(undefined); return; }
    const idle = performance.now() - at;
    minIdle = Math.min(minIdle, idle); maxIdle = Math.max(maxIdle, idle);
    if (++closed === n - failed) { console.log(JSON.stringify({ closed, minIdle, maxIdle })); process.exit(0); }
  });
  s.write("GET /health HTTP/1.1\\r\\nhost: llmsup\\r\\n\\r\\n");
})));
const held = answeredAt.filter((a) => a !== undefined).length;
console.log(JSON.stringify({ held, failed, connectMs, answerMs: performance.now() - started - connectMs }));
`;

test("10,000 idle keep-alive connections are held while /health and a chat request answer, and every one is closed after router.keepalive_timeout", async (t) => {
  const h = await routerOnSim(t, `keepalive_timeout = "5s"\nheader_timeout = "60s"\nmax_connections = 12000`);
  const one = await open({ path: h.socket });
  one.write(GET("/health"));
  assert.equal((await oneResponse(one)).headers["keep-alive"], "timeout=5", "the Keep-Alive header says when idle connections close");
  one.destroy();

  const rssBefore = process.memoryUsage().rss;
  const child = spawn(process.execPath, ["--input-type=module", "-e", HOLDER, h.socket, "10000"], { stdio: ["ignore", "pipe", "pipe"] });
  t.after(() => child.kill("SIGKILL"));
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  const line = (key: string) => waitUntil(`the holder's ${key} line`, () => out.split("\n").find((l) => l.includes(`"${key}"`)), { timeoutMs: 15_000 }).then((l) => JSON.parse(l) as Record<string, number>);

  const held = await line("held").catch((e: Error) => assert.fail(`${e.message}\n${err}`));
  assert.deepEqual([held.held, held.failed], [10_000, 0], "10,000 connections opened and answered");
  assert.ok(h.server.connectionsOpen >= 10_000, `the router holds them (${h.server.connectionsOpen})`);
  const rssHeld = process.memoryUsage().rss;

  const health = await h.fetch("/health");
  assert.equal(health.status, 200, "/health answers while 10,000 idle connections are held");
  await health.arrayBuffer();
  assert.deepEqual(await chat(h), { status: 200, tier: "0" }, "a chat request is routed while 10,000 idle connections are held");

  const closed = await line("closed");
  t.diagnostic(`10,000 connections opened in ${Math.round(held.connectMs!)}ms and answered in ${Math.round(held.answerMs!)}ms; router RSS +${Math.round((rssHeld - rssBefore) / 1048576)} MiB while held; closed after ${Math.round(closed.minIdle!)}–${Math.round(closed.maxIdle!)}ms idle`);
  assert.equal(closed.closed, 10_000, "every held connection was closed by the router");
  assert.ok(closed.minIdle! >= 4_900, `none before router.keepalive_timeout (earliest after ${Math.round(closed.minIdle!)}ms idle)`);
  assert.ok(closed.maxIdle! < 7_500, `every one soon after it (Node keeps a second's grace; latest after ${Math.round(closed.maxIdle!)}ms idle)`);
  await waitUntil("the router's count back to 0", () => h.server.connectionsOpen === 0, { timeoutMs: 2_000 });
});

test("beyond router.max_connections (unix socket and TCP together) a new connection gets 503 overloaded with Retry-After and is closed; one that sends nothing is closed within a second; a freed slot serves again", async (t) => {
  const h = await startRouter(t, backend("a", "vllm", 9) + `[[route]]\nmodel = "m"\ntiers = [{ backend = "a", model = "m" }]\n`, `max_connections = 50`);
  const tcp = { port: Number(new URL(h.tcpUrl).port) };
  const held = [...(await openMany({ path: h.socket }, 30)), ...(await openMany(tcp, 20))];
  t.after(() => held.forEach((s) => s.destroy()));
  for (const s of held) s.write(GET("/health"));
  const answers = await Promise.all(held.map(oneResponse));
  assert.ok(answers.every((a) => a.status === 200), "the first 50 connections are served");
  assert.equal(h.server.connectionsOpen, 50);

  for (const [where, request] of [
    [tcp, GET("/health")],
    [{ path: h.socket }, `POST /v1/chat/completions HTTP/1.1\r\nhost: llmsup\r\ncontent-type: application/json\r\ncontent-length: ${CHAT.length}\r\n\r\n${CHAT}`],
  ] as const) {
    const s = await open(where);
    const closed = untilClosed(s);
    s.write(request);
    const { text, ms } = await closed;
    const end = text.indexOf("\r\n\r\n");
    assert.match(text, /^HTTP\/1\.1 503 /, `the 51st connection (${"path" in where ? "unix socket" : "TCP"}) gets 503`);
    const head = text.slice(0, end).toLowerCase();
    assert.match(head, /\r\nretry-after: 1\r\n/);
    assert.match(head, /\r\nconnection: close\r\n/);
    assert.deepEqual(JSON.parse(text.slice(end + 4)), {
      error: { message: "llmsup holds router.max_connections (50) client connections already; retry shortly, and reuse keep-alive connections", type: "service_unavailable", param: null, code: "overloaded" },
    });
    assert.ok(ms < 1_000, `and is closed at once (${Math.round(ms)}ms)`);
  }

  const mute = await open(tcp);
  const muteEnd = await untilClosed(mute);
  assert.equal(muteEnd.text, "", "a refused connection that sends no request gets nothing");
  assert.ok(muteEnd.ms >= 800 && muteEnd.ms < 2_500, `and is closed after about a second (${Math.round(muteEnd.ms)}ms)`);
  assert.equal(h.server.connectionsOpen, 50, "refused connections never counted against the cap");

  held.pop()!.destroy();
  await waitUntil("a slot freed", () => h.server.connectionsOpen === 49, { timeoutMs: 2_000 });
  const next = await open(tcp);
  next.write(GET("/metrics"));
  const metrics = await oneResponse(next);
  next.destroy();
  assert.equal(metrics.status, 200, "the freed slot serves a new connection");
  assert.match(metrics.body, /^llmsup_client_connections 50$/m);
  assert.match(metrics.body, /^llmsup_client_connections_refused_total 3$/m);
});

test("llmsup run stops within daemon.shutdown_timeout while 2,000 slow request bodies are open: the drain gives up at its deadline and every slow client is cut off", async (t) => {
  const dir = tempDir(t);
  const config = path.join(dir, "supervisor.toml");
  writeFileSync(
    config,
    `[daemon]\nstate_dir = "${dir}/state"\nlog_dir = "${dir}/log"\nrun_dir = "${dir}/run"\nshutdown_timeout = "3s"\n\n` +
      `[router]\nsocket = "${dir}/run/api.sock"\nlisten = ""\nclient_body_timeout = "60s"\n\n[gpu]\nenabled = false\n\n` +
      `[[backend]]\nname = "cloud"\nkind = "openai"\nurl = "http://127.0.0.1:9/v1"\n\n[[route]]\nmodel = "m"\ntiers = [{ backend = "cloud", model = "m" }]\n`,
  );
  const d = await startDaemon(t, { dir, config, socket: `${dir}/run/api.sock`, control: `${dir}/run/control.sock`, ports: {} });
  const sockets = await openMany({ path: `${dir}/run/api.sock` }, 2_000);
  t.after(() => sockets.forEach((s) => s.destroy()));
  const closed = sockets.map((s) => untilClosed(s));
  for (const s of sockets) s.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: llmsup\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{"model": "m", `);
  const drip = setInterval(() => sockets.forEach((s) => s.writable && s.write(" ")), 250);
  t.after(() => clearInterval(drip));
  await new Promise((r) => setTimeout(r, 500)); // the daemon reads every request's headers

  const since = performance.now();
  process.kill(d.pid, "SIGTERM");
  const exit = await d.exited;
  const took = performance.now() - since;
  const ends = await Promise.all(closed);
  clearInterval(drip);
  const lastClosed = Math.max(...ends.map((e) => e.at)) - since;
  t.diagnostic(`stopped ${Math.round(took)}ms after SIGTERM with 2,000 slow bodies open; the last slow client was cut off after ${Math.round(lastClosed)}ms`);
  assert.equal(exit.code, 0, `the daemon exits cleanly:\n${d.stderr()}`);
  assert.ok(took < 4_000, `within daemon.shutdown_timeout (3s) and a little (took ${Math.round(took)}ms)`);
  assert.ok(took >= 1_000, `after waiting for the requests in flight up to the drain's deadline (took ${Math.round(took)}ms)`);
  assert.ok(lastClosed < 4_000, `every slow client's connection was closed within the deadline too (${Math.round(lastClosed)}ms)`);
  const events = d.stdout().split("\n").filter(Boolean).map((l) => (JSON.parse(l) as { event?: string }).event);
  assert.ok(events.includes("daemon.drain_timeout"), "the log says the drain gave up on them");
  assert.ok(!events.includes("daemon.stop.overran"), "no shutdown step overran its budget");
});
