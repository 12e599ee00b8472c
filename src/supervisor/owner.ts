/**
 * The one owner of a managed backend's process. Only the owner changes the
 * backend's state, along the table in transitions.ts; every change is an
 * event with its reason. What follows an exit is decided in after-exit.ts and
 * when the process is probed in probe-loop.ts: the owner runs the process and
 * applies their decisions. One thing at a time: an operation first waits for
 * a start on its way to the spawn (a stop calls it off) and for an exit being
 * judged, so nothing starts or stops on top of a process still being dealt with.
 */
import path from "node:path";
import type { BackendConfig, ProcessConfig } from "../config/types.ts";
import { formatDuration } from "../config/units.ts";
import { isLlmsupError } from "../errors/error.ts";
import type { Logger } from "../log/logger.ts";
import { sleepOn, type Clock, type TimerHandle } from "../platform/clock.ts";
import { decideAfterExit, exitPolicy, memoryShortAtStart, type AfterExit } from "./after-exit.ts";
import { budgetUsage, EMPTY_BUDGET, type Budget, type BudgetPolicy } from "./budget.ts";
import { Generation, holdForDrill, type DrillMark } from "./generation.ts";
import type { LivenessVerdict } from "./liveness.ts";
import { BackendOutput, LogFile, MARKER } from "./output.ts";
import { ProbeLoop } from "./probe-loop.ts";
import type { Prober } from "./probes.ts";
import type { BackendSpawner, Spawned } from "./spawn.ts";
import { launchHash, portOf, type LaunchRecord } from "./launch.ts";
import { takeOver } from "./adoption.ts";
import { heldByAnother, type PortHolderLookup } from "./port-guard.ts";
import { isServing, type BackendSnapshot, type BackendState, type DrillCause, type ExitRecord, type SupervisorEvent } from "./states.ts";
import { StateMachine } from "./transitions.ts";
import { VramGuard } from "./vram-guard.ts";
import type { VramHolder, VramProbe } from "./vram.ts";

export type { DrillMark } from "./generation.ts";

export interface OwnerDeps {
  readonly clock: Clock;
  readonly spawn: BackendSpawner;
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
  readonly portHolder: PortHolderLookup;
  /** Whether a process an earlier daemon left running may be adopted ([daemon] live_restore). */
  readonly liveRestore: boolean;
}

type Exit = { readonly code: number | null; readonly signal: NodeJS.Signals | null };

/** The least time an adopted process gets to pass readiness again, in health intervals (it answered before its daemon went). */
const ADOPTED_GRACE_INTERVALS = 3;

export class BackendOwner {
  readonly config: BackendConfig;
  private readonly proc: ProcessConfig;
  private readonly deps: OwnerDeps;
  private readonly log: Logger;
  private readonly sm: StateMachine;
  private generation = 0;
  private running?: Generation;
  private budget: Budget = EMPTY_BUDGET;
  /** Consecutive failures since the last sustained ready period: drives the backoff. */
  private consecutiveFailures = 0;
  private lastExit?: ExitRecord;
  private readonly output: BackendOutput;
  private readonly probes: ProbeLoop;
  private readonly guard: VramGuard;
  private timers: TimerHandle[] = [];
  private waitingStop: (() => void)[] = [];
  /** A start on its way to the spawn; a stop calls it off. */
  private attempt?: { cancelled: boolean; done: Promise<void> };
  /** An exit being judged and applied. */
  private settling?: Promise<void>;
  /** What exited generations left in their process groups, being killed: the next spawn waits for it, and so does a stop. */
  private remains?: Promise<void>;
  /** The running process as recorded in state_dir (absent for a process whose start time could not be read). */
  private launched?: LaunchRecord;
  /** The process an earlier daemon left running, until the first start looks at it. */
  private adoptable?: LaunchRecord;

  constructor(config: BackendConfig, deps: OwnerDeps) {
    if (!config.process) throw new Error(`backend ${config.name} is not managed`);
    this.config = config;
    this.proc = config.process;
    this.deps = deps;
    const { clock } = deps;
    const log = (this.log = deps.logger.child({ backend: config.name }));
    const facts = () => ({ generation: this.generation, pid: this.running?.pid, budget: budgetUsage(this.budget, this.policy, clock.now()) });
    this.sm = new StateMachine({ backend: config.name, clock, log, onEvent: deps.onEvent, facts });
    this.guard = new VramGuard(config.name, deps.vram, config.gpus, clock, log);
    this.output = new BackendOutput(new LogFile(path.join(deps.logDir, `${config.name}.log`), deps.logMaxBytes, deps.logKeep), deps.clock);
    const readinessPollMs = deps.readinessPollMs ?? Math.min(1_000, config.health.interval);
    this.probes = new ProbeLoop(deps.prober, { name: config.name, clock, log, health: config.health, readinessPollMs, after: (ms, fn) => void this.after(ms, fn) });
  }

