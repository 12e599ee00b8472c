/**
 * The thin process layer under the nvidia-smi runner and the journal reader:
 * start a program asynchronously (never execSync/spawnSync), hear its output
 * and its end, kill it, and let go of it. Thin shell over execa; tests inject
 * their own ProgramSpawner.
 */
import { execa, type Result } from "execa";

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

/** Starts a program (nvidia-smi, journalctl) with its arguments. */
export type ProgramSpawner = (file: string, args: readonly string[]) => ChildHandle;

/** Why a program could not be started, as the errno error execa kept. */
function startFailure(result: Result, file: string): NodeJS.ErrnoException {
  const cause = result.cause;
  if (cause instanceof Error) return cause as NodeJS.ErrnoException;
  return Object.assign(new Error(`spawn ${file} ${result.code ?? "failed"}`), { code: result.code });
}

/**
 * Spawns with execa: stdin closed, stdout and stderr piped and never
 * buffered, no rejection (the end is a value), no kill when llmsup exits and
 * no escalation to SIGKILL behind the caller's back.
 */
export const spawnChild: ProgramSpawner = (file, args) => {
  const subprocess = execa(file, [...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    buffer: false,
    reject: false,
    cleanup: false,
    forceKillAfterDelay: false,
  });
  const child = subprocess.nodeChildProcess;
  const listeners: ((chunk: string) => void)[] = [];
  const deliver = (chunk: string) => {
    for (const l of listeners) l(chunk);
  };
  subprocess.stdout.setEncoding("utf8").on("data", deliver);
  subprocess.stderr.setEncoding("utf8").on("data", deliver);
  const exited = new Promise<ChildExit>((resolve) => {
    let startError: NodeJS.ErrnoException | undefined;
    child.once("error", (e: NodeJS.ErrnoException) => (startError = e));
    // "exit", not execa's result: a process that hands its pipes to a survivor has still ended.
    child.once("exit", (code, signal) => resolve(startError ? { code, signal, error: startError } : { code, signal }));
    // A program that never started emits no "exit"; execa's result says why.
    void subprocess.then((result) => {
      if (child.pid === undefined) resolve({ code: null, signal: null, error: startFailure(result, file) });
    });
  });
  return {
    pid: child.pid,
    onOutput: (listener) => listeners.push(listener),
    exited,
    kill(signal = "SIGKILL") {
      try {
        subprocess.kill(signal);
      } catch {
        /* already gone */
      }
    },
    abandon() {
      listeners.length = 0;
      subprocess.stdout.destroy();
      subprocess.stderr.destroy();
      child.unref();
    },
  };
};

