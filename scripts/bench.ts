/**
 * `npm run bench`: llmsup's router against the floor any Node proxy pays, in one run.
 *
 *   (a) direct      load → fast upstream
 *   (b) nginx       load → nginx (Debian's, started here on loopback from a generated config, one
 *                   process, keepalive upstream connections) → upstream
 *   (c) minimal     load → a pass-through proxy written here (node:http + undici, no routing logic) → upstream
 *   (d) llmsup tcp  load → `llmsup run` over 127.0.0.1 → upstream
 *   (e) llmsup unix load → `llmsup run` over its unix socket → upstream
 *
 * Non-streaming requests at 1, 4 and 32 connections (BENCH_CONNECTIONS) with wrk
 * (`wrk -t1 -cN -dSECONDS --latency`), which, unlike a Node client, does not
 * saturate before the proxies do; the unix socket (wrk cannot use one) with the
 * Node/undici generator at BENCH_CONCURRENCY, next to the minimal proxy and llmsup
 * tcp measured the same way. wrk and nginx are not installed by the benchmark:
 * without wrk every non-streaming run uses the Node generator, without nginx there
 * is no nginx row (it says how to install them: `apt-get install -y wrk nginx`).
 * Then: many concurrent SSE streams with
 * small chunks; a failover run (SIGKILL of the primary under steady load); an
 * idle daemon; time to first token with a wedged primary, hedged and not.
 * Every process is separate; CPU is read from /proc for the proxy
 * process only. Loopback only, bounded in count and time.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, Pool } from "undici";
import { findTools, runWrk, startNginx, stopNginx, wrkScript, type LoadResult } from "./bench-wrk.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** The built llmsup (what ships); `npm run bench` builds it first. */
const CLI = path.join(ROOT, "dist/cli/main.js");
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
/** Concurrency of the Node-generator runs (unix socket; failover). */
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);
/** Connection counts of the non-streaming TCP runs (wrk -c). */
const CONNECTIONS = (process.env.BENCH_CONNECTIONS ?? "1,4,32").split(",").map(Number).filter((n) => n > 0);
const STREAMS = Number(process.env.BENCH_STREAMS ?? 1000);
/** Rounds of the minimal proxy and llmsup, taken in turn at each connection count; the median round is shown (this VM's figures move by ±10 % from run to run). */
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const CHUNKS = Number(process.env.BENCH_CHUNKS ?? 20);
const CLK_TCK = 100;

const BODY = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Say hello." }], max_tokens: 8 });
const ANSWER = JSON.stringify({
  id: "chatcmpl-bench",
  object: "chat.completion",
  created: 0,
  model: "bench-upstream",
  choices: [{ index: 0, message: { role: "assistant", content: "Hello there, friend." }, finish_reason: "stop" }],
  usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 },
});

// ------------------------------------------------------------------ harness

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createNetServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

function start(args: string[], ready: RegExp | "ready", env: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env }, detached: true });
    let out = "";
    const onData = (d: Buffer) => {
      out += d.toString();
      if (ready === "ready" ? out.includes("ready\n") : ready.test(out)) {
        child.stdout!.off("data", onData);
        child.stdout!.resume();
        resolve(child);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.resume();
    child.on("exit", (c) => reject(new Error(`${args.join(" ")} exited ${c}: ${out.slice(-2000)}`)));
  });
}

function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return ((Number(rest[11]) + Number(rest[12])) * 1000) / CLK_TCK;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : 0;
}

function pct(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;
}

interface Target {
  readonly name: string;
  readonly origin: string;
  readonly socketPath?: string;
  readonly pid?: number;
}

function poolFor(t: Target, connections: number): Pool {
  return new Pool(t.origin, { connections, pipelining: 1, ...(t.socketPath ? { socketPath: t.socketPath } : {}) });
}

