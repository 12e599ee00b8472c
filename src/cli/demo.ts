/**
 * `llmsup demo`: the whole product on the built-in simulators — a simulated
 * vLLM primary on a simulated GPU, an Ollama tier and a CPU llama-server tier
 * — run in the foreground, with instructions to send requests and cause
 * failures. The terminal shows what an operator would hear of: one line per
 * event (`llmsup events -f`) and per alert mail, caught by a local SMTP
 * server and saved as .eml files; the daemon's JSON log goes to a file.
 */
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createServer } from "node:net";
import { eventLine } from "../control/event-filter.ts";
import { historyOfSupervisor } from "../daemon/history.ts";
import type { DaemonEvent } from "../daemon/deps.ts";
import { createLogger } from "../log/logger.ts";
import { selfCommand } from "../platform/self.ts";
import { defaultGpuState, writeGpuState } from "../sim/gpu/state.ts";
import { writeWrapper } from "../sim/gpu/cli.ts";
import { eventsCommand } from "./daemon-commands.ts";
import { startMailCatcher } from "./mail-catcher.ts";
import type { Io } from "./output.ts";
import { runCommand } from "./run.ts";

async function freePort(preferred?: number): Promise<number> {
  const attempt = (p: number) =>
    new Promise<number | undefined>((resolve) => {
      const s = createServer();
      s.once("error", () => resolve(undefined));
      s.listen(p, "127.0.0.1", () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => resolve(port));
      });
    });
  return (preferred !== undefined ? await attempt(preferred) : undefined) ?? (await attempt(0))!;
}

export interface DemoFiles {
  readonly dir: string;
  readonly config: string;
  readonly gpuState: string;
  readonly apiSocket: string;
  readonly listen: string;
  readonly ports: { readonly vllm: number; readonly ollama: number; readonly llamacpp: number };
  /** The daemon's JSON log. */
  readonly daemonLog: string;
  /** Where alert mails go: the local catcher's port and folder; absent when mails are off. */
  readonly mail?: { readonly port: number; readonly dir: string };
}

/** The demo's directory: the one asked for, else a new temporary one. */
async function demoDir(dir: string | undefined): Promise<string> {
  const d = dir ? path.resolve(dir) : await mkdtemp(path.join(tmpdir(), "llmsup-demo-"));
  await mkdir(d, { recursive: true });
  return d;
}