  get name(): string {
    return this.config.name;
  }

  get currentState(): BackendState {
    return this.sm.state;
  }

  private get policy(): BudgetPolicy {
    return exitPolicy(this.proc).budgetPolicy;
  }

  snapshot(): BackendSnapshot {
    const now = this.deps.clock.now();
    const { state, since, reason } = this.sm;
    const progress = state === "starting" ? `${this.probes.progress ?? "starting"} (for ${formatDuration(now - since)})` : undefined;
    const budget = budgetUsage(this.budget, this.policy, now);
    const startedAt = this.running ? this.launched?.startedAt : undefined;
    return { name: this.name, kind: this.config.kind, state, since, reason, generation: this.generation, pid: this.running?.pid, startedAt, adopted: this.running?.adopted, budget, lastExit: this.lastExit, progress, probes: this.probes.snapshot(), logFile: this.output.file.file };
  }

  /** The last `n` lines the backend printed (stdout and stderr interleaved), each after the time it was read; its log file read to the end first. */
  async logTail(n = 50): Promise<string[]> {
    await this.output.catchUp();
    return this.output.tail.lastStamped(n);
  }

  /** What survives a daemon restart: failed starts in the window, a fatal mark, the running process. */
  persisted(): { failures: readonly number[]; fatal?: { reason: string; at: number }; process?: LaunchRecord } {
    return {
      failures: this.budget.failures,
      ...(this.sm.state === "fatal" ? { fatal: { reason: this.sm.reason, at: this.sm.since } } : {}),
      ...(this.running && this.launched ? { process: this.launched } : {}),
    };
  }

  /** Restores a previous daemon's view: the budget window, fatal (which then needs a reset), the process it left running. */
  restore(p: { failures: readonly number[]; fatal?: { reason: string; at: number }; process?: LaunchRecord }): void {
    this.budget = { failures: [...p.failures] };
    this.consecutiveFailures = p.failures.length;
    if (p.process) this.adoptable = p.process;
    if (p.fatal && this.sm.state === "stopped" && !this.running && !this.attempt) this.sm.restore("fatal", p.fatal.at, `${p.fatal.reason} (carried over from before the daemon restarted)`);
  }

  /**
   * Adopts the process an earlier daemon left running, when there is one it
   * may adopt (live_restore, the same process, the same configuration):
   * resolves once it is ready (or no longer starting, or after `ms`), so that
   * the daemon listens with it serving. False when there was none to adopt
   * (then nothing was started here).
   */
  async adoptLeftover(ms: number): Promise<boolean> {
    if (!this.adoptable || !this.deps.liveRestore) return false;
    await this.start();
    const deadline = this.deps.clock.now() + ms;
    while (this.running?.adopted && this.sm.state === "starting" && this.deps.clock.now() < deadline) await sleepOn(this.deps.clock, 20);
    return this.running?.adopted === true;
  }

  /**
   * Lets go of the running process without stopping it (a daemon restart
   * with live_restore): it goes on serving, its output still goes to its log
   * file, and the next daemon adopts it. Nothing of it is judged here.
   */
  async detach(): Promise<void> {
    while (this.busy) await this.settled(true);
    this.cancelTimers();
    await this.remains;
    const r = this.running;
    if (r) {
      r.detached = true;
      r.spawned.release();
    }
    this.probes.newProcess();
    await this.output.close();
  }

  /** Follows the backend's output as it comes (`llmsup logs -f`); returns the unsubscribe. */
  onOutput(fn: (text: string) => void): () => void {
    return this.output.follow(fn);
  }

  /** Takes reloaded [daemon] backend_log_max and backend_log_keep: from the next rotation on. */
  setLogLimits(maxBytes: number, keep: number): void {
    this.output.file.maxBytes = maxBytes;
    this.output.file.keep = keep;
  }

  /** Replaces the probes (the routes naming this backend's models changed on a reload). */
  setProber(p: Prober): void {
    this.probes.prober = p;
  }

