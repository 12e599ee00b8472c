/**
 * One daemon per state_dir: what a starting daemon does with the lock file it
 * finds there. Pure; the file and /proc are read by state-lock.ts.
 */

/** What the lock file says: the daemon holding it. */
export interface LockHolder {
  readonly pid: number;
  /** Field 22 of /proc/<pid>/stat when the holder took the lock (clock ticks since boot). */
  readonly start_time: number;
  /** The holder's configuration file. */
  readonly config: string;
  /** When it took the lock (ISO 8601). */
  readonly since: string;
}

/** What /proc says now about the pid named in the file. */
export interface PidFacts {
  /** Whether the pid is a live (non-zombie) process. */
  readonly alive: boolean;
  /** Its start time, when it could be read. */
  readonly startTime?: number;
}

export type LockDecision =
  | { readonly action: "take" }
  | { readonly action: "take_over"; readonly reason: string; readonly holder?: LockHolder }
  | { readonly action: "refuse"; readonly holder: LockHolder };

/** The lock file's text for `holder`: one JSON line. */
export function formatLock(holder: LockHolder): string {
  return `${JSON.stringify(holder)}\n`;
}

/** The holder a lock file names, or undefined when it is not one llmsup wrote. */
export function parseLock(text: string): LockHolder | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (!Number.isSafeInteger(o.pid) || (o.pid as number) <= 0 || !Number.isSafeInteger(o.start_time)) return undefined;
  return { pid: o.pid as number, start_time: o.start_time as number, config: typeof o.config === "string" ? o.config : "?", since: typeof o.since === "string" ? o.since : "?" };
}

/**
 * Given the lock file's text (undefined: there is none), our own pid and the
 * facts about the pid it names: take a free lock, take over a stale one (its
 * daemon is gone, or its pid now belongs to another process), or refuse.
 */
export function decideLock(text: string | undefined, selfPid: number, facts: PidFacts | undefined): LockDecision {
  if (text === undefined) return { action: "take" };
  const holder = parseLock(text);
  if (!holder) return { action: "take_over", reason: "the lock file is not one llmsup wrote (empty or damaged)" };
  if (holder.pid === selfPid) return { action: "take_over", reason: `it names this process's own pid ${holder.pid}, left by an earlier daemon`, holder };
  if (!facts?.alive) return { action: "take_over", reason: `pid ${holder.pid} is gone`, holder };
  if (facts.startTime !== undefined && facts.startTime !== holder.start_time) {
    return { action: "take_over", reason: `pid ${holder.pid} is now another process (start time ${facts.startTime}, not ${holder.start_time})`, holder };
  }
  return { action: "refuse", holder };
}
