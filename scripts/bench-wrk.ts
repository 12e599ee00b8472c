/**
 * Helpers for `npm run bench` (scripts/bench.ts): the external load generator (wrk) and the
 * external reference proxy (nginx). `npm run bench` installs both from Debian when they are
 * missing (scripts/need-debian.sh, as root); when one is still missing, `findTools` says how
 * to get it and the benchmark falls back (its Node load generator instead of wrk; no nginx row).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import path from "node:path";
import { which } from "../test/helpers/tools.ts";

export interface Tools {
  /** Path of wrk, or undefined when it is not there. */
  readonly wrk?: string;
  /** Path of nginx, or undefined when it is not there. */
  readonly nginx?: string;
  /** Lines to print when something is missing (how to install it, what the benchmark does instead). */
  readonly notes: string[];
}

const INSTALL = "Debian/Ubuntu: `sudo apt-get install -y wrk nginx` (run `sudo apt-get update` first if apt cannot find them); Fedora: `sudo dnf install wrk nginx`; macOS: `brew install wrk nginx`";

/**
 * Looks for wrk and nginx. BENCH_WRK / BENCH_NGINX name a binary explicitly, or `none` to
 * run without it (to see the fallback).
 */
export function findTools(): Tools {
  const notes: string[] = [];
  const pick = (env: string | undefined, name: string, extra: string[] = []) => (env === "none" ? undefined : env || which(name, extra));
  let wrk = pick(process.env.BENCH_WRK, "wrk");
  if (wrk && spawnSync(wrk, ["-v"], { stdio: "ignore" }).error) wrk = undefined;
  let nginx = pick(process.env.BENCH_NGINX, "nginx", ["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"]);
  if (nginx && spawnSync(nginx, ["-v"], { stdio: "ignore" }).error) nginx = undefined;
  if (!wrk)
    notes.push(
      `wrk not found${process.env.BENCH_WRK === "none" ? " (BENCH_WRK=none)" : ""}: the TCP non-streaming runs use the benchmark's Node load generator instead, which saturates before the proxies do and so understates them (BENCH_WRK=/path/to/wrk names one).`,
    );
  if (!nginx)
    notes.push(
      `nginx not found${process.env.BENCH_NGINX === "none" ? " (BENCH_NGINX=none)" : ""}: no nginx reference row (BENCH_NGINX=/path/to/nginx names one; the benchmark starts its own instance on loopback, not the system service).`,
    );
  if (notes.length) notes.push(`To install: ${INSTALL}. (\`npm run bench\` installs them from Debian when it runs as root with apt-get.)`);
  return { ...(wrk ? { wrk } : {}), ...(nginx ? { nginx } : {}), notes };
}

// ------------------------------------------------------------------ wrk

export interface LoadResult {
  readonly rps: number;
  /** Milliseconds. */
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  /** Completed requests (any status). */
  readonly n: number;
  /** Responses with a status ≥ 400 (wrk: "Non-2xx or 3xx responses"; the Node generator: anything but 200). */
  readonly non2xx: number;
  /** Connect/read/write errors and timeouts. */
  readonly socketErrors: number;
  /** CPU of the target process per request, when it has one. */
  readonly cpuPerReqUs?: number;
}

/** Writes the Lua script that makes wrk POST `body` as JSON; returns its path. */
export function wrkScript(dir: string, body: string): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "post.lua");
  // A Lua long string: the JSON needs no escaping as long as it does not contain "]==]".
  if (body.includes("]==]")) throw new Error("request body contains ]==]");
  writeFileSync(file, `wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[${body}]==]\n`);
  return file;
}

/** "123.45us" | "1.20ms" | "2.00s" | "1.00m" → milliseconds. */
export function wrkDuration(s: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(s.trim());
  if (!m) return NaN;
  const v = Number(m[1]);
  return v * { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "us" | "ms" | "s" | "m" | "h"];
}

/** Parses `wrk --latency` output. Throws when the essentials are not there. */
export function parseWrk(text: string): Omit<LoadResult, "cpuPerReqUs"> {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  const n = /^\s*(\d+) requests in ([\d.]+\w+)/m.exec(text);
  const p50 = /^\s*50%\s+(\S+)/m.exec(text);
  const p99 = /^\s*99%\s+(\S+)/m.exec(text);
  const lat = /^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)/m.exec(text);
  if (!rps || !n || !p50 || !p99) throw new Error(`unexpected wrk output:\n${text}`);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  return {
    rps: Number(rps[1]),
    n: Number(n[1]),
    p50: wrkDuration(p50[1]!),
    p99: wrkDuration(p99[1]!),
    max: lat ? wrkDuration(lat[3]!) : NaN,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: sock ? sock.slice(1, 5).reduce((a, b) => a + Number(b), 0) : 0,
  };
}

/** `wrk -t1 -c<connections> -d<seconds>s --latency -s <script> <url>`; resolves with the parsed output. */
export function runWrk(wrk: string, script: string, url: string, seconds: number, connections: number): Promise<Omit<LoadResult, "cpuPerReqUs">> {
  return new Promise((resolve, reject) => {
    const child = spawn(wrk, ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", "--timeout", "10s", "-s", script, url], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`wrk exited ${code}:\n${out}`));
      try {
        resolve(parseWrk(out));
      } catch (e) {
        reject(e);
      }
    });
  });
}

// ------------------------------------------------------------------ nginx

/**
 * A minimal nginx reverse proxy in `dir`: one process (`master_process off`, so it is one
 * single-threaded process like the Node proxies and its CPU can be read from its pid),
 * listening on 127.0.0.1:`port`, keepalive connections to `upstream` (host:port).
 */
export function nginxConfig(dir: string, port: number, upstream: string): string {
  mkdirSync(path.join(dir, "tmp"), { recursive: true });
  const file = path.join(dir, "nginx.conf");
  const t = (n: string) => path.join(dir, "tmp", n);
  writeFileSync(
    file,
    `master_process off;
worker_processes 1;
pid ${path.join(dir, "nginx.pid")};
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${t("body")};
  proxy_temp_path ${t("proxy")};
  fastcgi_temp_path ${t("fastcgi")};
  uwsgi_temp_path ${t("uwsgi")};
  scgi_temp_path ${t("scgi")};
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  upstream bench_upstream {
    server ${upstream};
    keepalive 256;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Streams go out chunk by chunk, as llmsup and the Node proxy send them.
      proxy_buffering off;
    }
  }
}
`,
  );
  return file;
}

/** Starts `nginx -c FILE -p DIR -g 'daemon off;'` and resolves once it accepts connections on `port`. */
export async function startNginx(nginx: string, dir: string, port: number, upstream: string): Promise<ChildProcess> {
  const file = nginxConfig(dir, port, upstream);
  const child = spawn(nginx, ["-c", file, "-p", dir, "-g", "daemon off;"], { stdio: ["ignore", "ignore", "pipe"], detached: true });
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const end = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`nginx exited ${child.exitCode ?? child.signalCode}: ${err.slice(-2000)}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (up) return child;
    if (Date.now() > end) {
      child.kill("SIGKILL");
      throw new Error(`nginx did not listen on ${port} within 10 s: ${err.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGQUIT (graceful shutdown), SIGKILL after 5 s. */
export async function stopNginx(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGQUIT");
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([gone, new Promise<void>((r) => (timer = setTimeout(r, 5_000)))]);
  clearTimeout(timer);
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}
