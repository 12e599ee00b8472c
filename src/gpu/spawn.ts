/**
 * The thin process layer under the nvidia-smi runner and the journal reader:
 * start a program asynchronously (never execSync/spawnSync), hear its output
 * and its end, kill it, and let go of it. Tests inject their own Spawner.
 */
import { spawn } from "node:child_process";

export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Set when the program could not be started at all (ENOENT, EACCES). */
  readonly error?: NodeJS.ErrnoException;
}

export interface ChildHandle {
  readonly pid: number | undefined;
  /** Output as it arrives, stdout and stderr alike (nvidia-smi reports errors on stdout). */
  onOutput(listener: (chunk: string) => void): void;
  /** Resolves once the process has ended (or failed to start); never rejects. */
  readonly exited: Promise<ChildExit>;
  kill(signal?: NodeJS.Signals): void;
  /**
   * Stops listening to the output and stops the process from keeping this
   * one alive, without waiting for it: for a child stuck in the driver that
   * no signal can end. `exited` still resolves if it ever ends.
   */
  abandon(): void;
}

export type Spawner = (file: string, args: readonly string[]) => ChildHandle;

/** Spawns with node:child_process; stdin closed, stdout and stderr piped. */
export const spawnChild: Spawner = (file, args) => {
  const child = spawn(file, [...args], { stdio: ["ignore", "pipe", "pipe"] });
  const listeners: ((chunk: string) => void)[] = [];
  const deliver = (chunk: string) => {
    for (const l of listeners) l(chunk);
  };
  child.stdout.setEncoding("utf8").on("data", deliver);
  child.stderr.setEncoding("utf8").on("data", deliver);
  const exited = new Promise<ChildExit>((resolve) => {
    let startError: NodeJS.ErrnoException | undefined;
    child.once("error", (e: NodeJS.ErrnoException) => {
      startError = e;
      // A process that never started emits no "exit"; one that did emits it too.
      if (child.pid === undefined) resolve({ code: null, signal: null, error: e });
    });
    child.once("exit", (code, signal) => resolve(startError ? { code, signal, error: startError } : { code, signal }));
  });
  return {
    pid: child.pid,
    onOutput: (listener) => listeners.push(listener),
    exited,
    kill(signal = "SIGKILL") {
      try {
        child.kill(signal);
      } catch {
        /* already gone */
      }
    },
    abandon() {
      listeners.length = 0;
      child.stdout.destroy();
      child.stderr.destroy();
      child.unref();
    },
  };
};

/** Timers, injectable so tests can drive time. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Real timers; whoever sets one clears it on stop. */
export const realTimers: Timers = {
  setTimeout(fn, ms) {
    return setTimeout(fn, ms);
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};
