/**
 * The daemon: the running whole. Supervisor states and GPU faults feed the
 * health registry, which the router reads; everything notable lands in the
 * event history, the log and (through the alert desk) the operator's inbox.
 * It builds nothing real itself: clock, logger, environment, spawners and
 * the systemd notifier come from the composition root (wire.ts); control
 * and status see it through narrow ports (ControlApi, StatusSources).
 */
import { loadConfigFile } from "../config/load.ts";
import type { Config } from "../config/types.ts";
import { LlmsupError } from "../errors/error.ts";
import { GpuMonitor } from "../gpu/monitor.ts";
import type { GpuFault } from "../gpu/types.ts";
import { HealthRegistry } from "../health/registry.ts";
import { RemoteProber } from "../health/remote.ts";
import { HostMonitor } from "../host/monitor.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock } from "../platform/clock.ts";
import { RouterMetrics } from "../router/metrics.ts";
import { DaemonMetrics } from "./daemon-metrics.ts";
import { Router, type RouterEvent } from "../router/router.ts";
import { RouterServer, type Listening } from "../router/server.ts";
import type { SupervisorEvent } from "../supervisor/states.ts";
import { Supervisor, type ReloadChanges } from "../supervisor/supervisor.ts";
import { ResourceSampler } from "../supervisor/resources.ts";
import { ControlServer, type ControlApi } from "../control/server.ts";
import { buildStatus, mailSnapshot, preferenceOrder, type DaemonStatus } from "./status.ts";
import { EventHub, History } from "./event-hub.ts";
import { changeLine, refusalOf, reloadStatus, reloadSummary, settingChanges, type ReloadRefusal } from "./reload-plan.ts";
import { filterEvents } from "../control/event-filter.ts";
import { startHeartbeat, type Notifier } from "./notify.ts";
import type { DaemonDeps, DaemonEvent } from "./deps.ts";
import { StateLock } from "./state-lock.ts";
import { StateStore, type HistoryEntry, type PersistedState } from "./state-store.ts";
import { packageVersion } from "../platform/version.ts";
import type { Scheduler } from "../schedule/scheduler.ts";
import { scheduleJobs } from "./jobs.ts";
import { liveAfterReload, liveAtStart } from "./alert-bridge.ts";
import { AlertDesk } from "./alert-desk.ts";
import { historyOfGpuFault, historyOfRemediation, historyOfRouter, historyOfSupervisor } from "./history.ts";
import { RemediationDesk, type RemediationEvent } from "./remediation-desk.ts";
import { HealthFeed } from "./health-feed.ts";
import { ResidencyWatch } from "./residency-watch.ts";
import { EmergencyCache } from "../cache/cache.ts";
import { httpEmbedder } from "../cache/embeddings.ts";
import { ContextWindows } from "../health/context.ts";
import { plural } from "../alerts/text.ts";
import type { DrillSpec } from "../drills/drill.ts";
import type { DrillReport } from "../drills/report.ts";
import { DrillDesk, type DrillStopped } from "./drill-desk.ts";
import { readCounters } from "../drills/counters.ts";
import type { GamedaySpec } from "../drills/gameday.ts";
import type { Scorecard } from "../drills/scorecard.ts";
import { Drains, type DrainChange } from "./drains.ts";
import { parseLaunchRecord } from "../supervisor/launch.ts";
import { runShutdown, type ShutdownStep } from "./shutdown.ts";
import { takeListenFds } from "../platform/listen-fds.ts";

/** Most time start waits for adopted backends to pass readiness before the router listens. */
const ADOPT_WAIT_MS = 2_000;

/** Events kept in state_dir for `llmsup events` and status (the newest; a few weeks of a busy box). */
const HISTORY_MAX = 2_000;

export type { DaemonDeps, DaemonEvent } from "./deps.ts";

