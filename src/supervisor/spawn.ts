/**
 * Starting a backend's process: argv without a shell, its own process group
 * (so a stop reaches every descendant), environment with secrets read from
 * files at spawn time, optional user and group. Thin shell over execa.
 */
import { readFile } from "node:fs/promises";
import type { ChildProcess } from "node:child_process";
import type { Readable } from "node:stream";
import { execa } from "execa";
import type { ProcessConfig } from "../config/types.ts";
import { LlmsupError } from "../errors/error.ts";
import { groupMembers, procStat, signalGroup } from "../platform/procfs.ts";
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
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves once the process has exited (its pipes may stay open: an orphan may hold them). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export type Spawner = (name: string, process: ProcessConfig) => Promise<Spawned>;

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

export const spawnBackend: Spawner = async (name, proc) => {
  const env = { ...proc.env, ...(await secretEnv(proc.secret_env)) };
  const uid = proc.user ? await uidOf(proc.user) : undefined;
  const gid = proc.group ? await gidOf(proc.group) : undefined;
  if (proc.user && uid === undefined) throw new LlmsupError("LLMSUP_E_SPAWN_FAILED", `user "${proc.user}" does not exist`, { backend: name });
  if (proc.group && gid === undefined) throw new LlmsupError("LLMSUP_E_SPAWN_FAILED", `group "${proc.group}" does not exist`, { backend: name });
  const [file, ...args] = proc.command;
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
    stdout: "pipe",
    stderr: "pipe",
  });
  subprocess.catch(() => undefined);
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
  return { pid: child.pid!, stdout: child.stdout!, stderr: child.stderr!, exited, ...processGroup(child.pid!) };
};
