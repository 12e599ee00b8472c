/**
 * `llmsup sim gpu ...`: lets operators and tests drive the simulated GPU state file.
 *
 *   init    --state FILE [--gpus N]          write a healthy box of N GPUs (default 2)
 *   show    --state FILE                     print the state as JSON
 *   set     --state FILE [--gpu I] k=v ...   change GPU I's fields (dotted keys, e.g. remapped_rows.pending=true,
 *                                            cells.power.draw="[Unknown Error]"), or top-level fields without --gpu
 *                                            (failure=gpu_lost, failure=null, old_driver=true);
 *                                            recovery_action=None|Reset|Reboot|"Drain P2P"|"Drain and Reset"
 *   wrapper --state FILE --out PATH          write an executable nvidia-smi stand-in bound to FILE
 *   hog     --state FILE --gpu I --mib N     play a stranger's process holding N MiB on GPU I until it is
 *           [--name NAME]                    stopped (Ctrl-C, SIGTERM; a kill -9 lets go too: dead pids are not listed)
 */
import { chmod, writeFile } from "node:fs/promises";
import path from "node:path";
import { selfCommand } from "../../platform/self.ts";
import type { Io } from "../../cli/output.ts";
import { EXIT } from "../../errors/registry.ts";
import { SIM_RECOVERY_ACTIONS, SIM_SMI_FAILURES, defaultGpuState, readGpuState, registerProcess, unregisterProcess, updateGpuState, writeGpuState } from "./state.ts";
import type { SimGpu, SimGpuState } from "./state.ts";

class UsageError extends Error {}

const USAGE = "usage: llmsup sim gpu init|show|set|wrapper|hog --state FILE [--gpus N] [--gpu I] [key=value ...] [--out PATH] [--mib N] [--name NAME]";

interface Parsed {
  readonly options: Map<string, string>;
  readonly assignments: string[];
}

function parse(args: readonly string[], allowed: readonly string[]): Parsed {
  const options = new Map<string, string>();
  const assignments: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      const value = eq >= 0 ? arg.slice(eq + 1) : args[++i];
      if (!allowed.includes(name)) throw new UsageError(`unknown option --${name}`);
      if (value === undefined) throw new UsageError(`--${name} needs a value`);
      options.set(name, value);
    } else {
      assignments.push(arg);
    }
  }
  if (!options.has("state")) throw new UsageError("--state FILE is required");
  return { options, assignments };
}