  /** A real request succeeded on this backend: no deep probe is needed for a while. */
  noteRequestSuccess(): void {
    this.probes.noteSuccess();
  }

  // ------------------------------------------------------------------ operations

  /** Starts the backend unless it is already running or on its way; a fatal backend needs reset(). */
  async start(): Promise<void> {
    while (this.busy) await this.settled();
    if (this.running || this.sm.state === "fatal") return;
    this.cancelTimers();
    await this.begin("started");
  }

  /**
   * Stops the backend (process group: SIGTERM, then SIGKILL) and keeps it
   * stopped; a start not yet spawned is called off. `keepFatal`: a daemon
   * shutdown leaves a fatal backend fatal, so the mark survives the restart
   * and still needs an explicit reset.
   */
  async stop(reason = "stopped on request", options: { keepFatal?: boolean } = {}): Promise<void> {
    while (this.busy) await this.settled(true);
    this.cancelTimers();
    const r = this.running;
    if (!r) {
      if (this.sm.state !== "stopped" && !(this.sm.state === "fatal" && options.keepFatal)) this.sm.to("stopped", reason);
      // A stop leaves nothing running: what the last process left in its group is gone first.
      await this.remains;
      return;
    }
    r.ask("stop", reason);
    const done = new Promise<void>((resolve) => this.waitingStop.push(resolve));
    if (this.sm.state !== "stopping") this.sm.to("stopping", reason);
    await this.terminate(r);
    await done;
  }

  /** Stops and starts again at once; an operator's restart does not count against the budget (from fatal it is one try: the budget stays spent). */
  async restart(reason = "restarted on request"): Promise<void> {
    while (this.busy) await this.settled();
    this.cancelTimers();
    const r = this.running;
    if (!r) return this.begin(reason);
    r.ask("restart", reason);
    this.sm.to("stopping", reason);
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
    const m = holdForDrill(this.running, cause, this.name, this.sm.state);
    this.log.info({ event: "backend.drill.marked", drill: cause.id, scenario: cause.scenario, generation: m.generation, pid: m.pid }, `${this.name}: drill ${cause.id} (${cause.scenario}) holds generation ${m.generation} (pid ${m.pid}); its exit will not count against the restart budget`);
    return m;
  }

  /** Leaves fatal (or any stopped state): forgets the failed starts and starts again. */
  async reset(): Promise<void> {
    while (this.busy) await this.settled();
    this.budget = EMPTY_BUDGET;
    this.consecutiveFailures = 0;
    if (this.running) return;
    this.cancelTimers();
    await this.begin("reset: restart budget cleared");
  }

  /** Closes the log file (after the process is gone). */
  async close(): Promise<void> {
    this.cancelTimers();
    await this.output.close();
  }

  /** A start is on its way to the spawn, or an exit is being judged: an operation waits (`while (this.busy) await this.settled()`). */
  private get busy(): boolean {
    return this.attempt !== undefined || this.settling !== undefined;
  }

  /** Waits for the start on its way (called off when `callOff`) or the exit being judged; the caller checks `busy` again. */
  private async settled(callOff = false): Promise<void> {
    if (this.attempt && callOff) this.attempt.cancelled = true;
    // Their failures are their callers' (or the log's): here they only mean "done".
    await (this.attempt?.done ?? this.settling)?.catch(() => undefined);
  }

  // ------------------------------------------------------------------ timers

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

  /** Work nobody awaits (timers, exits, probes): a failure is logged, never an unhandled rejection that ends the daemon. */
  private background(p: Promise<void>): void {
    p.catch((e: Error) => this.log.error({ event: "backend.owner_error", err: e.message, code: isLlmsupError(e) ? e.code : undefined }, `${this.name}: ${e.message}`));
  }

  // ------------------------------------------------------------------ starting

  private begin(reason: string): Promise<void> {
    if (this.attempt || this.running) return Promise.resolve();
    const attempt = (this.attempt = { cancelled: false, done: Promise.resolve() });
    attempt.done = this.spawnNext(reason, attempt).finally(() => {
      if (this.attempt === attempt) this.attempt = undefined;
    });
    return attempt.done;
  }