/** Writes the demo's configuration and simulated GPUs into a new directory; with `mail`, alerts go to that SMTP port. */
export async function writeDemo(options: { dir?: string; port?: number; mail?: { port: number; dir: string } } = {}): Promise<DemoFiles> {
  const dir = await demoDir(options.dir);
  const gpuState = path.join(dir, "gpus.json");
  await writeGpuState(gpuState, defaultGpuState(2));
  const nvidiaSmi = await writeWrapper(gpuState, path.join(dir, "nvidia-smi"));
  const ports = { vllm: await freePort(), ollama: await freePort(), llamacpp: await freePort() };
  const listen = `127.0.0.1:${await freePort(options.port ?? 8181)}`;
  const [node, entry] = selfCommand();
  const managed = (name: string, kind: string, port: number, gpus: number[], context: number, args: (string | number)[]) => `[[backend]]
name = "${name}"
kind = "${kind}"
url = "http://127.0.0.1:${port}"
gpus = ${JSON.stringify(gpus)}
context = ${context}
  [backend.process]
  command = ${JSON.stringify([node, entry, "sim", "backend", "--kind", kind, "--port", String(port), ...args.map(String)])}
  restart_sec = "2s"
  restart_max_delay = "20s"
  start_limit_interval = "5m"
  startup_timeout = "60s"
  stop_timeout = "5s"
`;
  const apiSocket = path.join(dir, "api.sock");
  const mail = options.mail;
  // The local catcher takes every mail, without TLS or login.
  const alerts = mail
    ? `
[alerts]
enabled = true
from = "llmsup demo <llmsup@demo.example>"
to = ["oncall@demo.example"]
coalesce_window = "1m"

[alerts.smtp]
host = "127.0.0.1"
port = ${mail.port}
security = "none"
timeout = "5s"
`
    : "";
  const text = `# llmsup demo: simulated backends on simulated GPUs (written by \`llmsup demo\`).
[daemon]
state_dir = "${dir}/state"
log_dir = "${dir}/log"
run_dir = "${dir}"
shutdown_timeout = "20s"

[router]
socket = "${apiSocket}"
listen = "${listen}"
queue_timeout = "0s"

[router.tier_defaults]
ttft_timeout = "10s"
idle_timeout = "5s"

[health]
interval = "2s"
timeout = "1s"
deep_interval = "20s"
deep_timeout = "3s"

[gpu]
nvidia_smi = "${nvidiaSmi}"
interval = "2s"
deadline = "6s"
kernel_log = "off"
# The remediation ladder acts here: a GPU that asks for a reset is reset after 10 s of quiet.
auto_reset = true
remediation_delay = "10s"

[host]
min_free_disk = "100MiB"
min_free_memory = "256MiB"
${alerts}
${managed("vllm-gpu0", "vllm", ports.vllm, [0], 8192, ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpus", "0", "--gpu-state", gpuState, "--load-time", "3s", "--token-rate", "60"])}
${managed("ollama", "ollama", ports.ollama, [1], 4096, ["--model", "llama3.1:8b-q4", "--gpus", "1", "--gpu-state", gpuState, "--load-time", "1s", "--token-rate", "40"])}
${managed("llamacpp-cpu", "llamacpp", ports.llamacpp, [], 4096, ["--model", "llama-3.1-8b-q4_k_m", "--load-time", "1s", "--token-rate", "15"])}
[[route]]
model = "llama-3.1-8b"
tiers = [
  { backend = "vllm-gpu0",    model = "meta-llama/Llama-3.1-8B-Instruct" },
  { backend = "ollama",       model = "llama3.1:8b-q4", max_tokens = 400 },
  { backend = "llamacpp-cpu", model = "llama-3.1-8b-q4_k_m", max_tokens = 200, temperature = 0,
    notice = "Response from the CPU fallback: may be slower or shorter" },
]
`;
  const config = path.join(dir, "supervisor.toml");
  await writeFile(config, text);
  const daemonLog = path.join(dir, "log", "llmsup.jsonl");
  return { dir, config, gpuState, apiSocket, listen, ports, daemonLog, ...(mail ? { mail } : {}) };
}

/** What the demo prints first; `mailsOff` says why there are no mails when there is no catcher. */
export function demoInstructions(f: DemoFiles, mailsOff?: string): string {
  const body = `'{"model":"llama-3.1-8b","messages":[{"role":"user","content":"Hello!"}]}'`;
  const fault = (body: string) => `curl -s -X POST http://127.0.0.1:${f.ports.vllm}/_sim/fault -d '${body}'`;
  const gpu = (set: string) => `llmsup sim gpu set --state ${f.gpuState} ${set}`;
  return `
llmsup demo — the whole product on simulated GPUs and inference servers.
  configuration  ${f.config}

First, in every other terminal, so that llmsup commands find this demo:
  export LLMSUP_CONFIG=${f.config}

Send a request (OpenAI-compatible), over the unix socket or TCP:
  curl -s --unix-socket ${f.apiSocket} http://llmsup/v1/chat/completions -H 'content-type: application/json' -d ${body} -D -
  curl -s http://${f.listen}/v1/chat/completions -H 'content-type: application/json' -d ${body} -D -

Watch it (another terminal; ./scripts/llmsup from a checkout):
  llmsup status --watch
  llmsup events -f

Cause failures and watch the failover — each with its undo:
  kill the vLLM primary          ${fault('{"crash":{"signal":"SIGKILL"}}')}
    undo: nothing to do — llmsup restarts it with backoff and the route comes back
  wedge it (/health stays 200)   ${fault('{"wedge":true}')}
    undo: curl -s -X DELETE http://127.0.0.1:${f.ports.vllm}/_sim/fault   (or let the deep probe restart it)
  answer 503 for a while         ${fault('{"status":{"code":503}}')}
    undo: curl -s -X DELETE http://127.0.0.1:${f.ports.vllm}/_sim/fault   (a background probe brings it back)
  overheat GPU 0                 ${gpu("--gpu 0 temperature_gpu=96 clocks_event_reasons=0x40")}
    undo: ${gpu("--gpu 0 temperature_gpu=40 clocks_event_reasons=0x1")}
  lose GPU 0 (XID 79-like)       ${gpu("failure=gpu_lost")}
    undo: ${gpu("failure=null")}   (a real one needs a reboot: llmsup holds vLLM and mails REBOOT REQUIRED)
  the driver asks for a reset    ${gpu('--gpu 0 recovery_action=Reset')}
    undo: nothing to do — after 10 s of quiet llmsup stops vLLM, runs nvidia-smi -r -i 0 and starts it again
  a stranger takes GPU 0's VRAM  llmsup sim gpu hog --state ${f.gpuState} --gpu 0 --mib 20000   then: llmsup restart vllm-gpu0
    undo: stop the hog (Ctrl-C) — vLLM waits "blocked" (the mail names the holder) and starts once the memory is free
  take the primary out on purpose  llmsup drain vllm-gpu0
    undo: llmsup undrain vllm-gpu0
  restart / reset a backend      llmsup restart vllm-gpu0   ·   llmsup reset vllm-gpu0 (after FATAL)
  rehearse a failure             llmsup drill primary-outage --duration 20s${f.mail ? "\n  send a test mail               llmsup test-alert" : ""}

${f.mail ? `mails: caught locally, saved in ${f.mail.dir}/` : `mails: off: ${mailsOff ?? "no mail catcher"}; the demo runs without alerts`}
log:   the daemon's JSON log is in ${f.daemonLog}

Stop with Ctrl-C. What happens, one line each — events, and the alert mails as they arrive:
`;
}

