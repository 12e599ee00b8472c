/**
 * Reading the host's resources: CPU load, free memory, free disk where
 * llmsup keeps its state and logs.
 *
 * - Memory: systeminformation's mem() (on Linux an async read of
 *   /proc/meminfo); `available` is what a new process (the CPU tier) can get.
 * - CPU: os.loadavg() and os.cpus() times, the busy share computed between
 *   two readings. Not systeminformation's currentLoad(): on Linux it runs
 *   execSync("cat /proc/stat"), which blocks the event loop.
 * - Disk: fs.statfs() on the directory itself (or its nearest existing
 *   parent): exact for that path, no `df` process, no mount-table guessing
 *   (systeminformation's fsSize() also runs execSync on Linux).
 */
import { statfs } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import si from "systeminformation";

export interface CpuTimes {
  readonly idle: number;
  readonly total: number;
}

export interface DiskReading {
  /** The directory asked about. */
  readonly dir: string;
  /** The path actually measured (the nearest existing one). */
  readonly measured: string;
  readonly totalBytes: number;
  /** Free to unprivileged users (f_bavail). */
  readonly freeBytes: number;
}

export interface HostReading {
  readonly at: number;
  readonly cpu: {
    readonly cores: number;
    readonly load1: number;
    readonly load5: number;
    readonly load15: number;
    /** Busy share of all cores since the previous reading, 0–100; undefined on the first. */
    readonly busyPct?: number;
  };
  readonly memory?: { readonly totalBytes: number; readonly availableBytes: number };
  readonly disks: readonly DiskReading[];
  /** What could not be read. */
  readonly errors: readonly string[];
}

/** The I/O under a reading; tests inject their own. */
export interface HostReader {
  cpuTimes(): CpuTimes;
  loadavg(): readonly number[];
  memory(): Promise<{ totalBytes: number; availableBytes: number }>;
  disk(dir: string): Promise<Omit<DiskReading, "dir">>;
}

export const systemHostReader: HostReader = {
  cpuTimes() {
    let idle = 0;
    let total = 0;
    for (const c of os.cpus()) {
      idle += c.times.idle;
      total += c.times.user + c.times.nice + c.times.sys + c.times.idle + c.times.irq;
    }
    return { idle, total };
  },
  loadavg: () => os.loadavg(),
  async memory() {
    const m = await si.mem();
    return { totalBytes: m.total, availableBytes: m.available };
  },
  async disk(dir) {
    let measured = path.resolve(dir);
    for (;;) {
      try {
        const s = await statfs(measured);
        return { measured, totalBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize };
      } catch (e) {
        const parent = path.dirname(measured);
        if ((e as NodeJS.ErrnoException).code !== "ENOENT" || parent === measured) throw e;
        measured = parent;
      }
    }
  },
};

/** Busy share between two CPU readings, 0–100. Pure. */
export function busyPct(prev: CpuTimes, cur: CpuTimes): number | undefined {
  const total = cur.total - prev.total;
  if (total <= 0) return undefined;
  return Math.min(100, Math.max(0, (100 * (total - (cur.idle - prev.idle))) / total));
}

/** One reading of everything; parts that fail are listed in `errors`, never thrown. */
export async function readHost(reader: HostReader, dirs: readonly string[], prevCpu: CpuTimes | undefined, now: number): Promise<{ reading: HostReading; cpu: CpuTimes }> {
  const errors: string[] = [];
  const cpu = reader.cpuTimes();
  const [l1 = 0, l5 = 0, l15 = 0] = reader.loadavg();
  const memory = await reader.memory().catch((e: Error) => {
    errors.push(`memory: ${e.message}`);
    return undefined;
  });
  const disks: DiskReading[] = [];
  for (const dir of [...new Set(dirs)]) {
    try {
      disks.push({ dir, ...(await reader.disk(dir)) });
    } catch (e) {
      errors.push(`disk ${dir}: ${(e as Error).message}`);
    }
  }
  const busy = prevCpu ? busyPct(prevCpu, cpu) : undefined;
  return {
    reading: { at: now, cpu: { cores: os.availableParallelism(), load1: l1, load5: l5, load15: l15, busyPct: busy }, memory, disks, errors },
    cpu,
  };
}