  private async spawnNext(reason: string, attempt: { readonly cancelled: boolean }): Promise<void> {
    await this.output.open((e) => this.log.warn({ event: "backend.log.unwritable", file: this.output.file.file, err: e.message }, "backend log file cannot be written; output is kept in memory only"));
    if (attempt.cancelled) return;
    if (this.remains) {
      // Nothing new starts beside what the last process left in its group (it may hold the port or the GPU memory).
      this.log.info({ event: "backend.remains.wait" }, `${this.name}: waiting for what the last process left in its group to be gone before starting`);
      await this.remains;
      if (attempt.cancelled) return;
    }
    if (this.adoptable) {
      const record = this.adoptable;
      this.adoptable = undefined;
      if (await this.adoptOrReplace(record, reason, attempt)) return;
      if (attempt.cancelled) return;
    }
    const taken = await heldByAnother(this.deps.portHolder, this.config.url, undefined);
    if (attempt.cancelled) return;
    if (taken) return this.block(`${taken}; waiting for it to go`, { stillThere: async () => (await heldByAnother(this.deps.portHolder, this.config.url, undefined)) !== undefined, released: "its port was released" });
    const cleared = await this.guard.clearLeftovers(this.proc.stop_timeout);
    if (attempt.cancelled) return;
    if (!cleared.ok) return this.block(cleared.reason, this.vramWait(cleared.holder));
    this.generation++;
    this.probes.newProcess();
    let spawned: Spawned;
    try {
      spawned = await this.deps.spawn(this.name, this.proc, this.output);
    } catch (e) {
      const message = (e as Error).message;
      this.output.note(`llmsup: ${message}`);
      if (attempt.cancelled) return;
      this.sm.to("starting", reason);
      const exit: ExitRecord = { at: this.deps.clock.now(), generation: this.generation, pid: 0, code: null, signal: null, class: "spawn_failed", reason: message, lastLines: this.output.tail.last(20) };
      return this.apply(this.decide(exit), exit);
    }
    // A marker in the log at every start: which generation, which pid, and why.
    this.output.note(`${MARKER} generation ${this.generation} started, pid ${spawned.pid}: ${reason} ────`);
    this.launched = spawned.startTime === undefined ? undefined : { pid: spawned.pid, startTime: spawned.startTime, hash: launchHash(this.config), startedAt: this.deps.clock.now(), generation: this.generation, port: portOf(this.config.url) };
    this.run(spawned, reason);
  }

  /** Watches a process from its start (spawned or adopted) to ready, and its exit. */
  private run(spawned: Spawned, reason: string, adopted = false): void {
    const piped = spawned.stdout && spawned.stderr ? this.output.attach(spawned.stdout, spawned.stderr) : undefined;
    this.output.following(!piped);
    const r = (this.running = new Generation(this.generation, spawned, () => piped ?? this.output.catchUp()));
    r.adopted = adopted;
    this.guard.ourGroups.add(spawned.pid);
    this.sm.to("starting", reason);
    void spawned.exited.then((x) => this.onExit(r, x));
    // An adopted process that had been ready gets a few health intervals to answer again; one still loading keeps the deadline it was started with.
    const grace = ADOPTED_GRACE_INTERVALS * this.config.health.interval + this.config.health.timeout;
    const loadingLeft = this.launched?.readyAt === undefined ? (this.launched?.startedAt ?? 0) + this.proc.startup_timeout - this.deps.clock.now() : 0;
    const startupMs = adopted ? Math.max(grace, loadingLeft) : this.proc.startup_timeout;
    this.after(startupMs, () => {
      if (this.running === r && r.untouched && this.sm.state === "starting") this.askToGo(r, "startup_timeout", adopted ? `adopted, and not ready ${formatDuration(startupMs)} later` : `not ready after ${formatDuration(this.proc.startup_timeout)}`);
    });
    const current = () => this.running === r && r.untouched;
    const ready = () =>
      this.background(
        heldByAnother(this.deps.portHolder, this.config.url, r.pid).then((foreign) => {
          if (!current() || this.sm.state !== "starting") return;
          // Readiness answered, but from a process that is not ours: ours cannot serve there.
          if (foreign) return this.askToGo(r, "start_failed", foreign);
          serving();
        }),
      );
    const serving = () => {
      // Recorded before the event (which persists it): a later daemon adopting this process knows it had loaded.
      if (this.launched && this.launched.readyAt === undefined) this.launched = { ...this.launched, readyAt: this.deps.clock.now() };
      this.sm.to("ready", `readiness passed after ${formatDuration(this.deps.clock.now() - this.sm.since)}${adopted ? ` (adopted, running since ${new Date(this.launched?.startedAt ?? this.sm.since).toISOString()})` : ""}`);
      // After a sustained ready period the failed-start count starts again from zero.
      this.after(this.proc.stable_after, () => {
        if (current() && isServing(this.sm.state)) [this.budget, this.consecutiveFailures] = [EMPTY_BUDGET, 0];
      });
      this.probes.watch({ current: () => current() && isServing(this.sm.state), degraded: () => this.sm.state === "degraded", verdict: (v) => this.onVerdict(r, v) });
    };
    this.background(this.probes.untilReady({ current: () => current() && this.sm.state === "starting", ready, failed: (why) => this.askToGo(r, "start_failed", why) }));
  }

