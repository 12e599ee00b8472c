/**
 * The one owner of a managed backend's process. Only the owner changes the
 * backend's state; every transition is an event with its reason.
 */
import path from "node:path";
import type { BackendConfig, ProcessConfig } from "../config/types.ts";
import { formatDuration } from "../config/units.ts";
import { isLlmsupError, LlmsupError } from "../errors/error.ts";
import type { Logger } from "../log/logger.ts";
import { sleepOn, type Clock, type TimerHandle } from "../platform/clock.ts";
import { restartDelay, withJitter } from "./backoff.ts";
import { budgetUsage, EMPTY_BUDGET, recordFailure, type Budget, type BudgetPolicy } from "./budget.ts";
import { classifyExit, countsAsFailure, type ExitFacts } from "./classify.ts";
import { LineTail, RotatingLog } from "./output.ts";
import type { Prober } from "./probes.ts";
import { deepProbeDue, judgeLiveness } from "./liveness.ts";
import type { Spawned, Spawner } from "./spawn.ts";
import type { BackendSnapshot, BackendState, DrillCause, ExitRecord, StateEvent, SupervisorEvent } from "./states.ts";
import type { VramHolder, VramProbe } from "./vram.ts";
import { killGroupRemains, stopGroup, type StopTarget } from "./stop.ts";
import { VramGuard } from "./vram-guard.ts";

export interface OwnerDeps {
  readonly clock: Clock;
  readonly spawn: Spawner;
  readonly prober: Prober;
  readonly vram?: VramProbe;
  readonly logger: Logger;
  readonly logDir: string;
  readonly logMaxBytes: number;
  readonly logKeep: number;
  readonly random: () => number;
  /** Whether the host is short of memory right now (tells the kernel OOM killer from a stray SIGKILL). */
  readonly hostMemoryPressure: () => Promise<boolean>;
  readonly onEvent: (e: SupervisorEvent) => void;
  /** How often readiness is polled while starting. */
  readonly readinessPollMs?: number;
}

type Requested = "stop" | "restart" | "startup_timeout" | "wedged" | "start_failed";

interface Running {
  readonly generation: number;
  readonly pid: number;
  readonly spawned: Spawned;
  requested?: Requested;
  requestDetail?: string;
  exitedFlag: boolean;
  /** A drill is breaking this process on purpose (see expectDrillExit). */
  drill?: DrillMarkState;
}

interface DrillMarkState {
  readonly cause: DrillCause;
  /** Until the drill ends. */
  active: boolean;
  /** llmsup asked this process to stop (wedge, startup timeout) while the drill was active. */
  requestedDuring: boolean;
}

/** What a drill holds while it breaks a backend: the process to break, and the end of its claim. */
export interface DrillMark {
  readonly pid: number;
  readonly generation: number;
  /** The drill is over: from now on an exit of this generation that llmsup did not ask for during the drill is a real failure again. */
  end(): void;
}


export class BackendOwner {
  readonly config: BackendConfig;
  private readonly proc: ProcessConfig;
  private readonly deps: OwnerDeps;
  private prober: Prober;
  private readonly log: Logger;
  private state: BackendState = "stopped";
  private since: number;
  private reason = "not started";
  private generation = 0;
  private running?: Running;
  private budget: Budget = EMPTY_BUDGET;
  /** Consecutive failures since the last sustained ready period: drives the backoff. */
  private consecutiveFailures = 0;
  private lastExit?: ExitRecord;
  private progress?: string;
  private readonly tail = new LineTail(200);
  private readonly logFile: RotatingLog;
  private logOpened?: Promise<void>;
  private readonly guard: VramGuard;
  private timers: TimerHandle[] = [];
  private waitingStop: (() => void)[] = [];
  private shallowFailures = 0;
  private deepFailures = 0;
  private lastDeepAt?: number;
  private lastSuccessAt?: number;
  private lastLatencyMs?: number;
  private probing = false;
  private readonly outputListeners = new Set<(text: string) => void>();
  private beginning = false;

