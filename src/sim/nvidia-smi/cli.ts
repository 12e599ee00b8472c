/**
 * `llmsup sim nvidia-smi ARGS...`: a stand-in for nvidia-smi driven by the
 * simulated GPU state file (`--sim-state PATH`, or LLMSUP_SIM_GPU_STATE).
 * No state file means no driver. The state is read again for every sample, so
 * a test can break a GPU while a loop (`-lms`) is running.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Io } from "../../cli/output.ts";
import { readGpuState, withoutDeadProcesses } from "../gpu/state.ts";
import type { SimGpuState } from "../gpu/state.ts";
import { DRIVER_NOT_LOADED, parseSmiArgs, renderSample } from "./format.ts";
import type { SmiResult } from "./format.ts";

export const STATE_ENV = "LLMSUP_SIM_GPU_STATE";

/** Removes `--sim-state PATH` / `--sim-state=PATH` (ours, not nvidia-smi's) from the arguments. */
export function extractSimState(argv: readonly string[], env: NodeJS.ProcessEnv): { statePath: string | undefined; rest: string[] } {
  const rest: string[] = [];
  let statePath = env[STATE_ENV] || undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--sim-state") statePath = argv[++i];
    else if (arg.startsWith("--sim-state=")) statePath = arg.slice("--sim-state=".length);
    else rest.push(arg);
  }
  return { statePath, rest };
}

/** The state, or undefined when there is none (no driver). A file caught mid-write by a non-atomic writer is read again. */
async function loadState(file: string | undefined): Promise<SimGpuState | undefined> {
  if (!file) return undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      return await readGpuState(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      if (attempt >= 5) throw e;
      await sleep(20);
    }
  }
}

/** Blocks forever, as nvidia-smi does on a wedged driver; only a signal ends it. */
function hang(): Promise<number> {
  setInterval(() => {}, 2 ** 31 - 1);
  return new Promise<number>(() => {});
}

function write(io: Io, result: SmiResult): void {
  if (result.stdout) io.stdout.write(result.stdout);
  if (result.stderr) io.stderr.write(result.stderr);
}

export async function runNvidiaSmi(argv: readonly string[], io: Io): Promise<number> {
  const { statePath, rest } = extractSimState(argv, io.env);
  const parsed = parseSmiArgs(rest);
  if (!parsed.ok) {
    write(io, parsed.result);
    return parsed.result.exitCode;
  }
  const { args } = parsed;
  // A reader that went away ends a loop, as SIGPIPE ends the real one.
  let closed = false;
  io.stdout.on("error", () => {
    closed = true;
  });
  for (let first = true; ; first = false) {
    const state = await loadState(statePath);
    const result = state ? renderSample(args, withoutDeadProcesses(state), { header: first }) : DRIVER_NOT_LOADED;
    if (result === "hang") return hang();
    write(io, result);
    if (result.exitCode !== 0 || args.loopMs === null) return result.exitCode;
    await sleep(args.loopMs);
    if (closed) return 1;
  }
}