function integer(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${what} must be a non-negative integer, got "${text}"`);
  return Number(text);
}

function stripQuotes(text: string): string {
  return /^(["']).*\1$/s.test(text) ? text.slice(1, -1) : text;
}

/** JSON where it parses (numbers, booleans, null, quoted strings), hex as a number, otherwise the raw text. */
export function parseValue(text: string): unknown {
  if (/^0x[0-9a-f]+$/i.test(text)) return Number.parseInt(text.slice(2), 16);
  try {
    return JSON.parse(text);
  } catch {
    return stripQuotes(text);
  }
}

function splitAssignment(assignment: string): [string, string] {
  const eq = assignment.indexOf("=");
  if (eq <= 0) throw new UsageError(`expected key=value, got "${assignment}"`);
  return [assignment.slice(0, eq), assignment.slice(eq + 1)];
}

const TOP_LEVEL_KEYS = ["driver_version", "old_driver", "failure", "failure_bus_id"] as const;

function setTopLevel(state: SimGpuState, key: string, text: string): void {
  if (!(TOP_LEVEL_KEYS as readonly string[]).includes(key)) {
    throw new UsageError(`unknown state key "${key}" (without --gpu: ${TOP_LEVEL_KEYS.join(", ")})`);
  }
  const value = parseValue(text);
  if (key === "failure" && value !== null && !(SIM_SMI_FAILURES as readonly unknown[]).includes(value)) {
    throw new UsageError(`failure must be null or one of ${SIM_SMI_FAILURES.join(", ")}`);
  }
  if (key === "old_driver" && typeof value !== "boolean") throw new UsageError("old_driver must be true or false");
  (state as unknown as Record<string, unknown>)[key] = key === "driver_version" || key === "failure_bus_id" ? String(value) : value;
}

function setGpuKey(gpu: SimGpu, key: string, text: string): void {
  // Cell overrides are keyed by field names, which contain dots themselves.
  if (key.startsWith("cells.")) {
    const field = key.slice("cells.".length);
    if (!field) throw new UsageError(`"${key}" names no field`);
    const value = stripQuotes(text);
    if (value === "null") delete gpu.cells[field];
    else gpu.cells[field] = value;
    return;
  }
  const parts = key.split(".");
  const last = parts.pop() as string;
  let target = gpu as unknown as Record<string, unknown>;
  for (const part of parts) {
    if (!(part in target)) throw new UsageError(`unknown GPU key "${key}"`);
    if (part === "remapped_rows" && target[part] === null) {
      target[part] = { correctable: 0, uncorrectable: 0, pending: false, failure: false };
    }
    const next = target[part];
    if (typeof next !== "object" || next === null) throw new UsageError(`"${key}": ${part} is not an object`);
    target = next as Record<string, unknown>;
  }
  if (!(last in target) || (parts.length === 0 && last === "cells")) throw new UsageError(`unknown GPU key "${key}"`);
  const value = typedValue(key, target[last], text);
  if (key === "recovery_action" && !(SIM_RECOVERY_ACTIONS as readonly unknown[]).includes(value)) {
    throw new UsageError(`recovery_action must be one of ${SIM_RECOVERY_ACTIONS.map((a) => `"${a}"`).join(", ")}`);
  }
  target[last] = value;
}

/** The new value in the type of the current one: text stays text, numbers and booleans must parse as such (null is allowed). */
function typedValue(key: string, current: unknown, text: string): unknown {
  if (typeof current === "string") return stripQuotes(text);
  const value = parseValue(text);
  if (current === null || value === null || typeof value === typeof current) return value;
  throw new UsageError(`${key} expects a ${typeof current}, got "${text}"`);
}

/** Writes an executable nvidia-smi stand-in reading `statePath`, so a config can name it as gpu.nvidia_smi. */
export async function writeWrapper(statePath: string, out: string): Promise<string> {
  const [node, entry] = selfCommand();
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const script = [
    "#!/bin/sh",
    "# Simulated nvidia-smi written by `llmsup sim gpu wrapper`.",
    `exec ${quote(node)} ${quote(entry)} sim nvidia-smi --sim-state ${quote(path.resolve(statePath))} "$@"`,
    "",
  ].join("\n");
  const target = path.resolve(out);
  await writeFile(target, script);
  await chmod(target, 0o755);
  return target;
}

async function run(args: readonly string[], io: Io): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case "init": {
      const { options, assignments } = parse(rest, ["state", "gpus"]);
      if (assignments.length) throw new UsageError(`unexpected argument "${assignments[0]}"`);
      const count = integer(options.get("gpus") ?? "2", "--gpus");
      if (count < 1 || count > 8) throw new UsageError("--gpus must be between 1 and 8");
      await writeGpuState(options.get("state") as string, defaultGpuState(count));
      return EXIT.OK;
    }
    case "show": {
      const { options, assignments } = parse(rest, ["state"]);
      if (assignments.length) throw new UsageError(`unexpected argument "${assignments[0]}"`);
      io.stdout.write(`${JSON.stringify(await readGpuState(options.get("state") as string), null, 2)}\n`);
      return EXIT.OK;
    }
    case "set": {
      const { options, assignments } = parse(rest, ["state", "gpu"]);
      if (!assignments.length) throw new UsageError("set needs at least one key=value");
      const gpuText = options.get("gpu");
      const pairs = assignments.map(splitAssignment);
      await updateGpuState(options.get("state") as string, (state) => {
        if (gpuText === undefined) {
          for (const [key, value] of pairs) setTopLevel(state, key, value);
          return;
        }
        const index = integer(gpuText, "--gpu");
        const gpu = state.gpus.find((g) => g.index === index);
        if (!gpu) throw new UsageError(`no GPU with index ${index} (the state has ${state.gpus.length})`);
        for (const [key, value] of pairs) setGpuKey(gpu, key, value);
      });
      return EXIT.OK;
    }
    case "wrapper": {
      const { options, assignments } = parse(rest, ["state", "out"]);
      if (assignments.length) throw new UsageError(`unexpected argument "${assignments[0]}"`);
      const out = options.get("out");
      if (!out) throw new UsageError("--out PATH is required");
      io.stdout.write(`${await writeWrapper(options.get("state") as string, out)}\n`);
      return EXIT.OK;
    }
    case "hog": {
      const { options, assignments } = parse(rest, ["state", "gpu", "mib", "name"]);
      if (assignments.length) throw new UsageError(`unexpected argument "${assignments[0]}"`);
      const state = options.get("state") as string;
      const gpuText = options.get("gpu");
      const mibText = options.get("mib");
      if (gpuText === undefined || mibText === undefined) throw new UsageError("hog needs --gpu I and --mib N");
      const index = integer(gpuText, "--gpu");
      const mib = integer(mibText, "--mib");
      const name = options.get("name") ?? "python3 train.py";
      if (!(await readGpuState(state)).gpus.some((g) => g.index === index)) throw new UsageError(`no GPU with index ${index}`);
      await registerProcess(state, process.pid, [index], mib, name);
      io.stdout.write(`pid ${process.pid} (${name}) holds ${mib} MiB on GPU ${index}; stop it (Ctrl-C) to let go\n`);
      const signal = await new Promise<NodeJS.Signals>((resolve) => {
        const keep = setInterval(() => {}, 2 ** 31 - 1);
        const done = (s: NodeJS.Signals) => {
          clearInterval(keep);
          resolve(s);
        };
        process.once("SIGINT", done);
        process.once("SIGTERM", done);
      });
      await unregisterProcess(state, process.pid);
      io.stdout.write(`${signal}: pid ${process.pid} let go of GPU ${index}\n`);
      return EXIT.OK;
    }
    default:
      throw new UsageError(command === undefined ? "missing subcommand" : `unknown subcommand "${command}"`);
  }
}

export async function runSimGpu(args: readonly string[], io: Io): Promise<number> {
  if (args[0] === "--help" || args[0] === "-h" || args[0] === "help") {
    io.stdout.write(`${USAGE}\n`);
    return EXIT.OK;
  }
  try {
    return await run(args, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`llmsup sim gpu: ${e.message}\n${USAGE}\n`);
      return EXIT.USAGE;
    }
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ENOENT" || err instanceof SyntaxError) {
      io.stderr.write(`llmsup sim gpu: cannot read the state file: ${err.message}\n`);
      return EXIT.IOERR;
    }
    throw e;
  }
}