/** Non-streaming requests at fixed concurrency for `seconds`. */
async function closedLoop(t: Target, seconds: number, concurrency: number): Promise<LoadResult & { errors: number }> {
  const pool = poolFor(t, concurrency);
  const lat: number[] = [];
  let non2xx = 0;
  let socketErrors = 0;
  const end = performance.now() + seconds * 1000;
  const cpu0 = t.pid ? cpuMs(t.pid) : 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        try {
          const r = await pool.request({ path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json" }, body: BODY });
          await r.body.text();
          if (r.statusCode !== 200) non2xx++;
          lat.push(performance.now() - s);
        } catch {
          socketErrors++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = t.pid ? cpuMs(t.pid) - cpu0 : undefined;
  await pool.close();
  lat.sort((a, b) => a - b);
  return { rps: lat.length / elapsed, p50: pct(lat, 50), p99: pct(lat, 99), max: lat.at(-1) ?? NaN, errors: non2xx + socketErrors, non2xx, socketErrors, n: lat.length, cpuPerReqUs: cpu === undefined ? undefined : (cpu * 1000) / Math.max(1, lat.length) };
}

/** `streams` concurrent SSE streams of `chunks` content chunks each (the upstream sends max_tokens of them); counts chunks and clean endings. */
async function streams(t: Target, count: number, chunkCount = CHUNKS): Promise<{ ok: number; errors: number; chunks: number; cpuMs?: number; cpuPer1kChunksMs?: number; peakRssMb?: number; seconds: number }> {
  const agent = new Agent({ connections: count, pipelining: 1, ...(t.socketPath ? { connect: { socketPath: t.socketPath } } : {}) });
  const body = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "stream" }], stream: true, max_tokens: chunkCount });
  let ok = 0;
  let errors = 0;
  let chunks = 0;
  let peak = 0;
  const cpu0 = t.pid ? cpuMs(t.pid) : 0;
  const sampler = t.pid ? setInterval(() => (peak = Math.max(peak, rssMb(t.pid!))), 100) : undefined;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: count }, async () => {
      try {
        const r = await agent.request({ origin: t.origin, path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json" }, body });
        let text = "";
        for await (const c of r.body) text += c.toString();
        chunks += (text.match(/"content":"t\d+ "/g) ?? []).length;
        if (r.statusCode === 200 && text.endsWith("data: [DONE]\n\n")) ok++;
        else errors++;
      } catch {
        errors++;
      }
    }),
  );
  if (sampler) clearInterval(sampler);
  const cpu = t.pid ? cpuMs(t.pid) - cpu0 : undefined;
  await agent.close();
  return { ok, errors, chunks, ...(cpu === undefined ? {} : { cpuMs: cpu }), seconds: (performance.now() - t0) / 1000, cpuPer1kChunksMs: cpu === undefined ? undefined : (cpu * 1000) / Math.max(1, chunks), peakRssMb: t.pid ? peak : undefined };
}

function daemonConfig(dir: string, backends: string, routes: string, listen: string, extra = ""): string {
  const file = path.join(dir, "supervisor.toml");
  writeFileSync(
    file,
    `[daemon]\nstate_dir = "${dir}/state"\nlog_dir = "${dir}/log"\nrun_dir = "${dir}/run"\nlog_level = "warn"\nshutdown_timeout = "10s"\n[router]\nsocket = "${dir}/run/api.sock"\nlisten = "${listen}"\nmax_attempts = 4\n[health]\ninterval = "5s"\n${extra}\n${backends}\n${routes}`,
  );
  return file;
}

async function waitReady(socket: string, seconds = 30): Promise<void> {
  const agent = new Agent({ connect: { socketPath: socket } });
  const end = Date.now() + seconds * 1000;
  for (;;) {
    try {
      const r = await agent.request({ origin: "http://llmsup", path: "/health/ready", method: "GET" });
      await r.body.text();
      if (r.statusCode === 200) break;
    } catch {
      /* not yet */
    }
    if (Date.now() > end) throw new Error("llmsup did not become ready");
    await new Promise((r) => setTimeout(r, 100));
  }
  await agent.close();
}

const fmt = (n: number | undefined, d = 2) => (n === undefined || Number.isNaN(n) ? "–" : n.toFixed(d));