export class Daemon {
  readonly log: Logger;
  private readonly d: DaemonDeps;
  private readonly clock: Clock;
  private readonly startedAt: number;
  private config!: Config;
  /** The configuration llmsup started with: settings read once at start differ from it until a restart. */
  private startConfig!: Config;
  private health!: HealthRegistry;
  private feed!: HealthFeed;
  private supervisor_!: Supervisor;
  private router!: Router;
  private routerServer?: RouterServer;
  private control?: ControlServer;
  private gpu?: GpuMonitor;
  /** The GPU remediation ladder (reset, reboot required), when GPUs are watched. */
  private remediation?: RemediationDesk;
  private host?: HostMonitor;
  private readonly metrics = new RouterMetrics({ defaultMetrics: true });
  /** What status shows, on /metrics (read at each scrape), and the restarts and XIDs counted as they happen. */
  private readonly statusMetrics: DaemonMetrics;
  /** The emergency response cache; opened once a route has `cache = true`. */
  private cache?: EmergencyCache;
  private listening: Listening = {};
  private remote?: RemoteProber;
  private store?: StateStore;
  private history = new History([], HISTORY_MAX);
  private notifier?: Notifier;
  private heartbeat?: { stop(): void };
  private stopping?: Promise<void>;
  private stateLock?: StateLock;
  private alerts?: AlertDesk;
  private scheduler?: Scheduler;
  private readonly events: EventHub<DaemonEvent>;
  /** Context windows read from the backends (the router skips only tiers known to be too small). */
  private readonly windows: ContextWindows;
  private readonly drills: DrillDesk;
  /** Backends an operator took out of rotation (`llmsup drain`): kept here, outside the router, so a reload keeps them; persisted. */
  private readonly drains = new Drains();
  /** The last refused reload, until a good reload or a restart. */
  private reloadRefused: ReloadRefusal | null = null;

  constructor(deps: DaemonDeps) {
    this.d = deps;
    this.clock = deps.clock;
    this.startedAt = this.clock.now();
    this.log = deps.logger;
    this.events = new EventHub<DaemonEvent>(this.log, deps.onEvent);
    this.statusMetrics = new DaemonMetrics({ registry: this.metrics.registry, status: () => this.status(), now: () => this.clock.now(), version: packageVersion() });
    this.events.subscribe((e) => this.statusMetrics.event(e));
    this.windows = new ContextWindows({ clock: this.clock });
    this.drills = new DrillDesk(
      () => ({
        config: this.config,
        socket: this.listening.socket,
        health: this.health,
        supervisor: this.supervisor_,
        router: () => this.router,
        subscribe: (fn) => this.subscribe(fn),
        alertsSince: (at) => this.alerts?.log.since(at) ?? [],
        delivered: () => this.alerts?.delivered(),
        clock: this.clock,
        counters: (route) => readCounters(this.metrics.registry, route),
        mail: (m, severity) => this.alerts?.current?.send(m, "gameday", severity),
      }),
      this.log,
      (h) => this.remember(h),
      this.clock,
    );
  }

  /** The backends' supervisor (drills and tests read a backend's budget through it). */
  get supervisor(): Supervisor {
    return this.supervisor_;
  }

  /** The shutdown deadline in force (daemon.shutdown_timeout). */
  get shutdownTimeout(): number {
    return this.config?.daemon.shutdown_timeout ?? 0;
  }

  // ------------------------------------------------------------------ start

