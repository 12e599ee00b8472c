/**
 * Starting a backend's process: argv without a shell, its own process group
 * (so a stop reaches every descendant), environment with secrets read from
 * files at spawn time, optional user and group. Thin shell over execa.
 */
import { readFile, type FileHandle } from "node:fs/promises";
import type { ChildProcess } from "node:child_process";
import type { Readable } from "node:stream";
import { execa } from "execa";
import type { ProcessConfig } from "../config/types.ts";
import { LlmsupError } from "../errors/error.ts";
import type { Clock } from "../platform/clock.ts";
import { groupMembers, procStartTime, procStat, signalGroup } from "../platform/procfs.ts";
import { gidOf, uidOf } from "../platform/users.ts";

/** A process group llmsup started: its leader is the spawned process, and every descendant stays in it. */
export interface ProcessGroup {
  /** Sends `signal` to every process of the group; false when the group is gone. */
  signalGroup(signal: NodeJS.Signals): boolean;
  /** Live processes still in the group (after the leader exited: what it left behind). */
  groupSize(): Promise<number>;
  /** The kernel's state letter of the leader (D: stuck in the kernel, usually the GPU driver); undefined once gone. */
  processState(): Promise<string | undefined>;
}

export interface Spawned extends ProcessGroup {
  readonly pid: number;
  /** The kernel's start time of the process (/proc stat), to know it again after a daemon restart; absent when unreadable. */
  readonly startTime?: number;
  /** The output pipes, when the process got pipes rather than its log file. */
  readonly stdout?: Readable;
  readonly stderr?: Readable;
  /** Lets go of the process (live restore): it no longer keeps this one alive; it goes on running. */
  release(): void;
  /** Resolves once the process has exited (its pipes may stay open: an orphan may hold them). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Where a backend's stdout and stderr go: a descriptor of its log file (it writes there itself); pipes when there is none. */
export interface BackendLog {
  forChild(): Promise<FileHandle | undefined>;
}

/** Starts a backend's process from its [backend.process] table. */
export type BackendSpawner = (name: string, process: ProcessConfig, log: BackendLog) => Promise<Spawned>;

/** The real process group led by `pid`, through /proc and kill(2). */
export function processGroup(pid: number): ProcessGroup {
  return {
    signalGroup: (signal) => signalGroup(pid, signal),
    groupSize: async () => (await groupMembers(pid)).length,
    processState: async () => (await procStat(pid))?.state,
  };
}

async function secretEnv(secretEnv: Readonly<Record<string, string>>): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [key, file] of Object.entries(secretEnv)) {
    try {
      out[key] = (await readFile(file, "utf8")).replace(/\r?\n$/, "");
    } catch (e) {
      throw new LlmsupError("LLMSUP_E_SECRET_UNREADABLE", `cannot read ${file} for ${key}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { key, file });
    }
  }
  return out;
}

export const spawnBackend: BackendSpawner = async (name, proc, log) => {
  const env = { ...proc.env, ...(await secretEnv(proc.secret_env)) };
  const uid = proc.user ? await uidOf(proc.user) : undefined;
  const gid = proc.group ? await gidOf(proc.group) : undefined;
  if (proc.user && uid === undefined) throw new LlmsupError("LLMSUP_E_SPAWN_FAILED", `user "${proc.user}" does not exist`, { backend: name });
  if (proc.group && gid === undefined) throw new LlmsupError("LLMSUP_E_SPAWN_FAILED", `group "${proc.group}" does not exist`, { backend: name });
  const [file, ...args] = proc.command;
  const logFile = await log.forChild();
  // execa types "pipe" and a descriptor apart (streams or none); the union of the two is not an overload of its own.
  const out = (logFile?.fd ?? "pipe") as "pipe";
  const subprocess = execa(file!, args, {
    env,
    extendEnv: true,
    cwd: proc.cwd,
    uid,
    gid,
    detached: true,
    cleanup: false,
    buffer: false,
    reject: false,
    stdin: "ignore",
    stdout: out,
    stderr: out,
  });
  subprocess.catch(() => undefined);
  // The child has its own copy of the descriptor.
  await logFile?.close().catch(() => undefined);
  if (subprocess.pid === undefined) {
    // The program could not be started (missing, not executable): execa says why.
    const result = await subprocess;
    const why = (result as { code?: string }).code ?? result.shortMessage ?? "spawn failed";
    throw new LlmsupError("LLMSUP_E_SPAWN_FAILED", `cannot start ${file}: ${why}`, { backend: name });
  }
  const child: ChildProcess = await subprocess.nodeChildProcess;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    // "exit", not execa's promise: an orphaned grandchild may keep the pipes open long after the process died.
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode as NodeJS.Signals | null });
    else child.once("exit", (code: number | null, signal: NodeJS.Signals | null) => resolve({ code, signal }));
  });
  const startTime = await procStartTime(child.pid!);
  const release = () => {
    child.stdout?.destroy();
    child.stderr?.destroy();
    child.unref();
  };
  return { pid: child.pid!, startTime, stdout: child.stdout ?? undefined, stderr: child.stderr ?? undefined, exited, release, ...processGroup(child.pid!) };
};

/** How often an adopted process is checked for its end. */
export const ADOPTED_POLL_MS = 500;

/**
 * A process an earlier llmsup started and this one adopts: not our child, so
 * its end is seen by polling /proc (gone, or its pid now another process's)
 * and how it ended is unknown. Its output already goes to its log file.
 */
export function adoptedProcess(pid: number, startTime: number, clock: Clock): Spawned {
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    const check = async () => {
      if ((await procStartTime(pid)) !== startTime) resolve({ code: null, signal: null });
      else clock.setTimeout(() => void check(), ADOPTED_POLL_MS);
    };
    void check();
  });
  // Not our child, and its poll's timers never keep this process alive: nothing to let go of.
  return { pid, startTime, exited, release: () => undefined, ...processGroup(pid) };
}
