/**
 * The shipped load-balancer examples in front of two real llmsup boxes (daemons
 * on simulated backends): nginx passes requests to the other box while one box
 * has no serving tier, without a client seeing a failure, and sends traffic
 * back once it recovers; HAProxy accepts its configuration and its active
 * check on /health/ready?route= takes the box out.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { waitStatus } from "../helpers/daemon.ts";
import { freePort } from "../helpers/sim.ts";
import { tempDir } from "../helpers/tmp.ts";
import { waitUntil } from "../helpers/wait.ts";
import { DEPLOY, runTool, startService, startTcpDaemon, which, type TcpDaemon } from "./helpers.ts";

const NGINX_CONF = readFileSync(path.join(DEPLOY, "nginx/llmsup-fleet.conf"), "utf8");
const HAPROXY_CFG = readFileSync(path.join(DEPLOY, "haproxy/llmsup-fleet.cfg"), "utf8");

/** One box: route "llama" on two tiers whose backends carry the box's name (x-llmsup-backend tells the boxes apart). */
async function startBox(t: { after(fn: () => void | Promise<void>): void }, box: string): Promise<TcpDaemon> {
  const b = await startTcpDaemon(
    t,
    [
      { name: `${box}-primary`, kind: "llamacpp" },
      { name: `${box}-fallback`, kind: "llamacpp" },
    ],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "${box}-primary", model = "m" }, { backend = "${box}-fallback", model = "m" }]\n`,
  );
  await waitStatus(b.d, `${box} ready on tier 0`, (s) => s.backends.every((x) => x.state === "ready") && s.router.routes[0]!.serving_tier === 0, 20_000);
  return b;
}

async function stopTiers(b: TcpDaemon, box: string): Promise<void> {
  for (const name of [`${box}-primary`, `${box}-fallback`]) {
    const r = await b.d.cli("stop", name);
    assert.equal(r.code, 0, r.stderr);
  }
  await waitUntil(`${box}'s /health/ready 503`, async () => (await fetch(`${b.url}/health/ready?route=llama`)).status === 503, { timeoutMs: 15_000, everyMs: 100 });
}

async function startTiers(b: TcpDaemon, box: string): Promise<void> {
  for (const name of [`${box}-primary`, `${box}-fallback`]) {
    const r = await b.d.cli("start", name);
    assert.equal(r.code, 0, r.stderr);
  }
  await waitUntil(`${box}'s /health/ready 200`, async () => (await fetch(`${b.url}/health/ready?route=llama`)).status === 200, { timeoutMs: 20_000, everyMs: 100 });
}

interface Answer {
  readonly status: number;
  readonly box: string | null;
  readonly at: number;
}

/** Chat requests through the load balancer one after another until the test ends: each one's status and the box (backend name prefix) that answered. */
function pump(t: { after(fn: () => void | Promise<void>): void }, url: string): Answer[] {
  const answers: Answer[] = [];
  let on = true;
  const loop = (async () => {
    while (on) {
      const r = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "llama", messages: [{ role: "user", content: "hi" }], max_tokens: 4 }),
        signal: AbortSignal.timeout(20_000),
      })
        .then(async (res) => {
          await res.arrayBuffer();
          return { status: res.status, box: res.headers.get("x-llmsup-backend")?.split("-")[0] ?? null, at: Date.now() };
        })
        .catch(() => ({ status: 0, box: null, at: Date.now() }));
      answers.push(r);
      await new Promise((res) => setTimeout(res, 40));
    }
  })();
  t.after(async () => {
    on = false;
    await loop;
  });
  return answers;
}

test("the nginx example keeps the settings a fleet of llmsup boxes needs", () => {
  assert.match(NGINX_CONF, /proxy_next_upstream error timeout http_503 non_idempotent;/, "a 503 (no serving tier, shutting down) or a refused connection goes to the next box, POST included");
  assert.match(NGINX_CONF, /max_fails=\d+ fail_timeout=\d+s/, "passive failure handling");
  assert.match(NGINX_CONF, /proxy_buffering off;/, "streams pass token by token");
  assert.match(NGINX_CONF, /proxy_read_timeout (\d{3,})s;/, "a long read timeout for streams");
  assert.match(HAPROXY_CFG, /option httpchk GET \/health\/ready\?route=/, "HAProxy checks a route's readiness");
});