  async start(): Promise<void> {
    // Sockets systemd passed (llmsup.socket): taken first, so that no backend inherits the variables.
    const activation = takeListenFds(this.d.env, this.d.pid);
    if (activation?.problem) this.log.warn({ event: "router.activation_problem", problem: activation.problem }, activation.problem);
    const c = await this.loadConfig();
    this.config = this.startConfig = c;
    if (this.d.followConfigLogLevel) this.log.level = c.daemon.log_level;
    this.notifier = this.d.notifier(this.log);
    // One daemon per state_dir: before the state is read, a backend started or a socket bound.
    this.stateLock = await StateLock.acquire({ stateDir: c.daemon.state_dir, configPath: this.d.configPath, logger: this.log, now: this.clock.now() });
    this.store = new StateStore(c.daemon.state_dir, this.log);
    const persisted = await this.store.load();
    this.history = new History(persisted.history, HISTORY_MAX);
    this.alerts = await AlertDesk.open(c, { logger: this.log.child({ component: "alerts" }), clock: this.clock, env: this.d.env, mailer: this.d.mailer, snapshot: () => mailSnapshot(this.status(), this.clock.now()) });

    this.health = new HealthRegistry(c, this.clock);
    this.feed = new HealthFeed(this.health);
    this.health.onChange((name, h, prev) => {
      // A remote backend answering again may have changed its window (a new model, a new max_model_len).
      if (h.state !== "down" && prev.state === "down") this.discoverWindows(name, false);
      if (h.state !== prev.state) this.log.info({ event: "backend.health", backend: name, from: prev.state, to: h.state, reason: h.reason }, `${name} health: ${prev.state} → ${h.state} (${h.reason})`);
    });
    this.startMonitors(c);

    this.supervisor_ = new Supervisor(c, {
      logger: this.log.child({ component: "supervisor" }),
      clock: this.clock,
      spawn: this.d.spawnBackend,
      prober: this.d.prober,
      portHolder: this.d.portHolder,
      hostMemoryPressure: this.d.hostMemoryPressure,
      resources: new ResourceSampler({ clock: this.clock, read: this.d.groupUsage }),
      vram: this.gpu?.vramProbe(),
      onEvent: (e) => this.onSupervisorEvent(e),
      resourceSampleMs: 5_000,
    });
    this.restorePersisted(persisted);
    // The alert state from the last run meets the live one before anything can report: stale outages go, carried-over fatals stay.
    this.alerts.reconcile(liveAtStart(c, this.supervisor_.snapshot()));
    // Backends an earlier llmsup left running are adopted before the router listens: it opens serving on them.
    const adopted = await this.supervisor_.adoptAll(ADOPT_WAIT_MS);
    const gone = this.stateLock.tookOver;
    if (gone) this.remember({ at: this.clock.now(), kind: "daemon", summary: `the previous llmsup${gone.pid ? ` (pid ${gone.pid})` : ""} ended without a clean stop (killed or crashed): ${gone.reason}` });
    if (adopted.length > 0) {
      const which = this.supervisor_.snapshot().filter((b) => adopted.includes(b.name)).map((b) => `${b.name} (pid ${b.pid}, running since ${b.startedAt ? new Date(b.startedAt).toISOString() : "?"})`);
      const summary = `adopted ${which.join(", ")}, left running by an earlier llmsup: no model reload`;
      this.log.info({ event: "daemon.adopted", backends: adopted }, summary);
      this.remember({ at: this.clock.now(), kind: "daemon", summary });
    }
    this.openCache(c);
    this.router = this.makeRouter(c);
    this.routerServer = new RouterServer(c, this.router, this.log, this.metrics);
    this.listening = await this.routerServer.listen({ inherited: activation?.fds });
    this.control = new ControlServer(this.controlApi(), this.log, { clock: this.clock, daemonUid: this.d.uid });
    await this.control.listen(c.control);
    this.remote = new RemoteProber(c, this.health, this.clock, this.log);
    this.remote.start();
    for (const b of c.backends) if (!b.managed) this.discoverWindows(b.name, false);
    await this.gpu?.start().catch((e: Error) => this.log.warn({ event: "gpu.monitor.failed", err: e.message }, `GPU monitor could not start: ${e.message}`));
    await this.host?.start().catch((e: Error) => this.log.warn({ event: "host.monitor.failed", err: e.message }, `host monitor could not start: ${e.message}`));

    this.emit({ event: "daemon.started", at: this.clock.now(), detail: `llmsup ${packageVersion()} with ${plural(c.backends.length, "backend")}, ${plural(c.routes.length, "route")}` });
    this.alerts.send({ event: "daemon.started", at: this.clock.now(), version: packageVersion(), pid: this.d.pid, config: c.source });
    this.startScheduler(c);
    this.notifier.notify({ READY: 1, STATUS: "routing; starting backends", MAINPID: this.d.pid });
    this.heartbeat = startHeartbeat(this.notifier, this.d.env, this.clock, () => this.status().summary.text);
    void this.supervisor_.startAll(preferenceOrder(c)).catch((e: Error) => this.log.error({ event: "daemon.start_backends_failed", err: e.message }, "starting backends failed"));
  }