function spawnDaemon(config: string): ChildProcess {
  const child = spawn(process.execPath, [CLI, "run", "--config", config], { stdio: ["ignore", "ignore", "inherit"], detached: true });
  return child;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), "llmsup-bench-"));
  const children: ChildProcess[] = [];
  const kill = () => {
    for (const c of children)
      try {
        process.kill(-c.pid!, "SIGKILL");
      } catch {
        /* gone */
      }
  };
  process.on("exit", kill);
  const self = fileURLToPath(import.meta.url);
  const out: string[] = [];
  const say = (line = "") => {
    out.push(line);
    process.stdout.write(`${line}\n`);
  };
  const tools = findTools();
  const started = performance.now();
  try {
    const upPort = await freePort();
    children.push(await start([self, "upstream", String(upPort)], "ready"));
    const upstream = `http://127.0.0.1:${upPort}`;
    const minPort = await freePort();
    const minimal = await start([self, "minimal", String(minPort), upstream], "ready");
    children.push(minimal);
    const llPort = await freePort();
    const cfgDir = path.join(dir, "router");
    mkdirSync(cfgDir, { recursive: true });
    const cfg = daemonConfig(
      cfgDir,
      `[gpu]\nenabled = false\n[[backend]]\nname = "fast"\nkind = "vllm"\nurl = "${upstream}"\n`,
      `[[route]]\nmodel = "bench"\ntiers = [{ backend = "fast", model = "bench-upstream" }]\n`,
      `127.0.0.1:${llPort}`,
    );
    const daemon = spawnDaemon(cfg);
    children.push(daemon);
    await waitReady(path.join(cfgDir, "run/api.sock"));
    // A fresh daemon's memory, before any request: the RSS target is about this.
    await new Promise((r) => setTimeout(r, 1_000));
    const freshRssMb = rssMb(daemon.pid!);

    const nginxPort = tools.nginx ? await freePort() : 0;
    const nginx = tools.nginx ? await startNginx(tools.nginx, path.join(dir, "nginx"), nginxPort, `127.0.0.1:${upPort}`) : undefined;
    if (nginx) children.push(nginx);

    const targets: Target[] = [
      { name: "direct", origin: upstream },
      { name: "minimal proxy", origin: `http://127.0.0.1:${minPort}`, pid: minimal.pid },
      { name: "llmsup tcp", origin: `http://127.0.0.1:${llPort}`, pid: daemon.pid },
      { name: "llmsup unix", origin: "http://llmsup", socketPath: path.join(cfgDir, "run/api.sock"), pid: daemon.pid },
    ];
    // Everything a TCP load generator can reach, in table order.
    const tcpTargets: Target[] = [
      targets[0]!,
      ...(nginx ? [{ name: "nginx", origin: `http://127.0.0.1:${nginxPort}`, pid: nginx.pid }] : []),
      targets[1]!,
      targets[2]!,
    ];
    const unix = targets[3]!;
    const script = tools.wrk ? wrkScript(path.join(dir, "wrk"), BODY) : "";
    /** One non-streaming run: wrk where there is one (TCP only), else the Node generator. */
    const load = async (t: Target, seconds: number, connections: number): Promise<LoadResult> => {
      if (!tools.wrk || t.socketPath) return closedLoop(t, seconds, connections);
      const cpu0 = t.pid ? cpuMs(t.pid) : 0;
      const r = await runWrk(tools.wrk, script, `${t.origin}/v1/chat/completions`, seconds, connections);
      const cpu = t.pid ? cpuMs(t.pid) - cpu0 : undefined;
      return { ...r, cpuPerReqUs: cpu === undefined ? undefined : (cpu * 1000) / Math.max(1, r.n) };
    };
    const row = (name: string, r: LoadResult) =>
      say(`  ${name.padEnd(14)} ${fmt(r.rps, 0).padStart(7)}  ${fmt(r.p50, 3).padStart(7)}  ${fmt(r.p99, 3).padStart(7)}  ${String(r.non2xx).padStart(7)}  ${String(r.socketErrors).padStart(8)}  ${fmt(r.cpuPerReqUs, 0).padStart(10)}`);
    const header = "  target          req/s     p50 ms   p99 ms  non-2xx  sock err  CPU/req µs";

    const nodeRuns = tools.wrk ? 3 : CONNECTIONS.length; // unix (and, with wrk, minimal + llmsup tcp for reference) on the Node generator
    const runs = CONNECTIONS.length * (tcpTargets.length + 2 * (ROUNDS - 1)) + nodeRuns;
    say(`llmsup benchmark — node ${process.versions.node}, ${SECONDS}s per run, loopback only, ${availableParallelism()} CPUs`);
    say(`load generator: ${tools.wrk ? `${tools.wrk} (-t1), Node/undici for the unix socket` : "Node/undici (wrk missing)"}; nginx: ${tools.nginx ?? "missing"}`);
    for (const n of tools.notes) say(`NOTE: ${n}`);
    say(`non-streaming: ${tcpTargets.length + 1} warm-ups × 3 s + ${runs} runs × ${SECONDS} s ≈ ${tcpTargets.length * 3 + 3 + runs * SECONDS} s; then streaming, idle (12 s), failover (~10 s), hedging (~60 s)`);

    // Warm-up: JIT and pools settle in every target (1 s is not enough for the router's heavier code
    // path), and in the Node generator itself for the unix socket.
    const warmConns = Math.max(...CONNECTIONS);
    for (const t of tcpTargets) await load(t, 3, warmConns);
    await closedLoop(unix, 3, CONCURRENCY);

    const ratio = (a: number, b: number | undefined) => (b === undefined ? "–" : `×${fmt(a / b)}`);
    for (const conns of CONNECTIONS) {
      say();
      say(`Non-streaming, ${conns} connection${conns === 1 ? "" : "s"} (${tools.wrk ? `wrk -t1 -c${conns} -d${SECONDS}s` : `Node generator, ${conns} concurrent`})`);
      say(header);
      const res: Record<string, LoadResult> = {};
      // The references once; the minimal proxy and llmsup in turn, ROUNDS times, each shown by its median round.
      const paired = tcpTargets.filter((t) => t.name === "minimal proxy" || t.name === "llmsup tcp");
      const rounds: Record<string, LoadResult[]> = {};
      for (let i = 0; i < ROUNDS; i++) for (const t of paired) (rounds[t.name] ??= []).push(await load(t, SECONDS, conns));
      for (const t of tcpTargets) {
        const all = rounds[t.name];
        row(t.name, (res[t.name] = all ? [...all].sort((a, b) => a.rps - b.rps)[all.length >> 1]! : await load(t, SECONDS, conns)));
      }
      if (ROUNDS > 1) say(`  llmsup tcp / minimal throughput by round (taken in turn): ${rounds["llmsup tcp"]!.map((r, i) => ratio(r.rps, rounds["minimal proxy"]![i]!.rps)).join(" ")}`);
      // Without wrk every row comes from the same generator, so unix belongs in the same table.
      if (!tools.wrk) row(unix.name, (res[unix.name] = await closedLoop(unix, SECONDS, conns)));
      const base = res["minimal proxy"]!;
      const ng = res.nginx;
      for (const n of tools.wrk ? ["llmsup tcp"] : ["llmsup tcp", "llmsup unix"]) {
        const r = res[n]!;
        say(`  ${n}: throughput ${ratio(r.rps, base.rps)} minimal, ${ratio(r.rps, ng?.rps)} nginx; p99 ${ratio(r.p99, base.p99)} minimal; CPU/req ${ratio(r.cpuPerReqUs ?? NaN, base.cpuPerReqUs)} minimal, ${ratio(r.cpuPerReqUs ?? NaN, ng?.cpuPerReqUs)} nginx`);
      }
      const direct = res.direct!;
      say(`  added latency p50 over direct: ${["nginx", "minimal proxy", "llmsup tcp"].filter((n) => res[n]).map((n) => `${n} ${fmt(res[n]!.p50 - direct.p50, 3)} ms`).join(", ")}`);
    }
    if (tools.wrk) {
      // wrk cannot use a unix socket: the unix figures come from the Node generator, with the
      // minimal proxy and llmsup tcp measured the same way next to them.
      say();
      say(`Non-streaming, unix socket (wrk cannot use one): Node/undici generator, ${CONCURRENCY} concurrent`);
      say(header);
      const res: Record<string, LoadResult> = {};
      for (const t of [targets[1]!, targets[2]!, unix]) row(t.name, (res[t.name] = await closedLoop(t, SECONDS, CONCURRENCY)));
      const u = res[unix.name]!;
      say(`  llmsup unix: throughput ${ratio(u.rps, res["minimal proxy"]!.rps)} minimal, ${ratio(u.rps, res["llmsup tcp"]!.rps)} llmsup tcp; p99 ${ratio(u.p99, res["minimal proxy"]!.p99)} minimal, ${ratio(u.p99, res["llmsup tcp"]!.p99)} llmsup tcp`);
    }

    say();
    say(`Streaming, ${STREAMS} concurrent streams × ${CHUNKS} chunks`);
    say("  target          ok     errors  seconds  CPU/1k chunks ms  peak RSS MB");
    // nginx (buffering off) is the native reference; every target's stream path is warmed up first, untimed.
    const streamTargets = [...(nginx ? [tcpTargets[1]!] : []), ...targets.slice(1)];
    for (const t of streamTargets) await streams(t, STREAMS);
    const sres: Record<string, Awaited<ReturnType<typeof streams>>> = {};
    for (const t of streamTargets) {
      const r = await streams(t, STREAMS);
      sres[t.name] = r;
      say(`  ${t.name.padEnd(14)} ${String(r.ok).padStart(5)}  ${String(r.errors).padStart(6)}  ${fmt(r.seconds).padStart(7)}  ${fmt(r.cpuPer1kChunksMs).padStart(16)}  ${fmt(r.peakRssMb, 0).padStart(11)}`);
    }
    say(`  llmsup tcp / minimal CPU per chunk: ×${fmt((sres["llmsup tcp"]!.cpuPer1kChunksMs ?? NaN) / (sres["minimal proxy"]!.cpuPer1kChunksMs ?? NaN))}`);
    // The figures above include each stream's own cost (request, headers, routing) spread over its chunks; the
    // cost of one more chunk is the difference to streams five times as long, per chunk of the difference.
    const longer = CHUNKS * 5;
    say(`  marginal CPU per chunk (streams of ${longer} chunks against ${CHUNKS}):`);
    const marginal: Record<string, number> = {};
    for (const t of streamTargets) {
      const r = await streams(t, STREAMS, longer);
      const short = sres[t.name]!;
      marginal[t.name] = r.cpuMs !== undefined && short.cpuMs !== undefined ? ((r.cpuMs - short.cpuMs) * 1000) / Math.max(1, r.chunks - short.chunks) : NaN;
      say(`    ${t.name.padEnd(14)} ${fmt(marginal[t.name], 1)} µs (${r.ok} ok, ${r.errors} errors)`);
    }
    say(`    llmsup tcp / minimal: ×${fmt(marginal["llmsup tcp"]! / marginal["minimal proxy"]!)}${nginx ? `, / nginx: ×${fmt(marginal["llmsup tcp"]! / marginal.nginx!)}` : ""}`);
    if (nginx) await stopNginx(nginx);

    // Idle: no traffic, probes on.
    await new Promise((r) => setTimeout(r, 2_000));
    const c0 = cpuMs(daemon.pid!);
    await new Promise((r) => setTimeout(r, 10_000));
    say();
    say(`Idle daemon (router only, probes on): ${fmt(((cpuMs(daemon.pid!) - c0) / 10_000) * 100)}% of a core, RSS ${fmt(rssMb(daemon.pid!), 0)} MB after the runs above, ${fmt(freshRssMb, 0)} MB fresh`);
    process.kill(-daemon.pid!, "SIGTERM");

    await failover(dir, say);
    await hedging(dir, say, children);
    say();
    say(`Total: ${fmt((performance.now() - started) / 1000, 0)} s`);
  } finally {
    kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** SIGKILL of a managed primary under steady non-streaming load: client-visible errors and worst latency. */
async function failover(dir: string, say: (l?: string) => void): Promise<void> {
  const fdir = path.join(dir, "failover");
  mkdirSync(fdir, { recursive: true });
  const p1 = await freePort();
  const p2 = await freePort();
  const sim = (port: number) => JSON.stringify([process.execPath, CLI, "sim", "backend", "--kind", "llamacpp", "--port", String(port), "--load-time", "0s", "--ttft", "0s", "--token-rate", "100000"]);
  const cfg = daemonConfig(
    fdir,
    `[gpu]\nenabled = false\n[[backend]]\nname = "primary"\nkind = "llamacpp"\nurl = "http://127.0.0.1:${p1}"\n  [backend.process]\n  command = ${sim(p1)}\n  restart_sec = "1s"\n  restart_max_delay = "1s"\n[[backend]]\nname = "fallback"\nkind = "llamacpp"\nurl = "http://127.0.0.1:${p2}"\n  [backend.process]\n  command = ${sim(p2)}\n`,
    `[[route]]\nmodel = "bench"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`,
    "",
  );
  const daemon = spawnDaemon(cfg);
  try {
    const socket = path.join(fdir, "run/api.sock");
    await waitReady(socket);
    const agent = new Agent({ connect: { socketPath: socket } });
    // Wait until both tiers are up.
    await new Promise((r) => setTimeout(r, 1_500));
    const t: Target = { name: "failover", origin: "http://llmsup", socketPath: socket };
    const before = await closedLoop(t, 2, CONCURRENCY);
    const primaryPid = Number(JSON.parse(await (await fetchControl(path.join(fdir, "run/control.sock"))).text()).backends.find((b: { name: string }) => b.name === "primary").pid);
    const during = closedLoop(t, 6, CONCURRENCY);
    await new Promise((r) => setTimeout(r, 1_000));
    process.kill(primaryPid, "SIGKILL");
    const r = await during;
    await agent.close();
    say();
    say(`Failover: SIGKILL of the primary (pid ${primaryPid}) under ${CONCURRENCY} concurrent requests`);
    say(`  requests ${r.n}, client-visible errors ${r.errors}, p99 before ${fmt(before.p99, 2)} ms, during ${fmt(r.p99, 2)} ms, worst ${fmt(r.max, 1)} ms (added ${fmt(r.max - before.max, 1)} ms)`);
  } finally {
    await stopDaemon(daemon);
  }
}

/** Stops a daemon the way systemd would (SIGTERM, which also stops its backends), SIGKILL only if it has not gone after 20 s. */
async function stopDaemon(daemon: ChildProcess): Promise<void> {
  if (daemon.exitCode !== null || daemon.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => daemon.once("exit", () => resolve()));
  try {
    process.kill(daemon.pid!, "SIGTERM");
  } catch {
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([gone, new Promise<void>((r) => (timer = setTimeout(r, 20_000)))]);
  clearTimeout(timer);
  try {
    process.kill(-daemon.pid!, "SIGKILL");
  } catch {
    /* gone */
  }
}

/** Time to first token through llmsup while the primary is wedged (stream headers, then nothing): hedged after 500 ms, and not hedged (ttft_timeout 5 s). */
async function hedging(dir: string, say: (l?: string) => void, children: ChildProcess[]): Promise<void> {
  const wedgedPort = await freePort();
  const fastPort = await freePort();
  const self = fileURLToPath(import.meta.url);
  children.push(await start([self, "wedged", String(wedgedPort)], "ready"), await start([self, "upstream", String(fastPort)], "ready"));
  say();
  say("Time to first token, primary wedged (stream headers, then nothing), 10 sequential streams");
  say("  hedge_after     p50 ms   max ms   first tokens");
  for (const mode of ["500ms", "off"]) {
    const hdir = path.join(dir, `hedge-${mode}`);
    mkdirSync(hdir, { recursive: true });
    const cfg = daemonConfig(
      hdir,
      `[gpu]\nenabled = false\n[[backend]]\nname = "wedged"\nkind = "openai"\nurl = "http://127.0.0.1:${wedgedPort}"\n[[backend]]\nname = "fast"\nkind = "openai"\nurl = "http://127.0.0.1:${fastPort}"\n`,
      `[[route]]\nmodel = "bench"\ntiers = [{ backend = "wedged", model = "m", ttft_timeout = "5s" }, { backend = "fast", model = "m" }]\n`,
      "",
      `hedge_after = "${mode}"`,
    );
    // The [router] keys come before the sections daemonConfig appends.
    writeFileSync(cfg, readFileSync(cfg, "utf8").replace(`\nhedge_after = "${mode}"\n`, "\n").replace("max_attempts = 4\n", `max_attempts = 4\nhedge_after = "${mode}"\n`));
    const daemon = spawnDaemon(cfg);
    try {
      const socket = path.join(hdir, "run/api.sock");
      await waitReady(socket);
      const agent = new Agent({ connect: { socketPath: socket } });
      const ttfts: number[] = [];
      for (let i = 0; i < 10; i++) {
        const t0 = performance.now();
        const r = await agent.request({ origin: "http://llmsup", path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "bench", messages: [{ role: "user", content: "hi" }], stream: true }) });
        for await (const c of r.body) {
          if (String(c).includes('"content":"t')) {
            ttfts.push(performance.now() - t0);
            break;
          }
        }
        r.body.destroy();
      }
      await agent.close();
      const sorted = [...ttfts].sort((a, b) => a - b);
      say(`  ${mode.padEnd(14)} ${fmt(pct(sorted, 50), 0).padStart(7)}  ${fmt(sorted.at(-1), 0).padStart(7)}   ${ttfts.length}/10`);
    } finally {
      await stopDaemon(daemon);
    }
  }
}

