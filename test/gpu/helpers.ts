/** Test doubles for the GPU monitor: scripted child processes, a simulated GPU box. (Time: the one ManualClock, test/helpers/clock.ts.) */
import assert from "node:assert/strict";
import path from "node:path";
import { PassThrough, Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { SmiRunner } from "../../src/gpu/runner.ts";
import { spawnChild, type ChildExit, type ChildHandle, type ProgramSpawner } from "../../src/gpu/spawn.ts";
import { createLogger, type Logger } from "../../src/log/logger.ts";
import { realClock } from "../../src/platform/clock.ts";
import { runSimGpu } from "../../src/sim/gpu/cli.ts";
import { defaultGpuState, updateGpuState, writeGpuState, type SimGpuState } from "../../src/sim/gpu/state.ts";
import { tempDir } from "../helpers/tmp.ts";

/** A debug-level logger whose JSON lines land, parsed, in `logs`. */
export function captureLogs(): { logs: Record<string, unknown>[]; logger: Logger } {
  const logs: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return { logs, logger: createLogger({ level: "debug", destination }) };
}

/** A scripted child process. `killable: false` plays an nvidia-smi stuck in the driver. */
export class FakeChild implements ChildHandle {
  static #pids = 90_000;
  readonly pid = FakeChild.#pids++;
  readonly args: readonly string[];
  readonly signals: string[] = [];
  killable = true;
  abandoned = false;
  #listeners: ((chunk: string) => void)[] = [];
  #resolve!: (e: ChildExit) => void;
  #done = false;
  readonly exited: Promise<ChildExit>;
  constructor(args: readonly string[]) {
    this.args = args;
    this.exited = new Promise((r) => (this.#resolve = r));
  }
  get done(): boolean {
    return this.#done;
  }
  onOutput(l: (chunk: string) => void): void {
    this.#listeners.push(l);
  }
  print(text: string): void {
    for (const l of this.#listeners) l(text);
  }
  exit(code: number | null, signal: NodeJS.Signals | null = null, error?: NodeJS.ErrnoException): void {
    if (this.#done) return;
    this.#done = true;
    this.#resolve(error ? { code, signal, error } : { code, signal });
  }
  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    this.signals.push(signal);
    if (this.killable) queueMicrotask(() => this.exit(null, signal));
  }
  abandon(): void {
    this.abandoned = true;
    this.#listeners = [];
  }
}

/** A spawner that records every child and lets `onSpawn` script it. */
export function fakeSpawner(onSpawn: (child: FakeChild) => void = () => {}): ProgramSpawner & { children: FakeChild[] } {
  const children: FakeChild[] = [];
  const spawn = ((_file: string, args: readonly string[]) => {
    const child = new FakeChild(args);
    children.push(child);
    onSpawn(child);
    return child;
  }) as unknown as ProgramSpawner & { children: FakeChild[] };
  spawn.children = children;
  return spawn;
}

/** An nvidia-smi runner of real processes in real time (the simulated nvidia-smi, a missing program): the real spawner and clock. */
export function realSmiRunner(path: string, deadlineMs: number): SmiRunner {
  return new SmiRunner({ path, deadlineMs, spawn: spawnChild, clock: realClock });
}

/** Polls `check` until it holds (for tests driving real processes, where no clock can be injected). */
export async function waitUntil(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** A simulated GPU box: a state file and an nvidia-smi wrapper bound to it. */
export interface SimBox {
  readonly state: string;
  readonly nvidiaSmi: string;
  set(change: (s: SimGpuState) => void): Promise<void>;
}

export async function simBox(t: { after(fn: () => void): void }, prepare: (s: SimGpuState) => void = () => {}, gpus = 2): Promise<SimBox> {
  const dir = tempDir(t, "llmsup-gpu-");
  const state = path.join(dir, "gpus.json");
  const initial = defaultGpuState(gpus);
  prepare(initial);
  await writeGpuState(state, initial);
  const nvidiaSmi = path.join(dir, "nvidia-smi");
  const code = await runSimGpu(["wrapper", "--state", state, "--out", nvidiaSmi], { stdout: new PassThrough(), stderr: new PassThrough(), env: {} });
  assert.equal(code, 0);
  return {
    state,
    nvidiaSmi,
    set: async (change) => {
      await updateGpuState(state, (s) => {
        change(s);
      });
    },
  };
}