  private loadConfig(): Promise<Config> {
    return loadConfigFile(this.d.configPath, { hostname: this.d.hostname() });
  }

  private startMonitors(c: Config): void {
    if (c.gpu.enabled) {
      this.gpu = new GpuMonitor({ config: c.gpu, logger: this.log.child({ component: "gpu" }), spawn: this.d.spawnProgram, clock: this.clock });
      this.gpu.on("fault.raised", (f) => this.onGpuFault(f, true));
      this.gpu.on("fault.cleared", (f) => this.onGpuFault(f, false));
      // A GPU tier answering from the CPU is degraded: checked as GPU samples come in.
      const residency = new ResidencyWatch({
        clock: this.clock,
        log: this.log.child({ component: "gpu" }),
        monitor: this.gpu,
        config: () => this.config,
        backends: () => this.supervisor_.snapshot(),
        servingSince: (name) => this.feed.servingSince(name),
        report: (name, offGpu) => {
          this.feed.residency(name, offGpu);
          this.applyGpuHealth();
        },
      });
      this.gpu.on("sample", () => residency.sampled());
      this.gpu.on("xid", (o) => this.remediation?.xid(o));
      this.gpu.on("xid", (o) => this.statusMetrics.xid(o));
      const gpu = this.gpu;
      this.remediation = new RemediationDesk({
        clock: this.clock,
        logger: this.log.child({ component: "gpu" }),
        config: () => this.config.gpu,
        backendsOn: (index) => this.config.backends.filter((b) => b.managed && b.gpus.includes(index)).map((b) => b.name),
        hold: (name, reason) => {
          // Its requests go on elsewhere before the process is stopped under them.
          this.router?.evacuate(name, reason);
          return this.supervisor_.hold(name, reason);
        },
        release: (name, reason) => this.supervisor_.release(name, reason),
        smi: (args, deadlineMs) => gpu.exclusive(() => gpu.runner.query(args, deadlineMs)),
        markReset: (index, reason) => {
          try {
            gpu.gpuWasReset(index, "llmsup", reason);
          } catch (e) {
            this.log.warn({ event: "gpu.remediation.mark_failed", gpu: index, err: (e as Error).message }, `GPU ${index}: ${(e as Error).message}`);
          }
        },
        gpus: () => gpu.snapshot(),
        report: (e) => this.onRemediation(e),
      });
    }
    const host = (this.host = new HostMonitor({ config: c.host, dirs: [c.daemon.state_dir, c.daemon.log_dir], logger: this.log.child({ component: "host" }), reader: this.d.hostReader, clock: this.clock }));
    const freeBytes = (dir: string | undefined) => host.snapshot().reading?.disks.find((d) => d.dir === dir)?.freeBytes;
    host.on("fault.raised", (f) => {
      this.remember({ at: this.clock.now(), kind: "host_fault", summary: f.reason });
      this.alerts?.send({ event: "host.fault.raised", fault: f, at: this.clock.now(), freeBytes: freeBytes(f.dir), minFreeBytes: this.config.host.min_free_disk });
    });
    host.on("fault.cleared", (f) => this.alerts?.send({ event: "host.fault.cleared", fault: f, at: this.clock.now(), freeBytes: freeBytes(f.dir), minFreeBytes: this.config.host.min_free_disk }));
  }

  private makeRouter(c: Config, previous?: Router): Router {
    return new Router(
      c,
      {
        health: this.health,
        clock: this.clock,
        logger: this.log,
        metrics: this.metrics,
        cache: this.d.cache ?? this.cache,
        onEvent: (e) => this.onRouterEvent(e),
        onSuccess: (b) => this.supervisor_.noteRequestSuccess(b),
        contextWindow: (b, m) => this.windows.get(b, m),
        drained: (b) => this.drains.get(b),
        faults: this.drills.faults,
      },
      previous,
    );
  }