  constructor(config: BackendConfig, deps: OwnerDeps) {
    if (!config.process) throw new Error(`backend ${config.name} is not managed`);
    this.config = config;
    this.proc = config.process;
    this.deps = deps;
    this.prober = deps.prober;
    this.log = deps.logger.child({ backend: config.name });
    this.since = deps.clock.now();
    this.guard = new VramGuard(config.name, deps.vram, config.gpus, deps.clock, this.log);
    this.logFile = new RotatingLog(path.join(deps.logDir, `${config.name}.log`), deps.logMaxBytes, deps.logKeep);
  }

  get name(): string {
    return this.config.name;
  }

  get currentState(): BackendState {
    return this.state;
  }

  private get policy(): BudgetPolicy {
    return { interval: this.proc.start_limit_interval, burst: this.proc.start_limit_burst };
  }

  snapshot(): BackendSnapshot {
    const now = this.deps.clock.now();
    return {
      name: this.config.name,
      kind: this.config.kind,
      state: this.state,
      since: this.since,
      reason: this.reason,
      generation: this.generation,
      pid: this.running?.pid,
      budget: budgetUsage(this.budget, this.policy, now),
      lastExit: this.lastExit,
      progress: this.state === "starting" ? `${this.progress ?? "starting"} (for ${formatDuration(now - this.since)})` : undefined,
      probes: {
        shallowFailures: this.shallowFailures,
        deepFailures: this.deepFailures,
        lastDeepAt: this.lastDeepAt,
        lastSuccessAt: this.lastSuccessAt,
        lastLatencyMs: this.lastLatencyMs,
      },
      logFile: this.logFile.file,
    };
  }

  /** The last `n` lines the backend printed (stdout and stderr interleaved). */
  logTail(n = 50): string[] {
    return this.tail.last(n);
  }

  /** What survives a daemon restart: failed starts in the window, and a fatal mark. */
  persisted(): { failures: readonly number[]; fatal?: { reason: string; at: number } } {
    return { failures: this.budget.failures, ...(this.state === "fatal" ? { fatal: { reason: this.reason, at: this.since } } : {}) };
  }

  /** Restores a previous daemon's view: the budget window, and fatal (which then needs a reset). */
  restore(p: { failures: readonly number[]; fatal?: { reason: string; at: number } }): void {
    this.budget = { failures: [...p.failures] };
    this.consecutiveFailures = p.failures.length;
    if (p.fatal && this.state === "stopped" && !this.running) {
      this.state = "fatal";
      this.since = p.fatal.at;
      this.reason = `${p.fatal.reason} (carried over from before the daemon restarted)`;
    }
  }

  /** Follows the backend's output as it comes (`llmsup logs -f`); returns the unsubscribe. */
  onOutput(fn: (text: string) => void): () => void {
    this.outputListeners.add(fn);
    return () => this.outputListeners.delete(fn);
  }

  /** Replaces the probes (the routes naming this backend's models changed on a reload). */
  setProber(p: Prober): void {
    this.prober = p;
  }

  /** A real request succeeded on this backend: no deep probe is needed for a while. */
  noteRequestSuccess(): void {
    this.lastSuccessAt = this.deps.clock.now();
  }

  // ------------------------------------------------------------------ transitions

  private transition(to: BackendState, reason: string, extra: Partial<StateEvent> = {}): void {
    const from = this.state;
    const at = this.deps.clock.now();
    this.state = to;
    this.since = at;
    this.reason = reason;
    const e: StateEvent = {
      event: "backend.state",
      backend: this.config.name,
      generation: this.generation,
      from,
      to,
      reason,
      at,
      pid: this.running?.pid,
      budget: budgetUsage(this.budget, this.policy, at),
      ...extra,
    };
    const level = to === "fatal" || to === "blocked" ? "error" : to === "exited" || to === "backoff" || to === "degraded" ? "warn" : "info";
    this.log[level]({ ...e, exit: e.exit ? { ...e.exit, lastLines: e.exit.lastLines.slice(-10) } : undefined }, `${this.config.name}: ${from} → ${to}: ${reason}`);
    this.deps.onEvent(e);
  }

