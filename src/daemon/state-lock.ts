/**
 * The lock that keeps one daemon per state_dir: `state_dir/llmsup.lock`, one
 * JSON line naming the holder's pid, its start time and its configuration.
 * Created atomically with its content (a hard link of a private file: a reader
 * never sees it half-written); a lock whose daemon is gone is taken over. The
 * thin shell around decideLock.
 */
import { link, mkdir, open, readFile, unlink } from "node:fs/promises";
import path from "node:path";
import { LlmsupError } from "../errors/error.ts";
import type { Logger } from "../log/logger.ts";
import { isAlive, procStartTime } from "../platform/procfs.ts";
import { decideLock, formatLock, parseLock, type LockHolder, type PidFacts } from "./lock-decision.ts";

export const LOCK_FILE = "llmsup.lock";

export class StateLock {
  readonly file: string;
  readonly holder: LockHolder;
  /** Set when the lock an earlier daemon left was taken over: that daemon ended without a clean stop (SIGKILL, a crash). */
  readonly tookOver?: { readonly pid?: number; readonly since?: string; readonly reason: string };

  private constructor(file: string, holder: LockHolder, tookOver?: StateLock["tookOver"]) {
    this.file = file;
    this.holder = holder;
    this.tookOver = tookOver;
  }

  /** Takes the lock of `stateDir` for this process, or throws LLMSUP_E_STATE_LOCKED naming the daemon that holds it. */
  static async acquire(o: { stateDir: string; configPath: string; logger: Logger; now: number }): Promise<StateLock> {
    await mkdir(o.stateDir, { recursive: true });
    const file = path.join(o.stateDir, LOCK_FILE);
    const holder: LockHolder = { pid: process.pid, start_time: (await procStartTime(process.pid)) ?? 0, config: path.resolve(o.configPath), since: new Date(o.now).toISOString() };
    const text = formatLock(holder);
    const tmp = `${file}.${process.pid}.tmp`;
    const fh = await open(tmp, "w", 0o644);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    let tookOver: StateLock["tookOver"];
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          await link(tmp, file);
          return new StateLock(file, holder, tookOver);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        }
        const found = await readOrUndefined(file);
        if (found === undefined) continue; // released meanwhile: try again
        const named = parseLock(found);
        const facts: PidFacts | undefined = named ? { alive: await isAlive(named.pid), startTime: await procStartTime(named.pid) } : undefined;
        const decision = decideLock(found, process.pid, facts);
        if (decision.action === "refuse") {
          const h = decision.holder;
          throw new LlmsupError(
            "LLMSUP_E_STATE_LOCKED",
            `state_dir ${o.stateDir} is in use by another llmsup daemon: pid ${h.pid} (config ${h.config}, since ${h.since}). Stop that daemon first (\`systemctl stop llmsup\`), or give this one another [daemon] state_dir. Lock file: ${file}`,
            { path: file, pid: h.pid, config: h.config },
          );
        }
        if (decision.action === "take_over") {
          // Only the file we judged: another starting daemon may have taken it over meanwhile.
          if ((await readOrUndefined(file)) !== found) continue;
          await unlink(file).catch(() => undefined);
          tookOver = { pid: decision.holder?.pid, since: decision.holder?.since, reason: decision.reason };
          o.logger.warn({ event: "daemon.lock.stale", path: file, pid: decision.holder?.pid, config: decision.holder?.config, reason: decision.reason }, `taking over the stale lock ${file}: ${decision.reason}`);
        }
      }
      throw new LlmsupError("LLMSUP_E_STATE_LOCKED", `state_dir ${o.stateDir}: the lock ${file} keeps changing hands; is another llmsup starting on it?`, { path: file });
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }

  /** Removes the lock file if it is still this daemon's. */
  async release(): Promise<void> {
    const found = await readOrUndefined(this.file);
    const named = found === undefined ? undefined : parseLock(found);
    if (named?.pid === this.holder.pid && named.start_time === this.holder.start_time) await unlink(this.file).catch(() => undefined);
  }
}

async function readOrUndefined(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}