  /** The emergency cache in the state directory, when a route uses it (else no file is made); new bounds on reload. */
  private openCache(c: Config): void {
    if (this.d.cache) return;
    if (this.cache) return this.cache.reconfigure(c.cache);
    if (!c.routes.some((r) => r.cache)) return;
    this.cache = EmergencyCache.open({
      config: c.cache,
      dir: c.daemon.state_dir,
      logger: this.log.child({ component: "cache" }),
      clock: this.clock,
      metrics: this.metrics,
      sqlite: this.d.sqlite(),
      // Routes with cache_embeddings: their embeddings tier, found by name in the current configuration.
      embed: httpEmbedder(() => this.config.backends),
    });
    void this.cache.prune();
  }

  private restorePersisted(p: PersistedState): void {
    for (const name of this.supervisor_.names()) {
      const saved = p.backends[name];
      if (saved) this.supervisor_.owner(name).restore({ failures: saved.failures, fatal: saved.fatal, process: parseLaunchRecord(saved.process) });
    }
    // Drains outlive a daemon restart (remote backends too); one of a backend no longer configured is dropped.
    this.drains.restore(p.drained, (name) => this.config.backends.some((b) => b.name === name));
  }

  private persist(): void {
    if (!this.store) return;
    const backends: PersistedState["backends"] = Object.fromEntries(this.supervisor_.names().map((n) => [n, this.supervisor_.owner(n).persisted()]));
    void this.store.save({ version: 1, backends, history: [...this.history.all()], ...(this.drains.persisted() ? { drained: this.drains.persisted() } : {}) });
  }

  /** The narrow port the control socket uses. */
  private controlApi(): ControlApi {
    return {
      status: () => this.status(),
      reload: () => this.reload(),
      drill: (spec) => this.drill(spec),
      gameday: (spec) => this.gameday(spec),
      drillStop: () => this.stopDrill(),
      check: (name) => void this.supervisor_.owner(name),
      operate: async (name, op) => {
        await this.supervisor_[op](name);
        return this.supervisor_.owner(name).snapshot();
      },
      drain: (name, on, by) => this.setDrain(name, on, by),
      drainState: (name) => this.setDrain(name, undefined, ""),
      logTail: (name, n) => this.supervisor_.owner(name).logTail(n),
      followOutput: (name, fn) => this.supervisor_.owner(name).onOutput(fn),
      events: (filter) => filterEvents(this.history.all(), filter),
      followEvents: (fn) => this.history.follow(fn),
      // `llmsup gpus clear`: the cleared faults reach health, history and the mails as every clear does (the monitor's fault.cleared).
      clearGpuFaults: (gpu, reason, by) => {
        if (!this.gpu) throw new LlmsupError("LLMSUP_E_GPU_UNKNOWN", "GPU monitoring is off ([gpu] enabled = false): there is no GPU fault to clear", { gpu });
        return this.gpu.gpuWasReset(gpu, "operator", `${reason.trim() || "no reason given"} (${by})`);
      },
    };
  }

  /**
   * Takes a backend out of rotation (or puts it back): new requests skip its
   * tiers at once, requests already on it finish; its process is left alone
   * (remote backends can be drained too). The route's move off it is no
   * outage (no mail); the drain itself is one history entry. The answer
   * says how many requests are still on it (`on` undefined: only that, and
   * the drain as it is — `llmsup drain --wait` polls it).
   */
  private setDrain(name: string, on: boolean | undefined, by: string): Omit<DrainChange, "summary" | "changed"> & { readonly changed?: boolean; readonly inflight: number } {
    if (!this.config.backends.some((b) => b.name === name)) {
      throw new LlmsupError("LLMSUP_E_BACKEND_UNKNOWN", `no backend named "${name}" (backends: ${this.config.backends.map((b) => b.name).join(", ") || "none"})`, { backend: name });
    }
    if (on === undefined) return { backend: name, drained: this.drains.get(name) ?? null, inflight: this.router.inFlight(name) };
    const now = this.clock.now();
    const { summary, ...change } = this.drains.set(name, on, by, now);
    if (summary) {
      this.log.info({ event: on ? "backend.drained" : "backend.undrained", backend: name, by }, summary);
      this.remember({ at: now, kind: on ? "drain" : "undrain", backend: name, summary });
      this.router.model.reassess();
    }
    return { ...change, inflight: this.router.inFlight(name) };
  }