  private after(ms: number, fn: () => void): TimerHandle {
    const t = this.deps.clock.setTimeout(() => {
      this.timers = this.timers.filter((x) => x !== t);
      fn();
    }, ms);
    this.timers.push(t);
    return t;
  }

  private cancelTimers(): void {
    for (const t of this.timers) t.cancel();
    this.timers = [];
  }

  // ------------------------------------------------------------------ operations

  /** Starts the backend unless it is already running or on its way; a fatal backend needs reset(). */
  async start(): Promise<void> {
    if (this.running || this.beginning || this.state === "fatal") return;
    if (this.state === "backoff" || this.state === "blocked") this.cancelTimers();
    await this.begin("started");
  }

  /**
   * Stops the backend (process group: SIGTERM, then SIGKILL) and keeps it
   * stopped. `keepFatal`: a daemon shutdown leaves a fatal backend fatal, so
   * the mark survives the restart and still needs an explicit reset.
   */
  async stop(reason = "stopped on request", options: { keepFatal?: boolean } = {}): Promise<void> {
    this.cancelTimers();
    const r = this.running;
    if (!r) {
      if (this.state === "fatal" && options.keepFatal) return;
      if (this.state !== "stopped") this.transition("stopped", reason);
      return;
    }
    r.requested = "stop";
    r.requestDetail = reason;
    const done = new Promise<void>((resolve) => this.waitingStop.push(resolve));
    if (this.state !== "stopping") this.transition("stopping", reason);
    await this.terminate(r);
    await done;
  }

  /** Stops and starts again at once; an operator's restart does not count against the budget. */
  async restart(reason = "restarted on request"): Promise<void> {
    this.cancelTimers();
    const r = this.running;
    if (!r) {
      await this.begin(reason);
      return;
    }
    r.requested = "restart";
    r.requestDetail = reason;
    this.transition("stopping", reason);
    await this.terminate(r);
  }

  /**
   * A drill is about to break the running process on purpose (SIGKILL it,
   * SIGSTOP its group). Until `end()`, the exit of this generation — and an
   * exit llmsup asked for while the drill ran (a wedge restart, a startup
   * timeout), even if it comes after the end — is the drill's doing: recorded
   * with class "drill" and a reason naming the drill, not counted against the
   * restart budget, and restarted whatever `restart` says. The restarted
   * process is a new generation: its own failures count as usual.
   */
  expectDrillExit(cause: DrillCause): DrillMark {
    const r = this.running;
    if (!r || r.requested || (this.state !== "ready" && this.state !== "degraded")) {
      throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", `drill ${cause.id} (${cause.scenario}) needs ${this.config.name} running and serving; it is ${this.state}`, { backend: this.config.name });
    }
    if (r.drill?.active) throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", `${this.config.name} is already held by drill ${r.drill.cause.id}`, { backend: this.config.name });
    const mark: DrillMarkState = { cause, active: true, requestedDuring: false };
    r.drill = mark;
    this.log.info({ event: "backend.drill.marked", drill: cause.id, scenario: cause.scenario, generation: r.generation, pid: r.pid }, `${this.config.name}: drill ${cause.id} (${cause.scenario}) holds generation ${r.generation} (pid ${r.pid}); its exit will not count against the restart budget`);
    return {
      pid: r.pid,
      generation: r.generation,
      end: () => {
        mark.active = false;
      },
    };
  }

  /** Leaves fatal (or any stopped state): forgets the failed starts and starts again. */
  async reset(): Promise<void> {
    this.budget = EMPTY_BUDGET;
    this.consecutiveFailures = 0;
    if (this.running) return;
    this.cancelTimers();
    await this.begin("reset: restart budget cleared");
  }

  // ------------------------------------------------------------------ starting

