/**
 * Running nvidia-smi: one long-lived loop-mode process (`-lms`) for samples,
 * and one-shot queries (field probing, compute apps, remapped rows) one at a
 * time, each with a hard deadline. Nothing here parses CSV or blocks the
 * event loop.
 *
 * The hung-process rule: on a wedged driver nvidia-smi blocks in the kernel
 * and no signal ends it. A process that misses its deadline is sent SIGKILL
 * and let go of at once (never waited on); until it has really exited, the
 * runner starts no other nvidia-smi and every request is refused with
 * LLMSUP_E_GPU_UNRESPONSIVE. So a wedged driver costs one stuck process,
 * not one per sample.
 */
import { LlmsupError } from "../errors/error.ts";
import { formatDuration } from "../config/units.ts";
import type { Clock, TimerHandle } from "../platform/clock.ts";
import type { ChildExit, ChildHandle, ProgramSpawner } from "./spawn.ts";

export interface SmiRun {
  /** stdout and stderr together, as nvidia-smi prints its errors on stdout. */
  readonly output: string;
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** How long it took. */
  readonly ms: number;
}

export interface StuckProcess {
  readonly pid: number | undefined;
  /** When it missed its deadline. */
  readonly since: number;
  readonly what: "query" | "loop";
}

export interface SmiRunnerOptions {
  /** Program to run ([gpu] nvidia_smi). */
  readonly path: string;
  /** Hard deadline of one-shot queries, ms ([gpu] deadline). */
  readonly deadlineMs: number;
  /** Starts nvidia-smi (spawnChild, from the composition root; tests script their own). */
  readonly spawn: ProgramSpawner;
  readonly clock: Clock;
}

export interface LoopOptions {
  /** Lines that make one sample (one per GPU). */
  readonly linesPerSample: number;
  /** A sample not complete this long after the previous one (or the start) is overdue. */
  readonly overdueMs: number;
  /** Whether a line begins a new sample (resynchronises when the GPU count changed); optional. */
  readonly startsSample?: (line: string) => boolean;
  /**
   * Whether a line is nvidia-smi's own failure text ("couldn't communicate
   * with the NVIDIA driver", "GPU is lost", …); optional. Such a line ends
   * the sample stream: it and everything after it (with the unfinished
   * sample before it) are never delivered as a sample but carried in the
   * exit's `leftover`. A process that does not end by itself soon after is
   * sent SIGTERM.
   */
  readonly endsStream?: (line: string) => boolean;
}

export interface LoopExit extends ChildExit {
  /** Output after the last complete sample (an error message, usually; the line that ended the stream, when one did). */
  readonly leftover: string;
  /** The loop had missed its deadline and was killed. */
  readonly overdue: boolean;
  /** stop() ended it. */
  readonly stopped: boolean;
}

export interface LoopListener {
  sample(lines: readonly string[]): void;
  overdue(waitedMs: number): void;
  exit(exit: LoopExit): void;
}

export interface LoopHandle {
  readonly pid: number | undefined;
  /** Settles when the process has exited. */
  readonly exited: Promise<unknown>;
  stop(): void;
}

/** Most output kept from one query; nvidia-smi prints a few lines per GPU. */
const MAX_OUTPUT = 1 << 20;
/** Lines kept after a failure line ended a loop's sample stream. */
const MAX_FAILURE_LINES = 50;
/** How long a loop that printed a failure may take to exit by itself before it is sent SIGTERM. */
export const FAILURE_GRACE_MS = 1_000;

