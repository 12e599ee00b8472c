/**
 * Named jobs on cron expressions ([schedule] in supervisor.toml). A job never
 * overlaps itself: a tick that finds the previous run still going is skipped
 * and logged. A failing run is logged with its event name and the schedule
 * carries on. node-cron only supplies the ticks (a TickSource); tests inject
 * their own.
 */
import cron from "node-cron";
import { LlmsupError } from "../errors/error.ts";
import type { Logger } from "../log/logger.ts";
import { within, type Clock } from "../platform/clock.ts";

export interface JobContext {
  readonly name: string;
  readonly startedAt: number;
  /** Aborted when the scheduler stops. */
  readonly signal: AbortSignal;
}

export interface JobSpec {
  /** Stable name, in log lines and status (digest, drill, housekeeping). */
  readonly name: string;
  /** node-cron expression (5 fields, or 6 with seconds first); "" switches the job off. */
  readonly cron: string;
  readonly run: (ctx: JobContext) => unknown;
}

export interface JobStatus {
  readonly name: string;
  readonly cron: string;
  readonly running: boolean;
  readonly runs: number;
  readonly failures: number;
  /** Ticks skipped because the previous run was still going. */
  readonly skipped: number;
  readonly lastStartedAt?: number;
  readonly lastFinishedAt?: number;
  readonly lastDurationMs?: number;
  readonly lastError?: string;
}

export type RunOutcome = "ok" | "failed" | "skipped";

/** Calls `onTick` on the schedule of a cron expression until stopped. */
export interface TickSource {
  schedule(expression: string, name: string, onTick: () => void): { stop(): void };
}

/** Ticks from node-cron; its own messages go to the log. */
export function nodeCronTicks(logger: Logger): TickSource {
  const log = logger.child({ component: "node-cron" });
  const adapter = {
    info: (m: string) => log.debug({ event: "schedule.cron" }, m),
    warn: (m: string) => log.warn({ event: "schedule.cron" }, m),
    error: (m: string | Error) => log.error({ event: "schedule.cron" }, String(m)),
    debug: (m: string | Error) => log.debug({ event: "schedule.cron" }, String(m)),
  };
  return {
    schedule(expression, name, onTick) {
      const task = cron.schedule(expression, () => onTick(), { name, logger: adapter });
      return { stop: () => void task.destroy() };
    },
  };
}

interface Job {
  readonly spec: JobSpec;
  stop(): void;
  status: Omit<JobStatus, "name" | "cron">;
  current?: Promise<RunOutcome>;
}

export interface SchedulerDeps {
  readonly logger: Logger;
  readonly clock: Clock;
  /** Where ticks come from: nodeCronTicks (from the composition root), or a test's. */
  readonly ticks: TickSource;
}

export class Scheduler {
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly ticks: TickSource;
  private readonly jobs = new Map<string, Job>();
  private readonly abort = new AbortController();
  private stopped = false;

  constructor(deps: SchedulerDeps) {
    this.log = deps.logger;
    this.clock = deps.clock;
    this.ticks = deps.ticks;
  }

  /** Registers a job; false (and a log line) when its expression is "" (off). */
  add(spec: JobSpec): boolean {
    if (this.stopped) throw new Error("scheduler is stopped");
    if (this.jobs.has(spec.name)) throw new Error(`a job named ${spec.name} is already scheduled`);
    if (spec.cron.trim() === "") {
      this.log.info({ event: "schedule.job.off", job: spec.name }, `scheduled job ${spec.name} is off ([schedule] ${spec.name} = "")`);
      return false;
    }
    if (!cron.validate(spec.cron)) {
      throw new LlmsupError("LLMSUP_E_CONFIG_INVALID", `schedule.${spec.name}: "${spec.cron}" is not a cron expression`, { job: spec.name, cron: spec.cron });
    }
    const job: Job = { spec, stop: () => undefined, status: { running: false, runs: 0, failures: 0, skipped: 0 } };
    this.jobs.set(spec.name, job);
    job.stop = this.ticks.schedule(spec.cron, spec.name, () => void this.fire(job)).stop;
    this.log.info({ event: "schedule.job.added", job: spec.name, cron: spec.cron }, `scheduled job ${spec.name}: ${spec.cron}`);
    return true;
  }

  /** Runs a job now, under the same no-overlap rule as its ticks. */
  runNow(name: string): Promise<RunOutcome> {
    const job = this.jobs.get(name);
    if (!job) return Promise.reject(new Error(`no scheduled job named ${name}`));
    return this.fire(job);
  }

  status(): JobStatus[] {
    return [...this.jobs.values()].map((j) => ({ name: j.spec.name, cron: j.spec.cron, ...j.status }));
  }

  /** Stops every schedule and aborts the runs in progress; waits up to `timeoutMs` for them to end. */
  async stop(timeoutMs = 0): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const j of this.jobs.values()) j.stop();
    this.abort.abort(new Error("scheduler stopped"));
    const running = [...this.jobs.values()].map((j) => j.current).filter((p): p is Promise<RunOutcome> => p !== undefined);
    if (running.length === 0 || timeoutMs <= 0) return;
    await within(this.clock, Promise.allSettled(running), timeoutMs);
  }

  private fire(job: Job): Promise<RunOutcome> {
    const name = job.spec.name;
    if (this.stopped) return Promise.resolve("skipped");
    if (job.current) {
      job.status = { ...job.status, skipped: job.status.skipped + 1 };
      const forMs = this.clock.now() - (job.status.lastStartedAt ?? this.clock.now());
      this.log.warn({ event: "schedule.job.skipped", job: name, running_ms: forMs, skipped: job.status.skipped }, `scheduled job ${name} still running after ${forMs} ms; this run is skipped`);
      return Promise.resolve("skipped");
    }
    const startedAt = this.clock.now();
    job.status = { ...job.status, running: true, lastStartedAt: startedAt };
    this.log.debug({ event: "schedule.job.started", job: name }, `scheduled job ${name} started`);
    // Started in a microtask, so `current` is set before the job's first line runs (even if it throws at once).
    const run = Promise.resolve().then(async (): Promise<RunOutcome> => {
      try {
        await job.spec.run({ name, startedAt, signal: this.abort.signal });
        const ms = this.clock.now() - startedAt;
        job.status = { ...job.status, runs: job.status.runs + 1, lastFinishedAt: this.clock.now(), lastDurationMs: ms, lastError: undefined };
        this.log.info({ event: "schedule.job.finished", job: name, ms }, `scheduled job ${name} finished in ${ms} ms`);
        return "ok";
      } catch (e) {
        const ms = this.clock.now() - startedAt;
        const message = e instanceof Error ? e.message : String(e);
        job.status = { ...job.status, runs: job.status.runs + 1, failures: job.status.failures + 1, lastFinishedAt: this.clock.now(), lastDurationMs: ms, lastError: message };
        this.log.error({ event: "schedule.job.failed", job: name, ms, err: message, code: (e as { code?: unknown }).code }, `scheduled job ${name} failed: ${message}; it stays scheduled`);
        return "failed";
      } finally {
        job.status = { ...job.status, running: false };
        job.current = undefined;
      }
    });
    job.current = run;
    return run;
  }
}