  private async begin(reason: string): Promise<void> {
    if (this.beginning || this.running) return;
    this.beginning = true;
    try {
      this.logOpened ??= this.logFile.open().catch((e: Error) => {
        this.log.warn({ event: "backend.log.unwritable", file: this.logFile.file, err: e.message }, "backend log file cannot be written; output is kept in memory only");
      });
      await this.logOpened;
      const cleared = await this.guard.clearLeftovers(this.proc.stop_timeout);
      if (!cleared.ok) {
        this.block(cleared.reason, cleared.holder);
        return;
      }
      this.generation++;
      this.progress = "spawning";
      let spawned: Spawned;
      try {
        spawned = await this.deps.spawn(this.config.name, this.proc);
      } catch (e) {
        const message = isLlmsupError(e) ? e.message : (e as Error).message;
        this.tail.push(`llmsup: ${message}\n`);
        this.transition("starting", reason);
        this.onFailure({ at: this.deps.clock.now(), generation: this.generation, pid: 0, code: null, signal: null, class: "spawn_failed", reason: message, lastLines: this.tail.last(20) });
        return;
      }
      const r: Running = { generation: this.generation, pid: spawned.pid, spawned, exitedFlag: false };
      this.running = r;
      this.guard.ourGroups.add(spawned.pid);
      this.shallowFailures = 0;
      this.deepFailures = 0;
      this.pipe(spawned);
      this.transition("starting", reason);
      spawned.exited.then((x) => this.onExit(r, x));
      this.after(this.proc.startup_timeout, () => {
        if (this.running === r && this.state === "starting") {
          r.requested = "startup_timeout";
          r.requestDetail = `not ready after ${formatDuration(this.proc.startup_timeout)}`;
          void this.terminate(r);
        }
      });
      void this.pollReadiness(r);
    } finally {
      this.beginning = false;
    }
  }

  private pipe(s: Spawned): void {
    const take = (chunk: Buffer) => {
      this.logFile.write(chunk);
      const text = chunk.toString("utf8");
      this.tail.push(text);
      for (const l of this.outputListeners) l(text);
    };
    s.stdout.on("data", take);
    s.stderr.on("data", take);
    // An error on a pipe must not bring the daemon down.
    s.stdout.on("error", () => undefined);
    s.stderr.on("error", () => undefined);
  }

  private async pollReadiness(r: Running): Promise<void> {
    const every = this.deps.readinessPollMs ?? Math.min(1_000, this.config.health.interval);
    while (this.running === r && this.state === "starting" && !r.requested) {
      let readiness;
      try {
        readiness = await this.prober.readiness();
      } catch (e) {
        readiness = { state: "loading" as const, detail: (e as Error).message };
      }
      if (this.running !== r || this.state !== "starting" || r.requested) return;
      if (readiness.state === "ready") {
        this.progress = undefined;
        this.lastSuccessAt = this.deps.clock.now();
        this.transition("ready", `readiness passed after ${formatDuration(this.deps.clock.now() - this.since)}`);
        this.armStable(r);
        this.scheduleLiveness(r);
        return;
      }
      if (readiness.state === "failed") {
        r.requested = "start_failed";
        r.requestDetail = readiness.reason;
        void this.terminate(r);
        return;
      }
      this.progress = readiness.detail;
      await sleepOn(this.deps.clock, every);
    }
  }

  /** After a sustained ready period the failed-start count starts again from zero. */
  private armStable(r: Running): void {
    this.after(this.proc.stable_after, () => {
      if (this.running === r && (this.state === "ready" || this.state === "degraded")) {
        this.budget = EMPTY_BUDGET;
        this.consecutiveFailures = 0;
      }
    });
  }

  // ------------------------------------------------------------------ liveness

  private scheduleLiveness(r: Running): void {
    this.after(this.config.health.interval, () => void this.liveness(r));
  }