export class SmiRunner {
  readonly path: string;
  readonly deadlineMs: number;
  readonly #spawn: ProgramSpawner;
  readonly #clock: Clock;
  readonly #stuck = new Set<StuckProcess>();
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: SmiRunnerOptions) {
    this.path = options.path;
    this.deadlineMs = options.deadlineMs;
    this.#spawn = options.spawn;
    this.#clock = options.clock;
  }

  /** The oldest nvidia-smi that missed its deadline and has not exited yet. */
  stuck(): StuckProcess | undefined {
    let oldest: StuckProcess | undefined;
    for (const s of this.#stuck) if (!oldest || s.since < oldest.since) oldest = s;
    return oldest;
  }

  /**
   * Runs `nvidia-smi ARGS` once, after any query before it. Resolves with its
   * output and exit status whatever they are; rejects with
   * LLMSUP_E_GPU_SMI_MISSING when it cannot be started and
   * LLMSUP_E_GPU_UNRESPONSIVE when it misses the deadline or an earlier one is stuck.
   */
  query(args: readonly string[], deadlineMs: number = this.deadlineMs): Promise<SmiRun> {
    const run = this.#queue.then(() => this.#once(args, deadlineMs));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #once(args: readonly string[], deadlineMs: number): Promise<SmiRun> {
    const refused = this.#refusal();
    if (refused) return Promise.reject(refused);
    const started = this.#clock.now();
    const child = this.#spawn(this.path, args);
    let output = "";
    child.onOutput((chunk) => {
      if (output.length < MAX_OUTPUT) output += chunk;
    });
    return new Promise<SmiRun>((resolve, reject) => {
      let settled = false;
      const timer = this.#clock.setTimeout(() => {
        if (settled) return;
        settled = true;
        this.#giveUp(child, "query");
        reject(
          new LlmsupError("LLMSUP_E_GPU_UNRESPONSIVE", `nvidia-smi did not answer within ${formatDuration(deadlineMs)}; the driver may be wedged`, {
            path: this.path,
            args,
            pid: child.pid,
            deadlineMs,
          }),
        );
      }, deadlineMs);
      void child.exited.then((exit) => {
        if (settled) return;
        settled = true;
        timer.cancel();
        if (exit.error && exit.code === null && exit.signal === null) reject(this.#missing(exit.error));
        else resolve({ output, exitCode: exit.code, signal: exit.signal, ms: this.#clock.now() - started });
      });
    });
  }

  /**
   * Starts the loop-mode process. Complete samples, a missed deadline and the
   * end of the process arrive at `listener`. Throws LLMSUP_E_GPU_UNRESPONSIVE
   * while an earlier nvidia-smi is stuck.
   */
  startLoop(args: readonly string[], options: LoopOptions, listener: LoopListener): LoopHandle {
    const refused = this.#refusal();
    if (refused) throw refused;
    const child = this.#spawn(this.path, args);
    let buffer = "";
    let batch: string[] = [];
    let lastAt = this.#clock.now();
    let overdue = false;
    let stopped = false;
    let ended = false;
    let failing = false;
    let grace: TimerHandle | undefined;

    const arm = (): TimerHandle => this.#clock.setTimeout(onOverdue, options.overdueMs);
    const onOverdue = () => {
      if (stopped || ended) return;
      overdue = true;
      this.#giveUp(child, "loop");
      listener.overdue(this.#clock.now() - lastAt);
    };
    let timer = arm();

    const deliver = (lines: string[]) => {
      timer.cancel();
      lastAt = this.#clock.now();
      timer = arm();
      listener.sample(lines);
    };
    child.onOutput((chunk) => {
      if (overdue || stopped) return;
      buffer += chunk;
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        const line = buffer.slice(0, nl).replace(/\r$/, "");
        buffer = buffer.slice(nl + 1);
        if (line.trim() === "") continue;
        if (failing) {
          if (batch.length < MAX_FAILURE_LINES) batch.push(line);
          continue;
        }
        if (options.endsStream?.(line)) {
          failing = true;
          batch.push(line);
          grace = this.#clock.setTimeout(() => {
            if (!ended && !stopped && !overdue) child.kill("SIGTERM");
          }, Math.min(FAILURE_GRACE_MS, options.overdueMs));
          continue;
        }
        if (batch.length > 0 && options.startsSample?.(line)) deliver(batch.splice(0));
        batch.push(line);
        if (batch.length >= options.linesPerSample) deliver(batch.splice(0));
      }
      if (buffer.length > MAX_OUTPUT) buffer = buffer.slice(-MAX_OUTPUT);
    });
    void child.exited.then((exit) => {
      ended = true;
      timer.cancel();
      grace?.cancel();
      const leftover = [...batch, buffer].filter((s) => s.trim() !== "").join("\n");
      if (exit.error && exit.code === null && exit.signal === null) {
        listener.exit({ ...exit, leftover: this.#missing(exit.error).message, overdue, stopped });
      } else listener.exit({ ...exit, leftover, overdue, stopped });
    });
    return {
      pid: child.pid,
      exited: child.exited,
      stop: () => {
        if (stopped || ended) return;
        stopped = true;
        timer.cancel();
        grace?.cancel();
        child.kill("SIGTERM");
        child.abandon();
      },
    };
  }

  /** SIGKILL, let go, and remember it until it really exits. */
  #giveUp(child: ChildHandle, what: StuckProcess["what"]): void {
    const stuck: StuckProcess = { pid: child.pid, since: this.#clock.now(), what };
    this.#stuck.add(stuck);
    void child.exited.then(() => this.#stuck.delete(stuck));
    child.kill("SIGKILL");
    child.abandon();
  }

  #refusal(): LlmsupError | undefined {
    const stuck = this.stuck();
    if (!stuck) return undefined;
    return new LlmsupError(
      "LLMSUP_E_GPU_UNRESPONSIVE",
      `an earlier nvidia-smi (pid ${stuck.pid ?? "?"}) has been stuck for ${formatDuration(this.#clock.now() - stuck.since)}; not starting another`,
      { path: this.path, pid: stuck.pid, stuckSince: stuck.since },
    );
  }

  #missing(error: NodeJS.ErrnoException): LlmsupError {
    const why = error.code === "ENOENT" ? "no such file" : error.code === "EACCES" ? "permission denied" : error.message;
    return new LlmsupError("LLMSUP_E_GPU_SMI_MISSING", `cannot run nvidia-smi at "${this.path}": ${why}`, { path: this.path, errno: error.code }, { cause: error });
  }
}