  // ------------------------------------------------------------------ events

  /** Follows every event (drills watch what happens). */
  subscribe(fn: (e: DaemonEvent) => void): () => void {
    return this.events.subscribe(fn);
  }

  /** Runs one drill now; one at a time. */
  drill(spec: DrillSpec): Promise<DrillReport> {
    return this.drills.run(spec);
  }

  /** Runs a game day now (drills/gameday.ts); one drill at a time. */
  gameday(spec: GamedaySpec): Promise<Scorecard> {
    return this.drills.gameday(spec);
  }

  /** Ends the drill or game day running now (`llmsup drill stop`). */
  stopDrill(): DrillStopped {
    return this.drills.stop("stopped by the operator (llmsup drill stop)");
  }

  private emit(e: DaemonEvent): void {
    if ("event" in e && (e.event === "daemon.started" || e.event === "daemon.stopping" || e.event === "daemon.reloaded")) {
      this.log.info(e, e.detail);
      this.remember({ at: e.at, kind: "daemon", summary: e.detail });
    }
    this.events.emit(e);
  }

  private remember(h: HistoryEntry): void {
    this.history.add(h);
    this.persist();
  }

  private startScheduler(c: Config): void {
    this.scheduler = scheduleJobs(c, {
      config: () => this.config,
      alerter: this.alerts?.current,
      clock: this.clock,
      ticks: this.d.cronTicks,
      log: this.log,
      prune: [
        { name: "event history", run: () => this.persist() },
        { name: "emergency cache", run: () => this.cache?.prune() },
      ],
      alertLog: () => this.alerts?.log.all() ?? [],
      history: () => this.history.all(),
      drill: (scenario, durationMs) => this.drill({ scenario, durationMs }),
      gameday: (spec) => this.gameday(spec),
    });
  }

  private onSupervisorEvent(e: SupervisorEvent): void {
    if (e.event === "backend.state") {
      this.feed.process(e.backend, e.to, e.reason, e.at);
      // A fresh process clears what open breakers said about the old one, and may serve another window.
      if (e.to === "ready") {
        this.router?.resetBackend(e.backend);
        this.discoverWindows(e.backend, true);
      } else if (e.to === "exited") this.windows.forget(e.backend);
    }
    const h = historyOfSupervisor(e);
    if (h) this.remember(h);
    else this.persist();
    this.alerts?.send(e);
    this.emit(e);
  }

  /** Reads the context windows of a backend's routed models (managed ones when ready; remote ones when reachable). */
  private discoverWindows(name: string, managed: boolean): void {
    const b = this.config.backends.find((x) => x.name === name);
    if (!b || b.managed !== managed) return;
    const models = [...new Set(this.config.routes.flatMap((r) => r.tiers.filter((t) => t.backend === name).map((t) => t.model)))];
    if (models.length > 0) void this.windows.refresh(b, models);
  }

  private onRouterEvent(e: RouterEvent): void {
    // A deliberate stop takes every route off its tiers on purpose: no failover or outage to record (nor to mail).
    const h = this.stopping ? undefined : historyOfRouter(e);
    if (h) this.remember(h);
    this.alerts?.send(e);
    this.emit(e);
  }

