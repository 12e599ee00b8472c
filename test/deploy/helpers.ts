/** The deploy/ examples against the real tools: finding the binaries, running them bounded, a daemon on TCP for them, and the metric names in PromQL and in a scrape. */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { REPO_ROOT } from "../helpers/cli.ts";
import { which } from "../helpers/tools.ts";
import { startDaemon, writeDaemonConfig, type DaemonFiles, type RunningDaemon, type SimBackendSpec } from "../helpers/daemon.ts";
import { freePort } from "../helpers/sim.ts";

export { which };

export const DEPLOY = path.join(REPO_ROOT, "deploy");

export interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program to its end, killed after `timeoutMs`. */
export function runTool(bin: string, args: readonly string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface Service {
  readonly child: ChildProcess;
  output(): string;
}

/** Starts a long-running program; the test's end stops it (SIGTERM, then SIGKILL after 5 s). */
export function startService(t: { after(fn: () => void | Promise<void>): void }, bin: string, args: readonly string[], options: { cwd?: string } = {}): Service {
  const child = spawn(bin, args, { cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out = (out + d).slice(-20_000)));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (out = (out + d).slice(-20_000)));
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  t.after(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const hard = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(hard);
  });
  return { child, output: () => out };
}

export interface TcpDaemon {
  readonly d: RunningDaemon;
  readonly files: DaemonFiles;
  readonly port: number;
  /** http://127.0.0.1:<port> */
  readonly url: string;
}

/** A daemon on simulated backends whose router also listens on a loopback TCP port (what a scraper or a load balancer reaches); `edit` may change the configuration file and return more environment. */
export async function startTcpDaemon(
  t: { after(fn: () => void | Promise<void>): void },
  backends: readonly SimBackendSpec[],
  routes: string,
  options: { extra?: string; env?: NodeJS.ProcessEnv; edit?: (files: DaemonFiles) => Promise<NodeJS.ProcessEnv | void> | NodeJS.ProcessEnv | void } = {},
): Promise<TcpDaemon> {
  const files = await writeDaemonConfig(t, backends, routes, options.extra ?? "");
  const port = await freePort();
  const text = readFileSync(files.config, "utf8");
  if (!text.includes('listen = ""\n')) throw new Error("the daemon configuration has no router.listen to set");
  writeFileSync(files.config, text.replace('listen = ""\n', `listen = "127.0.0.1:${port}"\n`));
  const env = (await options.edit?.(files)) ?? {};
  const d = await startDaemon(t, files, { ...options.env, ...env });
  return { d, files, port, url: `http://127.0.0.1:${port}` };
}

/** The metric names a /metrics text exports: every # HELP / # TYPE name (metrics without samples yet included) and sample name; a histogram's _bucket, _sum and _count, a summary's _sum and _count. */
export function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split("\n")) {
    const meta = /^# (?:HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*)(?: (\w+))?/.exec(line);
    if (meta) {
      const name = meta[1]!;
      names.add(name);
      if (line.startsWith("# TYPE") && meta[2] === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(name + s);
      if (line.startsWith("# TYPE") && meta[2] === "summary") for (const s of ["_sum", "_count"]) names.add(name + s);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (sample) names.add(sample[1]!);
  }
  return names;
}

const PROMQL_WORDS = new Set(["and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "inf", "nan"]);

/**
 * The metric names a PromQL expression reads: every identifier that is not a
 * function or aggregation (followed by "("), a keyword, a label (inside {…} or
 * by/without/on/ignoring/group_x (…)), a duration ([…]), a string or a
 * Grafana variable ($x, ${x}).
 */
export function promqlMetricNames(expr: string): string[] {
  let e = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\$\{[^}]*\}|\$\w+/g, " ")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  e = e.replace(/\boffset\s+\S+/g, " ");
  const names = new Set<string>();
  for (const m of e.matchAll(/(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    if (m[2]) continue;
    const word = m[1]!;
    if (PROMQL_WORDS.has(word.toLowerCase())) continue;
    names.add(word);
  }
  return [...names];
}

/** GET url's text with an optional bearer key; throws on a non-200. */
export async function scrape(url: string, key?: string): Promise<string> {
  const r = await fetch(url, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`GET ${url}: ${r.status} ${text.slice(0, 300)}`);
  return text;
}