  private async liveness(r: Running): Promise<void> {
    if (this.running !== r || r.requested || (this.state !== "ready" && this.state !== "degraded")) return;
    if (this.probing) return this.scheduleLiveness(r);
    this.probing = true;
    try {
      const shallow = await this.prober.shallow().catch((e: Error) => ({ ok: false, latencyMs: 0, detail: e.message }));
      if (this.running !== r || r.requested) return;
      this.lastLatencyMs = shallow.latencyMs;
      let deep: Awaited<ReturnType<Prober["deep"]>> | undefined;
      if (deepProbeDue(shallow.ok, this.deps.clock.now(), this.lastSuccessAt, this.config.health)) {
        deep = await this.prober.deep().catch((e: Error) => ({ ok: false, latencyMs: 0, detail: e.message }));
        if (this.running !== r || r.requested) return;
        this.lastDeepAt = this.deps.clock.now();
        if (deep.ok && !deep.skipped) this.lastSuccessAt = this.lastDeepAt;
        if (!deep.ok) this.log.warn({ event: "backend.probe.deep_failed", failures: this.deepFailures + 1, detail: deep.detail }, `${this.config.name}: deep probe failed: ${deep.detail}`);
      }
      const round = judgeLiveness({ shallow, deep, shallowFailures: this.shallowFailures, deepFailures: this.deepFailures, degraded: this.state === "degraded", health: this.config.health });
      this.shallowFailures = round.shallowFailures;
      this.deepFailures = round.deepFailures;
      const v = round.verdict;
      if (v.kind === "wedged_restart") {
        r.requested = "wedged";
        r.requestDetail = v.reason;
        this.transition("stopping", r.drill?.active ? `${v.reason} (during drill ${r.drill.cause.id})` : v.reason);
        void this.terminate(r);
      } else if (v.kind === "degrade") {
        // Already degraded: only a wedge (a new, worse reason) is worth a new event.
        const known = this.state === "degraded" && (this.reason === v.reason || !v.reason.startsWith("wedged"));
        if (!known) this.transition("degraded", v.reason);
      } else if (v.kind === "recover") {
        this.transition("ready", v.reason);
      }
    } finally {
      this.probing = false;
      if (this.running === r && !r.requested) this.scheduleLiveness(r);
    }
  }

  // ------------------------------------------------------------------ stopping

  private async terminate(r: Running): Promise<void> {
    if (r.drill?.active) r.drill.requestedDuring = true;
    const outcome = await stopGroup(this.stopTarget(r), this.proc.stop_timeout, this.deps.clock, () =>
      this.log.warn({ event: "backend.stop.sigkill", pid: r.pid, after_ms: this.proc.stop_timeout }, `${this.config.name}: still running ${formatDuration(this.proc.stop_timeout)} after SIGTERM; sending SIGKILL to the process group`),
    );
    if (outcome.kind !== "unkillable") return;
    const st = outcome.processState;
    this.deps.onEvent({ event: "backend.unkillable", backend: this.config.name, generation: r.generation, pid: r.pid, processState: st, at: this.deps.clock.now() });
    this.log.error(
      { event: "backend.unkillable", pid: r.pid, process_state: st },
      `${this.config.name}: pid ${r.pid} survives SIGKILL (process state ${st}${st === "D" ? ", stuck in the kernel, usually the GPU driver" : ""}); it will be reaped when the kernel lets it go`,
    );
  }

  private stopTarget(r: Running): StopTarget {
    return { pid: r.pid, exited: r.spawned.exited, hasExited: () => r.exitedFlag };
  }

  // ------------------------------------------------------------------ exits

  private async onExit(r: Running, x: { code: number | null; signal: NodeJS.Signals | null }): Promise<void> {
    r.exitedFlag = true;
    if (this.running !== r) return;
    this.running = undefined;
    this.cancelTimers();
    // Give the pipes a moment to deliver the last lines (an orphan may keep them open: do not wait for close).
    await sleepOn(this.deps.clock, 20);
    const requested = r.requested === "restart" ? "stop" : r.requested;
    const facts: ExitFacts = {
      code: x.code,
      signal: x.signal,
      lastLines: this.tail.last(40),
      requested,
      hostMemoryPressure: x.signal === "SIGKILL" && !r.requested ? await this.deps.hostMemoryPressure().catch(() => false) : false,
    };
    const c = classifyExit(facts);
    const reason = r.requestDetail && r.requested !== "stop" && r.requested !== "restart" ? `${c.reason}: ${r.requestDetail}` : c.reason;
    // An operator's stop or restart during a drill stays what it is; anything else the drill holds is the drill's.
    const drill = r.drill && (r.drill.active || r.drill.requestedDuring) && r.requested !== "stop" && r.requested !== "restart" ? r.drill.cause : undefined;
    const record: ExitRecord = {
      at: this.deps.clock.now(),
      generation: r.generation,
      pid: r.pid,
      code: x.code,
      signal: x.signal,
      class: drill ? "drill" : c.class,
      // The drill's own signal is no stranger's: "from outside llmsup" would mislead.
      reason: drill ? `caused by drill ${drill.id} (${drill.scenario}): ${reason.replace(" from outside llmsup", " (the drill's)")}; restart budget untouched` : reason,
      evidence: c.evidence,
      ...(drill ? { drill } : {}),
      lastLines: this.tail.last(20),
    };
    this.lastExit = record;
    await killGroupRemains(r.pid, this.proc.stop_timeout, this.deps.clock);

    if (r.requested === "stop") {
      this.transition("stopped", r.requestDetail ?? "stopped", { exit: record, pid: r.pid });
      for (const w of this.waitingStop.splice(0)) w();
      return;
    }
    this.transition("exited", record.reason, { exit: record, pid: r.pid });
    for (const w of this.waitingStop.splice(0)) w();
    if (r.requested === "restart") {
      await this.begin(r.requestDetail ?? "restarted on request");
      return;
    }
    if (record.class === "gpu_occupied" && (await this.blockOnForeignHolder(record))) return;
    this.onFailure(record);
  }