  private onGpuFault(f: GpuFault, raised: boolean): void {
    const at = this.clock.now();
    this.feed.gpuFault(f, raised);
    this.remember(historyOfGpuFault(f, raised, at));
    this.applyGpuHealth();
    this.alerts?.send({ event: raised ? "gpu.fault.raised" : "gpu.fault.cleared", fault: f, at });
    this.emit({ event: raised ? "gpu.fault.raised" : "gpu.fault.cleared", fault: f, at });
    this.remediation?.fault(f, raised);
  }

  private onRemediation(e: RemediationEvent): void {
    this.remember(historyOfRemediation(e));
    this.alerts?.send(e);
    this.emit(e);
  }

  private applyGpuHealth(): void {
    const wasDown = new Set(this.config.backends.filter((b) => this.health.get(b.name).state === "down").map((b) => b.name));
    this.feed.applyGpu(this.config, new Map((this.gpu?.snapshot().gpus ?? []).map((g) => [g.index, g.busId])));
    // A backend its GPU took down: what is in flight on it moves to the next tier now, rather than stalling or breaking there.
    for (const b of this.config.backends) {
      const h = this.health.get(b.name);
      if (h.state === "down" && !wasDown.has(b.name)) this.router?.evacuate(b.name, h.reason);
    }
  }

  // ------------------------------------------------------------------ status

  status(): DaemonStatus {
    const now = this.clock.now();
    return buildStatus({
      now,
      startedAt: this.startedAt,
      config: this.config,
      routes: this.router.snapshot().routes,
      served: { minute: this.router.served.sums(now, 60), fiveMinutes: this.router.served.sums(now, 300) },
      backends: this.supervisor_.snapshot(),
      health: (name) => this.health.get(name),
      gpu: this.gpu?.snapshot(),
      host: this.host?.snapshot(),
      alerts: this.alerts?.current?.status(),
      cache: this.cache?.status(),
      listening: this.listening,
      history: this.history.all(),
      drained: (name) => this.drains.get(name),
      held: (name) => this.supervisor_.heldFor(name),
      remediation: this.remediation?.snapshot(),
      inflight: (name) => this.router.inFlight(name),
      reload: reloadStatus(this.startConfig, this.config, this.reloadRefused),
    });
  }

  // ------------------------------------------------------------------ reload

  /**
   * Re-reads the configuration and applies what can be applied while running;
   * an invalid one is refused, the running one kept, and the refusal is
   * recorded (history, a mail, status) until a good reload or a restart.
   */
  async reload(): Promise<{ ok: true; changes: ReloadChanges; notes: string[]; settings: string[] } | { ok: false; error: string; problems?: unknown }> {
    let next: Config;
    let keys: Buffer[] | undefined;
    try {
      next = await this.loadConfig();
      // API keys are read again (a rotated file takes effect); one that cannot be read refuses the reload like a bad file.
      keys = await this.routerServer?.keysFor(next);
    } catch (e) {
      const r = (this.reloadRefused = refusalOf(e, this.clock.now()));
      const problems = (e as LlmsupError).details?.problems;
      this.log.error({ event: "daemon.reload.rejected", code: (e as LlmsupError).code, problems }, `reload refused, keeping the running configuration: ${(e as Error).message}`);
      this.remember({ at: r.at, kind: "reload_refused", summary: `reload refused, the running configuration is kept: ${r.error}${r.problems.length ? ` (${r.problems.join("; ")})` : ""}` });
      this.alerts?.send({ event: "daemon.reload_refused", at: r.at, error: r.error, problems: r.problems, config: this.d.configPath });
      return { ok: false, error: r.error, problems };
    }
    const prev = this.config;
    const settings = settingChanges(prev, next);
    this.config = next;
    this.reloadRefused = null;
    if (this.d.followConfigLogLevel) this.log.level = next.daemon.log_level;
    this.drains.keep((name) => next.backends.some((b) => b.name === name));
    this.health.reconfigure(next);
    this.gpu?.setThresholds(next.gpu);
    this.remediation?.reconfigure();
    this.host?.reconfigure(next.host);
    const newAlerter = (await this.alerts?.reconfigure(prev, next)) ?? false;
    if (newAlerter || JSON.stringify(prev.schedule) !== JSON.stringify(next.schedule)) {
      await this.scheduler?.stop(1_000).catch(() => undefined);
      this.startScheduler(next);
    }
    this.openCache(next);
    const changes = await this.supervisor_.apply(next);
    const oldRouter = this.router;
    this.router = this.makeRouter(next, oldRouter);
    this.routerServer?.setRouter(this.router, next, keys);
    // Routes and tiers that remain keep their state across the reload; the alert policy learns where each route stands now.
    this.alerts?.reconcile(liveAfterReload(next, this.router.snapshot().routes));
    void oldRouter.close();
    this.remote?.stop();
    this.remote = new RemoteProber(next, this.health, this.clock, this.log);
    this.remote.start();
    this.applyGpuHealth();
    this.emit({ event: "daemon.reloaded", at: this.clock.now(), detail: reloadSummary(changes, settings) });
    return { ok: true, changes, notes: settings.filter((c) => !c.applied).map(changeLine), settings: settings.map(changeLine) };
  }