test("nginx in front of two boxes: traffic reaches both; with every tier of box A down no client request fails (B answers); once A's tiers are back, traffic returns to A", async (t) => {
  const nginx = which("nginx");
  if (!nginx) return t.skip("nginx not installed: apt-get install nginx");
  const [a, b] = await Promise.all([startBox(t, "a"), startBox(t, "b")]);
  const dir = tempDir(t);
  for (const d of ["body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"]) mkdirSync(path.join(dir, d));
  const lb = await freePort();
  // The shipped file with the boxes' loopback addresses and port; fail_timeout shortened so the test need not wait 10s for A's return.
  const site = NGINX_CONF.replace("server gpu-01.example.com:8181", `server 127.0.0.1:${a.port}`)
    .replace("server gpu-02.example.com:8181", `server 127.0.0.1:${b.port}`)
    .replace("listen 8080;", `listen 127.0.0.1:${lb};`)
    .replaceAll("fail_timeout=10s", "fail_timeout=2s");
  assert.ok(site.includes(`127.0.0.1:${a.port}`) && site.includes(`127.0.0.1:${b.port}`) && site.includes(`listen 127.0.0.1:${lb}`), "the example's upstream servers and listener were found");
  writeFileSync(path.join(dir, "llmsup-fleet.conf"), site);
  writeFileSync(
    path.join(dir, "nginx.conf"),
    [
      // As root nginx's workers would run as nobody, who cannot reach this test's private directory.
      ...(process.getuid?.() === 0 ? ["user root;"] : []),
      "worker_processes 1;",
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/logs/error.log notice;`,
      "events { worker_connections 256; }",
      "http {",
      `  access_log ${dir}/logs/access.log;`,
      `  client_body_temp_path ${dir}/body;`,
      `  proxy_temp_path ${dir}/proxy;`,
      `  fastcgi_temp_path ${dir}/fastcgi;`,
      `  uwsgi_temp_path ${dir}/uwsgi;`,
      `  scgi_temp_path ${dir}/scgi;`,
      `  include ${dir}/llmsup-fleet.conf;`,
      "}",
      "",
    ].join("\n"),
  );
  const check = await runTool(nginx, ["-t", "-p", dir, "-c", path.join(dir, "nginx.conf")]);
  assert.equal(check.code, 0, check.stderr);
  const proc = startService(t, nginx, ["-p", dir, "-c", path.join(dir, "nginx.conf"), "-g", "daemon off;"]);
  const url = `http://127.0.0.1:${lb}`;
  await waitUntil(`nginx listening\n${proc.output()}`, async () => (await fetch(`${url}/health/ready`).catch(() => undefined))?.status === 200, { timeoutMs: 10_000, everyMs: 100 });

  const answers = pump(t, url);
  await waitUntil("answers from both boxes", () => answers.some((x) => x.box === "a") && answers.some((x) => x.box === "b"), { timeoutMs: 15_000, everyMs: 50 });

  await stopTiers(a, "a");
  const downFrom = answers.length;
  await waitUntil("30 answers while box A has no tier", () => answers.length >= downFrom + 30, { timeoutMs: 30_000, everyMs: 50 });
  const whileDown = answers.slice(downFrom);
  assert.deepEqual(whileDown.filter((x) => x.status !== 200), [], "no client request failed while box A was down");
  assert.deepEqual([...new Set(whileDown.map((x) => x.box))], ["b"], "box B answered all of them");
  const access = readFileSync(path.join(dir, "logs/access.log"), "utf8");
  assert.ok(access.length > 0);

  await startTiers(a, "a");
  const upFrom = answers.length;
  await waitUntil("box A answering again", () => answers.slice(upFrom).some((x) => x.box === "a"), { timeoutMs: 20_000, everyMs: 50 });
  assert.deepEqual(answers.filter((x) => x.status !== 200), [], "no client request failed at any time");
});

/** The shipped HAProxy file with the boxes' loopback addresses, the listener on `lb`, and the check on route "llama". */
function haproxyConfig(a: number, b: number, lb: number): string {
  const cfg = HAPROXY_CFG.replace("server gpu-01 gpu-01.example.com:8181", `server gpu-01 127.0.0.1:${a}`)
    .replace("server gpu-02 gpu-02.example.com:8181", `server gpu-02 127.0.0.1:${b}`)
    .replace("bind :8080", `bind 127.0.0.1:${lb}`);
  assert.ok(cfg.includes(`127.0.0.1:${a}`) && cfg.includes(`127.0.0.1:${b}`) && cfg.includes(`bind 127.0.0.1:${lb}`), "the example's servers and bind were found");
  return cfg;
}

test("haproxy -c accepts the shipped HAProxy configuration with the boxes' addresses, and refuses a broken copy", async (t) => {
  const haproxy = which("haproxy");
  if (!haproxy) return t.skip("haproxy not installed: apt-get install haproxy");
  const dir = tempDir(t);
  writeFileSync(path.join(dir, "ok.cfg"), haproxyConfig(18181, 18182, 18080));
  const ok = await runTool(haproxy, ["-c", "-f", path.join(dir, "ok.cfg")]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  writeFileSync(path.join(dir, "bad.cfg"), haproxyConfig(18181, 18182, 18080).replace("http-check expect status 200", "http-check expect stat 200"));
  const bad = await runTool(haproxy, ["-c", "-f", path.join(dir, "bad.cfg")]);
  assert.notEqual(bad.code, 0, "the check bites");
});

test("HAProxy's active check on /health/ready?route=llama takes box A out when its tiers are down (traffic only to B, no client failure) and back when they return", async (t) => {
  const haproxy = which("haproxy");
  if (!haproxy) return t.skip("haproxy not installed: apt-get install haproxy");
  const [a, b] = await Promise.all([startBox(t, "a"), startBox(t, "b")]);
  const dir = tempDir(t);
  const lb = await freePort();
  writeFileSync(path.join(dir, "haproxy.cfg"), haproxyConfig(a.port, b.port, lb));
  const proc = startService(t, haproxy, ["-db", "-f", path.join(dir, "haproxy.cfg")]);
  const url = `http://127.0.0.1:${lb}`;
  await waitUntil("HAProxy listening", async () => (await fetch(`${url}/health/ready`).catch(() => undefined))?.status === 200, { timeoutMs: 10_000, everyMs: 100 });
  const answers = pump(t, url);
  await waitUntil(`answers from both boxes through HAProxy\n${proc.output()}`, () => answers.some((x) => x.box === "a") && answers.some((x) => x.box === "b"), { timeoutMs: 20_000, everyMs: 50 });

  await stopTiers(a, "a");
  await waitUntil(`HAProxy marks gpu-01 DOWN\n${proc.output()}`, () => /llmsup_fleet\/gpu-01 is DOWN/.test(proc.output()), { timeoutMs: 15_000, everyMs: 100 });
  assert.match(proc.output(), /llmsup_fleet\/gpu-01 is DOWN.*(503|Layer7)/);
  const downFrom = answers.length;
  await waitUntil("20 answers with gpu-01 out", () => answers.length >= downFrom + 20, { timeoutMs: 20_000, everyMs: 50 });
  assert.deepEqual([...new Set(answers.slice(downFrom).map((x) => x.box))], ["b"], "only box B gets traffic");

  await startTiers(a, "a");
  await waitUntil(`HAProxy marks gpu-01 UP\n${proc.output()}`, () => /llmsup_fleet\/gpu-01 is UP/.test(proc.output()), { timeoutMs: 15_000, everyMs: 100 });
  const upFrom = answers.length;
  await waitUntil("box A answering again", () => answers.slice(upFrom).some((x) => x.box === "a"), { timeoutMs: 15_000, everyMs: 50 });
  assert.deepEqual(answers.filter((x) => x.status !== 200), [], "no client request failed at any time (503s retried on the other box)");
});