  private onVerdict(r: Generation, v: LivenessVerdict): void {
    if (v.kind === "wedged_restart") {
      r.ask("wedged", v.reason);
      this.sm.to("stopping", r.drill?.active ? `${v.reason} (during drill ${r.drill.cause.id})` : v.reason);
      this.background(this.terminate(r));
    } else if (v.kind === "degrade") {
      // Already degraded: only a wedge on top of a lesser degradation is news.
      if (this.sm.state === "degraded" && (r.wedged || !v.wedged)) return;
      r.wedged = v.wedged === true;
      this.sm.to("degraded", v.reason);
    } else if (v.kind === "recover") {
      r.wedged = false;
      this.sm.to("ready", v.reason);
    }
  }

  /** llmsup ends a start that cannot succeed (no "stopping": the exit tells). */
  private askToGo(r: Generation, what: "startup_timeout" | "start_failed", detail: string): void {
    r.ask(what, detail);
    this.background(this.terminate(r));
  }

  private terminate(r: Generation): Promise<void> {
    return r.terminate(this.name, this.proc.stop_timeout, this.deps.clock, this.log, this.deps.onEvent);
  }

  /** Another process holds what a start needs (GPU memory, the port): wait for it to go, without burning the budget. */
  private block(reason: string, wait: { readonly holder?: VramHolder; readonly stillThere: () => Promise<boolean>; readonly released: string }, exit?: ExitRecord): void {
    this.sm.to("blocked", reason, { holder: wait.holder, exit });
    const recheck = Math.max(1_000, this.proc.restart_sec);
    const poll = async () => {
      if (this.sm.state !== "blocked") return;
      const stillThere = await wait.stillThere();
      if (this.sm.state !== "blocked") return;
      if (stillThere) this.after(recheck, () => this.background(poll()));
      else await this.begin(wait.released);
    };
    this.after(recheck, () => this.background(poll()));
  }

  private vramWait(holder: VramHolder): { holder: VramHolder; stillThere: () => Promise<boolean>; released: string } {
    return { holder, stillThere: () => this.guard.stillHeld(holder.pid), released: `GPU memory released by pid ${holder.pid}` };
  }

  /**
   * The process an earlier daemon recorded: adopted when it is still that
   * process and started from this configuration (true: nothing to spawn);
   * stopped first when it was started from another one.
   */
  private async adoptOrReplace(record: LaunchRecord, reason: string, attempt: { readonly cancelled: boolean }): Promise<boolean> {
    const t = await takeOver(record, this.config, { clock: this.deps.clock, stopTimeoutMs: this.proc.stop_timeout, mayAdopt: this.deps.liveRestore });
    if (t.kind === "none") {
      this.log.info({ event: "backend.adopt.none", pid: record.pid, reason: t.reason }, `${this.name}: nothing to adopt (${t.reason}); starting it`);
      return false;
    }
    if (t.kind === "replaced") {
      this.log.warn({ event: "backend.adopt.replaced", pid: record.pid }, `${this.name}: ${t.reason}; stopped it (process group) to start the configured one`);
      this.output.note(`${MARKER} ${t.reason}: stopped ────`);
      return false;
    }
    if (attempt.cancelled) return true;
    this.generation = record.generation;
    this.launched = record;
    this.probes.newProcess();
    this.output.note(`${MARKER} generation ${record.generation}, pid ${record.pid}, adopted: left running by an earlier llmsup, started ${new Date(record.startedAt).toISOString()} ────`);
    this.log.info({ event: "backend.adopted", pid: record.pid, generation: record.generation }, `${this.name}: adopted pid ${record.pid} (generation ${record.generation}), left running by an earlier llmsup`);
    this.run(t.process, `adopting pid ${record.pid}, left running by an earlier llmsup (${reason})`, true);
    return true;
  }

  // ------------------------------------------------------------------ exits

