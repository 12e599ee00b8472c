/**
 * What /proc says about processes. Zombies count as gone everywhere: a dead
 * process has released its memory (host and GPU) even before it is reaped, and
 * an orphan's zombie may never be reaped where PID 1 does not reap.
 */
import { readdir, readFile } from "node:fs/promises";

export interface ProcStat {
  readonly pid: number;
  readonly comm: string;
  /** R, S, D (uninterruptible, e.g. stuck in a driver), Z (zombie), T, … */
  readonly state: string;
  readonly ppid: number;
  readonly pgrp: number;
}

/** Parses /proc/<pid>/stat text. */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) return undefined;
  const rest = text.slice(close + 2).split(" ");
  const pid = Number(text.slice(0, open).trim());
  const ppid = Number(rest[1]);
  const pgrp = Number(rest[2]);
  if (!Number.isInteger(pid) || !Number.isInteger(ppid) || !Number.isInteger(pgrp)) return undefined;
  return { pid, comm: text.slice(open + 1, close), state: rest[0] ?? "?", ppid, pgrp };
}

export async function procStat(pid: number): Promise<ProcStat | undefined> {
  try {
    return parseProcStat(await readFile(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}

/**
 * Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since
 * boot. With the pid it names one process for good (pids are reused, this pair is not).
 */
export function parseStartTime(text: string): number | undefined {
  const close = text.lastIndexOf(")");
  if (close < 0) return undefined;
  // Fields from 3 (state) on follow the command name; field 22 is the 20th of them.
  const field = text.slice(close + 2).split(" ")[19];
  const n = Number(field);
  return field !== undefined && field !== "" && Number.isSafeInteger(n) ? n : undefined;
}

/** The start time of `pid` (see parseStartTime), or undefined when it is gone or a zombie. */
export async function procStartTime(pid: number): Promise<number | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, "utf8");
    const s = parseProcStat(text);
    return s && s.state !== "Z" ? parseStartTime(text) : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `pid` is a live (non-zombie) process. */
export async function isAlive(pid: number): Promise<boolean> {
  const s = await procStat(pid);
  return s !== undefined && s.state !== "Z";
}

/** Every live process whose process group is `pgid`. */
export async function groupMembers(pgid: number): Promise<ProcStat[]> {
  let entries: string[];
  try {
    entries = await readdir("/proc");
  } catch {
    return [];
  }
  const out: ProcStat[] = [];
  await Promise.all(
    entries.map(async (e) => {
      if (!/^\d+$/.test(e)) return;
      const s = await procStat(Number(e));
      if (s && s.pgrp === pgid && s.state !== "Z") out.push(s);
    }),
  );
  return out.sort((a, b) => a.pid - b.pid);
}

/** Sends `signal` to a whole process group; false when the group no longer exists. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** MemAvailable and MemTotal from /proc/meminfo, in bytes. */
export async function memInfo(): Promise<{ available: number; total: number } | undefined> {
  try {
    const text = await readFile("/proc/meminfo", "utf8");
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1]) * 1024;
    const available = kb("MemAvailable");
    const total = kb("MemTotal");
    return Number.isFinite(available) && Number.isFinite(total) ? { available, total } : undefined;
  } catch {
    return undefined;
  }
}
