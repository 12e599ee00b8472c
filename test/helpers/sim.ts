/** Starting simulated backends as real child processes, each in its own process group. */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { once } from "node:events";
import { CLI_ENTRY, REPO_ROOT } from "./cli.ts";

export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

export interface SimProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly url: string;
  stdout(): string;
  stderr(): string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** POST /_sim/fault. */
  setFault(fault: unknown): Promise<void>;
  /** Kills the whole process group. */
  killGroup(signal?: NodeJS.Signals): void;
}

const LISTENING = /(?:running on|listening on|Listening on) (?:http:\/\/)?[^:\s]+:(\d+)/;

export interface StartOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Resolve once the process prints this, instead of its listening line. */
  readonly waitFor?: RegExp | "nothing";
  readonly timeoutMs?: number;
}

/** Starts `llmsup sim backend ARGS` and resolves once it listens (or prints `waitFor`). */
export async function startSim(t: { after(fn: () => void | Promise<void>): void }, args: readonly string[], options: StartOptions = {}): Promise<SimProcess> {
  const child = spawn(process.execPath, [CLI_ENTRY, "sim", "backend", ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const pid = child.pid!;
  const killGroup = (signal: NodeJS.Signals = "SIGKILL") => {
    try {
      process.kill(-pid, signal);
    } catch {
      /* already gone */
    }
  };
  t.after(() => killGroup("SIGKILL"));

  let port = 0;
  if (options.waitFor !== "nothing") {
    const deadline = Date.now() + (options.timeoutMs ?? 15_000);
    const want = options.waitFor;
    let done = false;
    exited.then(() => (done = true));
    while (!done && Date.now() < deadline) {
      const m = LISTENING.exec(out);
      if (want ? want.test(out + err) : m) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const m = LISTENING.exec(out);
    if (m) port = Number(m[1]);
    if (!want && !m) throw new Error(`simulator did not start listening:\nstdout: ${out}\nstderr: ${err}`);
  }
  const url = `http://127.0.0.1:${port}`;
  return {
    child,
    pid,
    port,
    url,
    stdout: () => out,
    stderr: () => err,
    exited,
    killGroup,
    async setFault(fault) {
      const r = await fetch(`${url}/_sim/fault`, { method: "POST", body: JSON.stringify(fault) });
      if (r.status !== 200) throw new Error(`setting fault failed: ${r.status} ${await r.text()}`);
    },
  };
}

/** Reads a whole HTTP response as raw text with a deadline; "timeout" if nothing complete arrived. */
export async function rawRequest(url: string, init: RequestInit & { timeoutMs?: number } = {}): Promise<{ status: number; headers: Headers; body: string } | "timeout"> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), init.timeoutMs ?? 2_000);
  try {
    const r = await fetch(url, { ...init, signal: ctl.signal });
    const body = await r.text();
    return { status: r.status, headers: r.headers, body };
  } catch (e) {
    if ((e as Error).name === "AbortError") return "timeout";
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

export function chatBody(content: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ model: extra.model, messages: [{ role: "user", content }], ...extra });
}

export interface Observed {
  /** undefined when no response head arrived. */
  readonly status?: number;
  readonly headers: Record<string, string | string[] | undefined>;
  /** Everything received before the end, an error or the deadline. */
  readonly body: string;
  /** complete: the response ended normally; cut: the connection broke mid-response; silent: the deadline passed first. */
  readonly outcome: "complete" | "cut" | "silent";
  /** Milliseconds from sending to the first body byte, if any arrived. */
  readonly firstByteMs?: number;
}

/** Sends a request with node:http and reports exactly what came back within `deadlineMs`. */
export async function observe(url: string, options: { method?: string; body?: string; deadlineMs?: number } = {}): Promise<Observed> {
  const { request } = await import("node:http");
  const started = performance.now();
  return new Promise((resolve) => {
    let status: number | undefined;
    let headers: Record<string, string | string[] | undefined> = {};
    let body = "";
    let firstByteMs: number | undefined;
    let settled = false;
    const finish = (outcome: Observed["outcome"]) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve({ status, headers, body, outcome, firstByteMs });
    };
    const req = request(url, { method: options.method ?? (options.body ? "POST" : "GET"), headers: options.body ? { "content-type": "application/json" } : {} }, (res) => {
      status = res.statusCode;
      headers = res.headers;
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        firstByteMs ??= performance.now() - started;
        body += d;
      });
      res.on("end", () => finish("complete"));
      res.on("aborted", () => finish("cut"));
      res.on("error", () => finish("cut"));
    });
    req.on("error", () => finish("cut"));
    const timer = setTimeout(() => finish("silent"), options.deadlineMs ?? 2_000);
    req.end(options.body);
  });
}

/** The `data:` payloads of an SSE body, in order. */
export function sseData(body: string): string[] {
  return body
    .split("\n\n")
    .map((e) => e.trim())
    .filter((e) => e.startsWith("data:"))
    .map((e) => e.slice(5).trim());
}

/** Concatenated delta content of an OpenAI chat SSE body. */
export function sseContent(body: string): string {
  return sseData(body)
    .filter((d) => d !== "[DONE]")
    .map((d) => {
      try {
        const c = JSON.parse(d) as { choices?: { delta?: { content?: string }; text?: string }[] };
        return c.choices?.[0]?.delta?.content ?? c.choices?.[0]?.text ?? "";
      } catch {
        return "";
      }
    })
    .join("");
}
