/**
 * Running the `llmsup` CLI from tests, two ways:
 *
 * - runCliInProcess: the same code path as the executable (runMain in
 *   src/cli/entry.ts: commander, its exit-code mapping, the internal-error
 *   catch) with captured stdout/stderr and the given environment, in this
 *   process. Use it wherever the process boundary is not what is tested: it
 *   costs milliseconds where a child costs the TypeScript load of a new Node.
 * - runLlmsup: the real executable as a child process, as an operator runs it.
 *   For what only a process shows: `llmsup run`, signals, exit of the process,
 *   the demo, the simulated backend, relative paths against a cwd, and the
 *   entry point itself.
 */
import { spawn } from "node:child_process";
import { PassThrough, Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { runMain } from "../../src/cli/entry.ts";
import type { Io } from "../../src/cli/output.ts";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
/**
 * The program child processes run (the daemon, the simulators): the built one
 * in dist/ — what is installed — when ./scripts/test has just built it
 * (LLMSUP_TEST_BUILT=1; a fresh Node then skips stripping the TypeScript
 * sources' types), else the sources themselves.
 */
export const CLI_ENTRY = fileURLToPath(new URL(process.env.LLMSUP_TEST_BUILT === "1" ? "../../dist/cli/main.js" : "../../src/cli/main.ts", import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The child's environment: this process's, NO_COLOR, then the test's (undefined removes a variable). */
function cliEnv(env: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries({ ...process.env, NO_COLOR: "1", ...env })) if (v !== undefined) out[k] = v;
  return out;
}

export function runLlmsup(args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_ENTRY, ...args], {
      cwd: options.cwd ?? REPO_ROOT,
      env: cliEnv(options.env),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 20_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A stream that keeps what is written to it, as a pipe would (not a TTY). */
class Capture extends Writable {
  #text = "";
  constructor() {
    super({ decodeStrings: false });
  }
  override _write(chunk: string | Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.#text += typeof chunk === "string" ? chunk : chunk.toString("utf8");
    done();
  }
  get text(): string {
    return this.#text;
  }
}

/** Commands that own the process (signal handlers, process.exit, servers left running): spawn them with runLlmsup. */
const PROCESS_BOUND: readonly (readonly string[])[] = [["run"], ["demo"], ["sim", "backend"], ["sim", "vllm-engine"]];

/**
 * `llmsup ARGS...` in this process: exit status, stdout and stderr as runLlmsup
 * gives them (signal always null). The environment is this process's plus
 * NO_COLOR=1 plus `env`, as for a child. Relative paths resolve against this
 * process's cwd, not REPO_ROOT: pass absolute ones (or spawn with a cwd).
 */
export async function runCliInProcess(args: readonly string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  if (PROCESS_BOUND.some((cmd) => cmd.every((word, i) => args[i] === word))) {
    throw new Error(`llmsup ${args.slice(0, 2).join(" ")} owns its process: run it with runLlmsup`);
  }
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await runMain(args, { stdout, stderr, env: cliEnv(options.env) });
  return { code, signal: null, stdout: stdout.text, stderr: stderr.text };
}

/**
 * An in-process command (`(io) => exit status`, e.g. the simulators' CLIs) run
 * with stdout and stderr collected from two pipes, and `env` as its environment.
 */
export async function runIo(run: (io: Io) => Promise<number>, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  const code = await run({ stdout, stderr, env });
  return { code, stdout: out, stderr: err };
}