  /** Counts a failure against the budget, then backs off, gives up (fatal) or stays exited by policy. */
  private onFailure(record: ExitRecord): void {
    const now = this.deps.clock.now();
    if (countsAsFailure(record.class)) {
      const counted = recordFailure(this.budget, this.policy, now);
      this.budget = counted.budget;
      this.consecutiveFailures++;
      if (counted.exhausted) {
        this.transition(
          "fatal",
          `restart budget spent: ${counted.count} failed starts within ${formatDuration(this.proc.start_limit_interval)} (start_limit_burst ${this.proc.start_limit_burst}); last: ${record.reason}. Fix the cause, then run \`llmsup reset ${this.config.name}\``,
          { exit: record },
        );
        return;
      }
    }
    const policy = this.proc.restart;
    // A drill repairs what it broke, whatever the restart policy says.
    if (!record.drill && (policy === "never" || (policy === "on-failure" && record.class === "clean_exit"))) {
      if (this.state !== "exited") this.transition("exited", `${record.reason}; restart = "${policy}"`, { exit: record });
      return;
    }
    const n = Math.max(0, this.consecutiveFailures - 1);
    const delay = withJitter(restartDelay({ restartSec: this.proc.restart_sec, maxDelay: this.proc.restart_max_delay, steps: this.proc.restart_steps }, n), this.deps.random);
    this.transition("backoff", `restarting in ${formatDuration(delay)} after: ${record.reason}`, { restartInMs: delay, exit: record });
    this.after(delay, () => void this.begin(record.drill ? `restart after drill ${record.drill.id} (${record.drill.scenario})` : `restart after backoff (${record.class})`));
  }

  // ------------------------------------------------------------------ GPU memory

  /** A start failed because another process holds the memory: wait for it without burning the budget. */
  private async blockOnForeignHolder(record: ExitRecord): Promise<boolean> {
    const h = await this.guard.foreignHolder();
    if (!h) return false;
    this.block(`gpu_occupied: pid ${h.pid}${h.processName ? ` (${h.processName})` : ""} holds ${h.usedMemoryMib} MiB on GPU ${h.gpu}; waiting for it to go (restart budget untouched)`, h, record);
    return true;
  }

  private block(reason: string, holder: VramHolder, exit?: ExitRecord): void {
    this.transition("blocked", reason, { holder, exit });
    const recheck = Math.max(1_000, this.proc.restart_sec);
    const poll = async () => {
      if (this.state !== "blocked") return;
      const stillThere = await this.guard.stillHeld(holder.pid);
      if (this.state !== "blocked") return;
      if (stillThere) this.after(recheck, () => void poll());
      else await this.begin(`GPU memory released by pid ${holder.pid}`);
    };
    this.after(recheck, () => void poll());
  }

  /** Closes the log file (after the process is gone). */
  async close(): Promise<void> {
    this.cancelTimers();
    await this.logFile.close();
  }
}
