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

/**
 * What one process costs, from /proc/<pid>/stat: CPU time used (utime + stime,
 * fields 14 and 15, plus cutime + cstime, fields 16 and 17 — the time of
 * children it has reaped, so a group's total does not drop when a worker exits
 * and is waited for) in clock ticks, and its group (field 5).
 */
export interface ProcCpu {
  readonly pid: number;
  readonly pgrp: number;
  readonly state: string;
  /** utime + stime + cutime + cstime, in clock ticks (USER_HZ). */
  readonly ticks: number;
}

/** Parses the CPU fields of /proc/<pid>/stat text (the command name may hold spaces and parentheses). */
export function parseProcCpu(text: string): ProcCpu | undefined {
  const s = parseProcStat(text);
  if (!s) return undefined;
  // Fields from 3 (state) on follow the command name: field n is rest[n - 3].
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const t = [11, 12, 13, 14].map((i) => Number(rest[i]));
  if (t.some((n) => !Number.isSafeInteger(n) || n < 0)) return undefined;
  return { pid: s.pid, pgrp: s.pgrp, state: s.state, ticks: t.reduce((a, b) => a + b, 0) };
}

/** VmRSS from /proc/<pid>/status text, in bytes; undefined when absent (kernel threads, zombies). */
export function parseVmRss(text: string): number | undefined {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(text);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** The clock ticks per second /proc counts in (USER_HZ, `getconf CLK_TCK`): 100 on every Linux architecture. */
export const CLOCK_TICKS_PER_S = 100;

/** What a whole process group costs at one moment. */
export interface GroupUsage {
  /** CPU time of every live member (and of the children they reaped), in clock ticks. */
  readonly ticks: number;
  /** Resident memory of every member, summed (shared pages count once per process, as `ps` and pm2 count them). */
  readonly rssBytes: number;
  /** Live members of the group. */
  readonly processes: number;
}

/**
 * The cost of each of `pgids`, in one pass over /proc: one read of stat for
 * every process, and one of status for each member. Groups with no live
 * member are absent.
 */
export async function groupUsage(pgids: readonly number[], proc = "/proc"): Promise<Map<number, GroupUsage>> {
  const out = new Map<number, { ticks: number; rssBytes: number; processes: number }>();
  if (pgids.length === 0) return out;
  const wanted = new Set(pgids);
  let entries: string[];
  try {
    entries = await readdir(proc);
  } catch {
    return out;
  }
  await Promise.all(
    entries.map(async (e) => {
      if (!/^\d+$/.test(e)) return;
      let s: ProcCpu | undefined;
      try {
        s = parseProcCpu(await readFile(`${proc}/${e}/stat`, "utf8"));
      } catch {
        return;
      }
      if (!s || !wanted.has(s.pgrp) || s.state === "Z") return;
      let rss = 0;
      try {
        rss = parseVmRss(await readFile(`${proc}/${e}/status`, "utf8")) ?? 0;
      } catch {
        return; // gone between the two reads
      }
      const g = out.get(s.pgrp) ?? { ticks: 0, rssBytes: 0, processes: 0 };
      g.ticks += s.ticks;
      g.rssBytes += rss;
      g.processes += 1;
      out.set(s.pgrp, g);
    }),
  );
  return out;
}

/**
 * CPU use between two samples of one group, in percent of one core (200 = two
 * cores busy); null when the samples do not span time. A drop (a member gone
 * with its time) reads as 0, not as a negative load.
 */
export function cpuPercent(prev: { readonly ticks: number; readonly at: number }, next: { readonly ticks: number; readonly at: number }, ticksPerS = CLOCK_TICKS_PER_S): number | null {
  const ms = next.at - prev.at;
  if (!(ms > 0)) return null;
  const pct = (Math.max(0, next.ticks - prev.ticks) / ticksPerS / (ms / 1000)) * 100;
  return Math.round(pct * 10) / 10;
}