/** A line for the terminal: the shape of `llmsup events`, one per event or mail. */
const line = (at: number, kind: string, summary: string) => `${eventLine({ at, kind, summary })}\n`;

export async function demoCommand(o: { dir?: string; port?: number }, io: Io): Promise<number> {
  const startedAt = Date.now();
  const dir = await demoDir(o.dir);
  const mailDir = path.join(dir, "mail");
  const catcher = await startMailCatcher(mailDir, (m) => io.stdout.write(line(m.at, "mail", `${m.subject}  → ${m.file}`)));
  const files = await writeDemo({ ...o, dir, ...("port" in catcher ? { mail: { port: catcher.port, dir: mailDir } } : {}) });
  io.stdout.write(demoInstructions(files, "off" in catcher ? catcher.off : undefined));
  await mkdir(path.dirname(files.daemonLog), { recursive: true });
  const log = createWriteStream(files.daemonLog, { flags: "a" });
  // The history, as `llmsup events -f` shows it, from the moment the control socket answers (the daemon has started);
  // a backend's first readiness is good news the history leaves out (it keeps restarts), so it is said here.
  const follow = (e: DaemonEvent) => {
    if (!("event" in e)) return;
    if (e.event === "daemon.started") {
      const since = `${Date.now() - startedAt + 1}ms`;
      void eventsCommand({ config: files.config, follow: true, since }, io).catch((err: Error) => io.stderr.write(`llmsup demo: the event stream stopped: ${err.message}\n`));
    } else if (e.event === "backend.state" && e.to === "ready" && historyOfSupervisor(e) === undefined) {
      io.stdout.write(line(e.at, "ready", `${e.backend}: ${e.from} → ${e.to}: ${e.reason}`));
    }
  };
  let code: number;
  try {
    code = await runCommand({ config: files.config, logger: createLogger({ level: "info", destination: log }), onEvent: follow }, io);
  } finally {
    if ("close" in catcher) await catcher.close();
    await new Promise<void>((resolve) => log.end(resolve));
  }
  const mails = "count" in catcher ? `${catcher.count === 1 ? "1 mail" : `${catcher.count} mails`} caught, in ${mailDir}/` : "no mails (off)";
  io.stdout.write(`\nllmsup demo stopped: ${mails}; the daemon's JSON log is in ${files.daemonLog}; everything else in ${dir}/.\n`);
  return code;
}
