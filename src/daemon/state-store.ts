/**
 * State that survives a daemon restart (event history, restart budgets,
 * fatal marks): one JSON file in the state directory, written atomically
 * (temp file + fsync + rename). A corrupt file is set aside with a warning,
 * never a crash.
 */
import { mkdir, readFile, rename } from "node:fs/promises";
import { writeJsonAtomic } from "../platform/json-file.ts";
import path from "node:path";
import type { Logger } from "../log/logger.ts";

export interface PersistedBackend {
  /** Failed-start times inside the current window. */
  readonly failures: readonly number[];
  /** Set while the backend is fatal: it stays fatal across a daemon restart until reset. */
  readonly fatal?: { readonly reason: string; readonly at: number };
  /** The process it left running (a LaunchRecord; checked with parseLaunchRecord before use). */
  readonly process?: unknown;
}

export interface HistoryEntry {
  readonly at: number;
  /** failover, recovery, restart, fatal, gpu_fault, gpu_clear, all_down, daemon, … */
  readonly kind: string;
  readonly summary: string;
  readonly backend?: string;
  readonly route?: string;
  readonly gpu?: number;
}

export interface PersistedState {
  readonly version: 1;
  readonly backends: Readonly<Record<string, PersistedBackend>>;
  readonly history: readonly HistoryEntry[];
  /** Backends an operator drained (`llmsup drain`), by name: they stay out of rotation across a restart until undrained. */
  readonly drained?: Readonly<Record<string, { readonly by: string; readonly since: number }>>;
}

export const EMPTY_STATE: PersistedState = { version: 1, backends: {}, history: [] };

export class StateStore {
  readonly file: string;
  private readonly log: Logger;
  private writing: Promise<void> = Promise.resolve();
  private queued?: PersistedState;

  constructor(stateDir: string, log: Logger) {
    this.file = path.join(stateDir, "state.json");
    this.log = log;
  }

  async load(): Promise<PersistedState> {
    let text: string;
    try {
      text = await readFile(this.file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return EMPTY_STATE;
      this.log.warn({ event: "state.unreadable", file: this.file, err: (e as Error).message }, `cannot read ${this.file}; starting with empty state`);
      return EMPTY_STATE;
    }
    try {
      const s = JSON.parse(text) as PersistedState;
      if (s?.version !== 1 || typeof s.backends !== "object" || !Array.isArray(s.history)) throw new Error("unexpected shape");
      return s;
    } catch (e) {
      const aside = `${this.file}.corrupt-${Date.now()}`;
      await rename(this.file, aside).catch(() => undefined);
      this.log.warn({ event: "state.corrupt", file: this.file, moved_to: aside, err: (e as Error).message }, `state file ${this.file} is corrupt (${(e as Error).message}); set aside as ${aside}, starting with empty state`);
      return EMPTY_STATE;
    }
  }

  /** Saves in the background; writes coalesce, and never overlap. */
  save(state: PersistedState): Promise<void> {
    this.queued = state;
    this.writing = this.writing.then(async () => {
      const s = this.queued;
      if (!s) return;
      this.queued = undefined;
      try {
        await mkdir(path.dirname(this.file), { recursive: true });
        await writeJsonAtomic(this.file, s, 0o640);
      } catch (e) {
        this.log.warn({ event: "state.write_failed", file: this.file, err: (e as Error).message }, `cannot write ${this.file}`);
      }
    });
    return this.writing;
  }

  flush(): Promise<void> {
    return this.writing;
  }
}
