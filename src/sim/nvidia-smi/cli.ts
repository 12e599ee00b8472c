/**
 * `llmsup sim nvidia-smi ARGS...`: a stand-in for nvidia-smi driven by the
 * simulated GPU state file (`--sim-state PATH`, or LLMSUP_SIM_GPU_STATE).
 * No state file means no driver. The state is read again for every sample, so
 * a test can break a GPU while a loop (`-lms`) is running. `-r` resets GPUs
 * in the state file (reset.ts).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Io } from "../../cli/output.ts";
import { pidAlive, readGpuState, updateGpuState, withoutDeadProcesses } from "../gpu/state.ts";
import type { SimGpuState } from "../gpu/state.ts";
import { DRIVER_NOT_LOADED, parseSmiArgs, renderSample } from "./format.ts";
import type { SmiResult } from "./format.ts";
import { isResetCommand, parseResetArgs, resetGpus } from "./reset.ts";

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

/** `-r` / `--gpu-reset`: resets the selected GPUs in the state file (reading and writing it under its lock). */
async function runReset(statePath: string | undefined, argv: readonly string[], io: Io): Promise<number> {
  const parsed = parseResetArgs(argv);
  if (!parsed.ok) {
    write(io, parsed.result);
    return parsed.result.exitCode;
  }
  if (!statePath || !(await loadState(statePath))) {
    write(io, DRIVER_NOT_LOADED);
    return DRIVER_NOT_LOADED.exitCode;
  }
  let result = DRIVER_NOT_LOADED as SmiResult | "hang";
  await updateGpuState(statePath, (state) => {
    const r = resetGpus(state, parsed.args, pidAlive);
    result = r.result;
    return r.state;
  });
  if (result === "hang") return hang();
  write(io, result);
  return result.exitCode;
}

export async function runNvidiaSmi(argv: readonly string[], io: Io): Promise<number> {
  const { statePath, rest } = extractSimState(argv, io.env);
  if (isResetCommand(rest)) return runReset(statePath, rest, io);
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
