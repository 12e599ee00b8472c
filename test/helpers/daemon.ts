/** The daemon as a real process (`llmsup run`) on simulated backends. */
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { CLI_ENTRY, REPO_ROOT, runCliInProcess, type CliResult } from "./cli.ts";
import { freePort } from "./sim.ts";
import { Agent } from "undici";
import { simCommand } from "./supervise.ts";
import { tempDir } from "./tmp.ts";

export interface SimBackendSpec {
  readonly name: string;
  readonly kind: "vllm" | "ollama" | "llamacpp";
  readonly args?: readonly (string | number)[];
  readonly process?: string;
  readonly extra?: string;
}

export interface DaemonFiles {
  readonly dir: string;
  readonly config: string;
  readonly socket: string;
  readonly control: string;
  readonly ports: Record<string, number>;
}

/** Writes a configuration whose backends are simulators on fresh ports. */
export async function writeDaemonConfig(t: { after(fn: () => void): void }, backends: readonly SimBackendSpec[], routes: string, extra = ""): Promise<DaemonFiles> {
  const dir = tempDir(t);
  const ports: Record<string, number> = {};
  let text = `[daemon]\nstate_dir = "${dir}/state"\nlog_dir = "${dir}/log"\nrun_dir = "${dir}/run"\nshutdown_timeout = "15s"\n\n[router]\nsocket = "${dir}/run/api.sock"\nlisten = ""\n\n[gpu]\nenabled = false\n\n[health]\ninterval = "300ms"\ntimeout = "500ms"\n\n${extra}\n`;
  for (const b of backends) {
    // A port just freed can be handed out again at once: two backends of one configuration never share one (the config refuses it).
    let port = await freePort();
    while (Object.values(ports).includes(port)) port = await freePort();
    ports[b.name] = port;
    // Defaults a spec's own process keys replace.
    const defaults = ['restart_sec = "200ms"', 'restart_max_delay = "1s"', 'start_limit_interval = "1m"', 'stop_timeout = "3s"'].filter((l) => !(b.process ?? "").includes(`${l.split(" ")[0]} =`));
    text += `[[backend]]\nname = "${b.name}"\nkind = "${b.kind}"\nurl = "http://127.0.0.1:${port}"\n${b.extra ?? ""}\n  [backend.process]\n  command = ${simCommand(["--kind", b.kind, "--port", port, "--load-time", "0s", ...(b.args ?? [])])}\n${defaults.map((l) => `  ${l}\n`).join("")}${b.process ?? ""}\n`;
  }
  text += routes;
  const config = path.join(dir, "supervisor.toml");
  writeFileSync(config, text);
  return { dir, config, socket: `${dir}/run/api.sock`, control: `${dir}/run/control.sock`, ports };
}

export interface RunningDaemon {
  readonly child: ChildProcess;
  readonly pid: number;
  stdout(): string;
  stderr(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** `llmsup ARGS --config <config>`. */
  cli(...args: string[]): Promise<CliResult>;
}

export async function startDaemon(t: { after(fn: () => void | Promise<void>): void }, files: DaemonFiles, env: NodeJS.ProcessEnv = {}): Promise<RunningDaemon> {
  const child = spawn(process.execPath, [CLI_ENTRY, "run", "--config", files.config], { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  // A daemon that is SIGKILLed leaves its backends (own process groups) running: stop it the way systemd would, then make sure.
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid!, "SIGTERM");
      } catch {
        /* gone */
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000).unref())]);
    }
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      /* gone */
    }
  });
  const d: RunningDaemon = {
    child,
    pid: child.pid!,
    stdout: () => out,
    stderr: () => err,
    exited,
    // The CLI as a client in this process (the daemon is its own): its requests cross the real control socket.
    cli: (...args: string[]) => runCliInProcess([...args, "--config", files.config]),
  };
  // Up once the control socket answers.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = await d.cli("status", "--json");
    if (r.code !== 3) break;
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`daemon exited (${child.exitCode ?? child.signalCode}) before it came up:\n${err}\n${out.slice(-3000)}`);
    if (Date.now() > deadline) throw new Error(`daemon did not come up:\n${err}\n${out.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return d;
}

export interface StatusJson {
  running: boolean;
  summary: { code: number; state: string; text: string };
  router: { routes: { model: string; serving_tier: number; serving_backend: string | null }[] };
  backends: { name: string; state: string; pid: number | null; health: string; restarts: string | null; generation: number | null }[];
  events: { kind: string; summary: string }[];
}

export async function status(d: RunningDaemon): Promise<{ code: number | null; json: StatusJson }> {
  const r = await d.cli("status", "--json");
  return { code: r.code, json: JSON.parse(r.stdout) as StatusJson };
}

/** Polls `llmsup status --json` until `pred` holds. */
export async function waitStatus(d: RunningDaemon, what: string, pred: (s: StatusJson, code: number | null) => boolean, ms = 15_000): Promise<{ code: number | null; json: StatusJson }> {
  const deadline = Date.now() + ms;
  let last: { code: number | null; json: StatusJson } | undefined;
  for (;;) {
    last = await status(d);
    if (pred(last.json, last.code)) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last status:\n${JSON.stringify(last.json, null, 1).slice(0, 4000)}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** Requests to a route through a router socket, one after another every `everyMs`, until the test ends; what each got. */
export function requestPump(t: { after(fn: () => void | Promise<void>): void }, socket: string, model: string, everyMs = 50): { readonly answers: { status: number; tier: string | null }[] } {
  const agent = new Agent({ connect: { socketPath: socket }, connections: 4 });
  const answers: { status: number; tier: string | null }[] = [];
  let pumping = true;
  const pump = (async () => {
    while (pumping) {
      const r = await agent
        .request({ origin: "http://llmsup", path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 4 }) })
        .then(async (res) => ({ status: res.statusCode, tier: (await res.body.text(), (res.headers["x-llmsup-tier"] as string | undefined) ?? null) }))
        .catch(() => undefined);
      if (r) answers.push(r);
      await new Promise((res) => setTimeout(res, everyMs));
    }
  })();
  t.after(async () => {
    pumping = false;
    await pump;
    await agent.close();
  });
  return { answers };
}