  // ------------------------------------------------------------------ stop

  /**
   * One deadline for everything: stop accepting, drain, stop backends (or,
   * for a restart with live_restore, leave them running for the next
   * llmsup to adopt), flush state.
   */
  stop(reason = "asked to stop", options: { readonly restart?: boolean } = {}): Promise<void> {
    this.stopping ??= this.doStop(reason, options.restart === true && this.config?.daemon.live_restore === true);
    return this.stopping;
  }

  private async doStop(reason: string, leaveBackends: boolean): Promise<void> {
    this.notifier?.notify({ STOPPING: 1, STATUS: `stopping: ${reason}` });
    if (this.config) this.emit({ event: "daemon.stopping", at: this.clock.now(), detail: `llmsup stopping: ${reason}` });
    this.alerts?.send({ event: "daemon.stopping", at: this.clock.now(), reason });
    this.alerts?.hush();
    const steps: ShutdownStep[] = [
      { name: "drills", run: () => void this.drills.stop("llmsup is stopping", true) },
      { name: "scheduler", capMs: 1_000, run: (ms) => this.scheduler?.stop(ms) },
      { name: "heartbeat", run: () => this.heartbeat?.stop() },
      {
        name: "in-flight requests",
        share: 0.5,
        run: async (ms) => {
          if (this.routerServer && !(await this.routerServer.drain(ms))) this.log.warn({ event: "daemon.drain_timeout" }, "in-flight requests did not finish in time; closing them");
        },
      },
      { name: "router listeners", run: () => this.routerServer?.close() },
      { name: "remote probes", run: () => this.remote?.stop() },
      { name: "GPU remediation", run: () => this.remediation?.close() },
      { name: "backends", run: () => (leaveBackends ? this.supervisor_?.detachAll() : this.supervisor_?.stopAll(reason)) },
      { name: "GPU monitor", run: () => this.gpu?.stop() },
      { name: "host monitor", run: () => this.host?.stop() },
      { name: "control socket", run: () => this.control?.close() },
      { name: "router", run: () => this.router?.close() },
      { name: "emergency cache", run: () => this.cache?.close() },
      { name: "state", capMs: 2_000, run: () => (this.persist(), this.store?.flush()) },
      { name: "alert mails", capMs: 5_000, run: (ms) => this.alerts?.close(ms) },
      { name: "systemd notifier", run: () => this.notifier?.close() },
      { name: "state_dir lock", run: () => this.stateLock?.release() },
    ];
    await runShutdown(this.clock, this.config?.daemon.shutdown_timeout ?? 0, steps, (p) =>
      p.problem === "overran"
        ? this.log.warn({ event: "daemon.stop.overran", step: p.step, budget_ms: Math.round(p.budgetMs) }, `stopping: ${p.step} did not finish in time; going on`)
        : this.log.warn({ event: "daemon.stop.step_failed", step: p.step, err: p.error }, `stopping: ${p.step} failed: ${p.error}`),
    );
    this.log.info({ event: "daemon.stopped" }, "llmsup stopped");
  }
}