async function fetchControl(socket: string): Promise<{ text(): Promise<string> }> {
  const agent = new Agent({ connect: { socketPath: socket } });
  const r = await agent.request({ origin: "http://control", path: "/status", method: "GET" });
  const text = await r.body.text();
  await agent.close();
  return { text: async () => text };
}

// ------------------------------------------------------------------ child roles

const role = process.argv[2];
if (role === "upstream") {
  const port = Number(process.argv[3]);
  const chunk = (i: number) => `data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"bench-upstream","choices":[{"index":0,"delta":{"content":"t${i} "},"finish_reason":null}]}\n\n`;
  createHttpServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d));
    req.on("end", () => {
      if (req.url === "/health" || req.url === "/v1/models") return void res.end("{}");
      if (body.includes('"stream":true')) {
        const count = Number(/"max_tokens":(\d+)/.exec(body)?.[1] ?? CHUNKS);
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(`data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"bench-upstream","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n`);
        let i = 0;
        const t = setInterval(() => {
          if (i < count) res.write(chunk(i++));
          else {
            clearInterval(t);
            res.end(`data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"bench-upstream","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n`);
          }
        }, 20);
        res.on("close", () => clearInterval(t));
        return;
      }
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(ANSWER) });
      res.end(ANSWER);
    });
  }).listen(port, "127.0.0.1", () => process.stdout.write("ready\n"));
} else if (role === "wedged") {
  // A wedged engine: health answers, a stream gets its headers and then nothing.
  createHttpServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    if (req.method === "GET") return void res.end("{}");
    req.resume();
    res.writeHead(200, { "content-type": "text/event-stream" });
  }).listen(Number(process.argv[3]), "127.0.0.1", () => process.stdout.write("ready\n"));
} else if (role === "minimal") {
  // The floor: parse nothing, route nothing, stream through.
  const [port, upstream] = [Number(process.argv[3]), process.argv[4]!];
  const pool = new Pool(upstream, { connections: null, pipelining: 1, keepAliveTimeout: 30_000 });
  createHttpServer({ keepAliveTimeout: 60_000 }, async (req, res) => {
    try {
      const up = await pool.request({ path: req.url!, method: req.method as "POST", headers: { "content-type": "application/json" }, body: req });
      res.writeHead(up.statusCode, { "content-type": String(up.headers["content-type"] ?? "application/json") });
      for await (const c of up.body) res.write(c);
      res.end();
    } catch {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    }
  }).listen(port, "127.0.0.1", () => process.stdout.write("ready\n"));
} else {
  await main();
}