  private onExit(r: Generation, x: Exit): void {
    r.exited = true;
    if (this.running !== r || r.detached) return;
    const duringStart = this.sm.state === "starting";
    this.running = undefined;
    this.launched = undefined;
    this.cancelTimers();
    const settling = this.settle(r, x, duringStart).finally(() => {
      if (this.settling === settling) this.settling = undefined;
      for (const w of this.waitingStop.splice(0)) w();
    });
    this.settling = settling;
    this.background(settling);
  }

  /**
   * Judges the exit, then applies what follows: stopped, a restart, backoff,
   * fatal, blocked. The state says "exited" as soon as the exit is judged and
   * the decision follows at once; what the process left in its group is
   * killed meanwhile (the next spawn waits for it). Only a stop waits for it
   * before "stopped": a stopped backend has nothing left running.
   */
  private async settle(r: Generation, x: Exit, duringStart: boolean): Promise<void> {
    const exit = (this.lastExit = await r.judgeExit(x, { clock: this.deps.clock, lastLines: () => this.output.tail.last(40), hostMemoryPressure: this.deps.hostMemoryPressure }));
    // Its last lines are read: nothing writes to the file until the next process.
    this.output.following(false);
    const remains = this.killRemains(r);
    if (r.requested === "stop") await remains;
    else {
      this.sm.to("exited", exit.reason, { exit, pid: r.pid });
      for (const w of this.waitingStop.splice(0)) w();
    }
    // Short of memory at start: someone else's process on our GPUs may be why (our own leftovers are the VRAM guard's).
    const holder = memoryShortAtStart(exit, duringStart) ? await this.guard.foreignHolder() : undefined;
    await this.apply(this.decide(exit, r, holder, duringStart), exit, r.pid);
  }

  /** Kills what generation `r` left in its process group, in the background; resolves once that is over (never rejects). */
  private killRemains(r: Generation): Promise<void> {
    const done = r.killRemains(this.proc.stop_timeout, this.deps.clock).then(
      (o) => {
        const what = `generation ${r.generation} (pid ${r.pid}) left ${o.kind === "none" ? 0 : o.left} process(es) in its group`;
        if (o.kind === "killed" && !o.sigkill) this.log.info({ event: "backend.remains.killed", generation: r.generation, left: o.left }, `${this.name}: ${what}; gone after SIGTERM`);
        else if (o.kind === "killed") this.log.warn({ event: "backend.remains.killed", generation: r.generation, left: o.left, sigkill: true }, `${this.name}: ${what}; still there ${formatDuration(this.proc.stop_timeout)} after SIGTERM, killed with SIGKILL`);
        else if (o.kind === "unkillable") this.log.error({ event: "backend.remains.unkillable", generation: r.generation, left: o.left }, `${this.name}: ${what}; ${o.left} survive SIGKILL (stuck in the kernel, usually the GPU driver); starting without waiting for them`);
      },
      (e: Error) => this.log.error({ event: "backend.owner_error", err: e.message }, `${this.name}: killing what generation ${r.generation} left in its group failed: ${e.message}`),
    );
    const all = Promise.all([this.remains, done]).then(() => undefined);
    this.remains = all;
    void all.then(() => {
      if (this.remains === all) this.remains = undefined;
    });
    return done;
  }

  private decide(exit: ExitRecord, r?: Generation, foreignHolder?: VramHolder, duringStart = false): AfterExit {
    const { budget, consecutiveFailures } = this;
    return decideAfterExit({ backend: this.name, exit, requested: r?.requested, requestDetail: r?.requestDetail, ...exitPolicy(this.proc), budget, consecutiveFailures, duringStart, foreignHolder, now: this.deps.clock.now(), jitter: this.deps.random() });
  }

  private apply(d: AfterExit, exit: ExitRecord, pid?: number): void | Promise<void> {
    [this.budget, this.consecutiveFailures] = [d.budget, d.consecutiveFailures];
    switch (d.kind) {
      case "stopped":
        return this.sm.to("stopped", d.reason, { exit, pid });
      case "start":
        return this.begin(d.reason);
      case "blocked":
        return this.block(d.reason, this.vramWait(d.holder), exit);
      case "fatal":
        return this.sm.to("fatal", d.reason, { exit });
      case "exited":
        if (this.sm.state !== "exited") this.sm.to("exited", d.reason, { exit });
        return;
      case "backoff":
        this.sm.to("backoff", d.reason, { restartInMs: d.delayMs, exit });
        this.after(d.delayMs, () => this.background(this.begin(d.startReason)));
    }
  }
}
