/**
 * The composition root: the only place where real dependencies are built and
 * wired. Supervisor states and GPU faults feed the health registry, which the
 * router reads; everything notable lands in the event history, the log and
 * (through the alert hook) the operator's inbox.
 */
import { hostname as osHostname } from "node:os";
import { loadConfigFile } from "../config/load.ts";
import type { Config } from "../config/types.ts";
import { isLlmsupError, LlmsupError } from "../errors/error.ts";
import { GpuMonitor } from "../gpu/monitor.ts";
import type { GpuFault } from "../gpu/types.ts";
import { HealthRegistry, type Health } from "../health/registry.ts";
import { RemoteProber } from "../health/remote.ts";
import { HostMonitor } from "../host/monitor.ts";
import { createLogger, type Logger } from "../log/logger.ts";
import { realClock, type Clock } from "../platform/clock.ts";
import { RouterMetrics } from "../router/metrics.ts";
import { Router, type CacheHook, type RouterEvent } from "../router/router.ts";
import { RouterServer, type Listening } from "../router/server.ts";
import { isServing, type StateEvent, type SupervisorEvent } from "../supervisor/states.ts";
import { Supervisor, type ReloadChanges } from "../supervisor/supervisor.ts";
import { ControlServer, type ControlApi } from "../control/server.ts";
import { buildStatus, type DaemonStatus } from "./status.ts";
import { AlertLog, EventHub, History } from "./event-hub.ts";
import { changeLine, reloadSummary, settingChanges } from "./reload-plan.ts";
import { filterEvents } from "../control/event-filter.ts";
import { createNotifier, watchdogInterval, type Notifier } from "./notify.ts";
import { StateLock } from "./state-lock.ts";
import { StateStore, type HistoryEntry, type PersistedState } from "./state-store.ts";
import { packageVersion } from "../platform/version.ts";
import { Alerter } from "../alerts/alerter.ts";
import type { StatusSnapshot } from "../alerts/snapshot.ts";
import type { Scheduler } from "../schedule/scheduler.ts";
import { scheduleJobs } from "./jobs.ts";
import { AlertBridge, liveAfterReload, liveAtStart, type BridgeInput } from "./alert-bridge.ts";
import { historyOfGpuFault, historyOfRouter, historyOfSupervisor } from "./history.ts";
import { gpuHealthOf } from "./gpu-health.ts";
import { EmergencyCache } from "../cache/cache.ts";
import { ContextWindows } from "../health/context.ts";
import { plural } from "../alerts/text.ts";
import { runDrill, type DrillSpec } from "../drills/drill.ts";
import type { DrillReport } from "../drills/report.ts";
import { Drains, type DrainChange } from "./drains.ts";

export interface DaemonOptions {
  readonly configPath: string;
  readonly logLevel?: string;
  readonly logger?: Logger;
  readonly env?: NodeJS.ProcessEnv;
  readonly clock?: Clock;
  /** Extra consumers of every event (alerts). */
  readonly onEvent?: (e: DaemonEvent) => void;
  readonly cache?: CacheHook;
}

export type DaemonEvent = SupervisorEvent | RouterEvent | { readonly event: "gpu.fault.raised" | "gpu.fault.cleared"; readonly fault: GpuFault; readonly at: number } | { readonly event: "daemon.started" | "daemon.stopping" | "daemon.reloaded"; readonly at: number; readonly detail: string };

/** Events kept in state_dir for `llmsup events` and status (the newest; a few weeks of a busy box). */
const HISTORY_MAX = 2_000;

/** Waits for `p`, at most `ms`; never keeps the process alive after `p` settles. */
async function withDeadline(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

export class Daemon {
  config!: Config;
  readonly log: Logger;
  readonly clock: Clock;
  readonly startedAt: number;
  health!: HealthRegistry;
  supervisor!: Supervisor;
  router!: Router;
  routerServer!: RouterServer;
  control!: ControlServer;
  gpu?: GpuMonitor;
  host?: HostMonitor;
  readonly metrics = new RouterMetrics({ defaultMetrics: true });
  /** The emergency response cache; opened once a route has `cache = true`. */
  cache?: EmergencyCache;
  listening: Listening = {};
  private remote?: RemoteProber;
  private store!: StateStore;
  private history = new History([], HISTORY_MAX);
  private notifier!: Notifier;
  private watchdog?: NodeJS.Timeout;
  private statusTimer?: NodeJS.Timeout;
  private stopping?: Promise<void>;
  private stateLock?: StateLock;
  private readonly options: DaemonOptions;
  private gpuFaults = new Map<string, GpuFault>();
  alerter?: Alerter;
  private bridge!: AlertBridge;
  /** Alert events of the last day, for the digest. */
  private readonly alertLog = new AlertLog();
  scheduler?: Scheduler;
  private readonly events: EventHub<DaemonEvent>;
  /** Context windows read from the backends (the router skips only tiers known to be too small). */
  readonly windows = new ContextWindows();
  private drilling = false;
  /** Backends an operator took out of rotation (`llmsup drain`): kept here, outside the router, so a reload keeps them; persisted. */
  private readonly drains = new Drains();
  /** The configuration llmsup started with: settings read once at start differ from it until a restart. */
  private startConfig?: Config;
  /** The last refused reload, until a good reload or a restart. */
  private reloadRefused: { readonly at: number; readonly error: string; readonly problems: readonly string[] } | null = null;

  constructor(options: DaemonOptions) {
    this.options = options;
    this.clock = options.clock ?? realClock;
    this.startedAt = this.clock.now();
    this.log = options.logger ?? createLogger({ level: (options.logLevel as never) ?? "info" });
    this.events = new EventHub<DaemonEvent>(this.log, options.onEvent);
  }

  // ------------------------------------------------------------------ start

  async start(): Promise<void> {
    this.config = await loadConfigFile(this.options.configPath, { hostname: osHostname() });
    if (this.options.logLevel === undefined && !this.options.logger) this.log.level = this.config.daemon.log_level;
    const c = this.config;
    this.notifier = createNotifier(this.options.env ?? process.env, this.log);
    // One daemon per state_dir: before the state is read, a backend started or a socket bound.
    this.stateLock = await StateLock.acquire({ stateDir: c.daemon.state_dir, configPath: this.options.configPath, logger: this.log, now: this.clock.now() });
    this.store = new StateStore(c.daemon.state_dir, this.log);
    const persisted = await this.store.load();
    this.history = new History(persisted.history, HISTORY_MAX);

    this.startConfig = c;
    this.bridge = new AlertBridge(c);
    this.alerter = await this.openAlerter(c);

    this.health = new HealthRegistry(c, this.clock);
    this.health.onChange((name, h, prev) => {
      // A remote backend answering again may have changed its window (a new model, a new max_model_len).
      if (h.state !== "down" && prev.state === "down") this.discoverWindows(name, false);
      this.metrics.health.set({ backend: name }, h.state === "healthy" ? 0 : h.state === "degraded" ? 1 : 2);
      if (h.state !== prev.state) this.log.info({ event: "backend.health", backend: name, from: prev.state, to: h.state, reason: h.reason }, `${name} health: ${prev.state} → ${h.state} (${h.reason})`);
    });

    if (c.gpu.enabled) {
      this.gpu = new GpuMonitor({ config: c.gpu, logger: this.log.child({ component: "gpu" }) });
      this.gpu.on("fault.raised", (f) => this.onGpuFault(f, true));
      this.gpu.on("fault.cleared", (f) => this.onGpuFault(f, false));
    }
    this.host = new HostMonitor({ config: c.host, dirs: [c.daemon.state_dir, c.daemon.log_dir], logger: this.log.child({ component: "host" }) });
    this.host.on("fault.raised", (f) => {
      this.remember({ at: this.clock.now(), kind: "host_fault", summary: f.reason });
      this.alert({ event: "host.fault.raised", fault: f, at: this.clock.now(), freeBytes: this.freeBytes(f.dir), minFreeBytes: c.host.min_free_disk });
    });
    this.host.on("fault.cleared", (f) => this.alert({ event: "host.fault.cleared", fault: f, at: this.clock.now(), freeBytes: this.freeBytes(f.dir), minFreeBytes: c.host.min_free_disk }));

    this.supervisor = this.makeSupervisor(c);
    this.restorePersisted(persisted);
    // The alert state from the last run meets the live one before anything can report: stale outages go, carried-over fatals stay.
    this.alerter?.reconcile(liveAtStart(c, this.supervisor.snapshot()));
    this.openCache(c);
    this.router = this.makeRouter(c);
    this.routerServer = new RouterServer(c, this.router, this.log, this.metrics);
    this.listening = await this.routerServer.listen();
    this.control = new ControlServer(this.controlApi(), this.log);
    await this.control.listen(c.control.socket, c.control.mode, c.control.group);
    this.remote = new RemoteProber(c, this.health, this.clock, this.log);
    this.remote.start();
    for (const b of c.backends) if (!b.managed) this.discoverWindows(b.name, false);
    await this.gpu?.start().catch((e: Error) => this.log.warn({ event: "gpu.monitor.failed", err: e.message }, `GPU monitor could not start: ${e.message}`));
    await this.host.start().catch((e: Error) => this.log.warn({ event: "host.monitor.failed", err: e.message }, `host monitor could not start: ${e.message}`));

    this.emit({ event: "daemon.started", at: this.clock.now(), detail: `llmsup ${packageVersion()} with ${plural(c.backends.length, "backend")}, ${plural(c.routes.length, "route")}` });
    this.alert({ event: "daemon.started", at: this.clock.now(), version: packageVersion(), pid: process.pid, config: c.source });
    this.startScheduler(c);
    this.notifier.notify({ READY: 1, STATUS: "routing; starting backends", MAINPID: process.pid });
    const wd = watchdogInterval(this.options.env ?? process.env);
    if (wd && this.notifier.active) {
      // Pinged from the event loop itself: a blocked loop stops the pings and systemd notices.
      this.watchdog = setInterval(() => this.notifier.notify({ WATCHDOG: 1 }), wd);
      this.watchdog.unref();
    }
    if (this.notifier.active) {
      this.statusTimer = setInterval(() => this.notifier.notify({ STATUS: this.statusLine() }), 10_000);
      this.statusTimer.unref();
    }
    void this.supervisor.startAll(this.priorityOrder(c)).catch((e: Error) => this.log.error({ event: "daemon.start_backends_failed", err: e.message }, "starting backends failed"));
  }

  private makeSupervisor(c: Config): Supervisor {
    return new Supervisor(c, {
      logger: this.log.child({ component: "supervisor" }),
      clock: this.clock,
      vram: this.gpu?.vramProbe(),
      onEvent: (e) => this.onSupervisorEvent(e),
      resourceSampleMs: 5_000,
    });
  }

  private makeRouter(c: Config, previous?: Router): Router {
    return new Router(c, {
      health: this.health,
      clock: this.clock,
      logger: this.log,
      metrics: this.metrics,
      cache: this.options.cache ?? this.cache,
      onEvent: (e) => this.onRouterEvent(e),
      onSuccess: (b) => this.supervisor.noteRequestSuccess(b),
      contextWindow: (b, m) => this.windows.get(b, m),
      drained: (b) => this.drains.get(b),
    }, previous);
  }

  /** The emergency cache in the state directory, when a route uses it (else no file is made); new bounds on reload. */
  private openCache(c: Config): void {
    if (this.options.cache) return;
    if (this.cache) {
      this.cache.reconfigure(c.cache);
      return;
    }
    if (!c.routes.some((r) => r.cache)) return;
    this.cache = EmergencyCache.open({ config: c.cache, dir: c.daemon.state_dir, logger: this.log.child({ component: "cache" }), clock: this.clock, metrics: this.metrics });
    void this.cache.prune();
  }

  /** Backends in the order routes prefer them. */
  private priorityOrder(c: Config): string[] {
    const out: string[] = [];
    for (const r of c.routes) for (const t of r.tiers) if (!out.includes(t.backend)) out.push(t.backend);
    return out;
  }

  private restorePersisted(p: PersistedState): void {
    for (const name of this.supervisor.names()) {
      const saved = p.backends[name];
      if (saved) this.supervisor.owner(name).restore(saved);
    }
    // Drains outlive a daemon restart (remote backends too); one of a backend no longer configured is dropped.
    this.drains.restore(p.drained, (name) => this.config.backends.some((b) => b.name === name));
  }

  private persist(): void {
    const backends: PersistedState["backends"] = Object.fromEntries(this.supervisor.names().map((n) => [n, this.supervisor.owner(n).persisted()]));
    void this.store.save({ version: 1, backends, history: [...this.history.all()], ...(this.drains.persisted() ? { drained: this.drains.persisted() } : {}) });
  }

  /** The narrow port the control socket uses. */
  private controlApi(): ControlApi {
    return {
      status: () => this.status(),
      reload: () => this.reload(),
      drill: (spec) => this.drill(spec),
      check: (name) => void this.supervisor.owner(name),
      operate: async (name, op) => {
        await this.supervisor[op](name);
        return this.supervisor.owner(name).snapshot();
      },
      drain: (name, on, by) => this.setDrain(name, on, by),
      logTail: (name, n) => this.supervisor.owner(name).logTail(n),
      followOutput: (name, fn) => this.supervisor.owner(name).onOutput(fn),
      events: (filter) => filterEvents(this.history.all(), filter),
      followEvents: (fn) => this.history.follow(fn),
    };
  }

  /**
   * Takes a backend out of rotation (or puts it back): new requests skip its
   * tiers at once, requests already on it finish; its process is left alone
   * (remote backends can be drained too). The route's move off it is no
   * outage (no mail); the drain itself is one history entry.
   */
  private setDrain(name: string, on: boolean, by: string): Omit<DrainChange, "summary"> {
    if (!this.config.backends.some((b) => b.name === name)) {
      throw new LlmsupError("LLMSUP_E_BACKEND_UNKNOWN", `no backend named "${name}" (backends: ${this.config.backends.map((b) => b.name).join(", ") || "none"})`, { backend: name });
    }
    const now = this.clock.now();
    const { summary, ...change } = this.drains.set(name, on, by, now);
    if (!summary) return change;
    this.log.info({ event: on ? "backend.drained" : "backend.undrained", backend: name, by }, summary);
    this.remember({ at: now, kind: on ? "drain" : "undrain", backend: name, summary });
    this.router.model.reassess();
    return change;
  }


  /** Opens the alerter for `c`; undefined (and said loudly) when it cannot be. */
  private async openAlerter(c: Config): Promise<Alerter | undefined> {
    try {
      return await Alerter.open({
        config: c.alerts,
        hostname: c.daemon.hostname,
        stateDir: c.daemon.state_dir,
        logger: this.log.child({ component: "alerts" }),
        clock: this.clock,
        env: this.options.env,
        snapshot: () => this.alertSnapshot(),
      });
    } catch (e) {
      // Alerts that cannot be sent must not keep the API down: say so loudly and go on.
      this.log.error({ event: "alerts.unavailable", code: (e as LlmsupError).code, err: (e as Error).message }, `e-mail alerts are off: ${(e as Error).message}`);
      return undefined;
    }
  }

  // ------------------------------------------------------------------ events

  /** Follows every event (drills watch what happens). */
  subscribe(fn: (e: DaemonEvent) => void): () => void {
    return this.events.subscribe(fn);
  }

  /** Runs one drill now; one at a time. */
  async drill(spec: DrillSpec): Promise<DrillReport> {
    if (this.drilling) throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", "another drill is running", {});
    if (!this.listening.socket) throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", "drills send their requests through router.socket, which is off", {});
    this.drilling = true;
    try {
      this.log.info({ event: "drill.started", scenario: spec.scenario, route: spec.route, duration_ms: spec.durationMs }, `drill ${spec.scenario} started`);
      const report = await runDrill(
        {
          config: this.config,
          socket: this.listening.socket,
          health: this.health,
          supervisor: this.supervisor,
          router: () => this.router,
          subscribe: (fn) => this.subscribe(fn),
          alertsSince: (at) => this.alertLog.since(at),
          delivered: () => (this.alerter?.status().enabled ? this.alerter.status().delivered : undefined),
          clock: this.clock,
        },
        spec,
      );
      this.log.info({ event: "drill.finished", ...report, timeline: undefined }, `drill ${spec.scenario}: ${report.verdict}`);
      this.remember({ at: this.clock.now(), kind: "drill", route: report.route, summary: `drill ${report.scenario} on ${report.route}: ${report.verdict}${report.problems.length ? ` (${report.problems.join("; ")})` : ""}` });
      return report;
    } finally {
      this.drilling = false;
    }
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

  private alert(e: BridgeInput): void {
    // A deliberate stop takes every route down on purpose: that is not news for the inbox.
    if (this.stopping && e.event !== "daemon.stopping") return;
    for (const a of this.bridge.translate(e)) {
      this.alertLog.add(a, this.clock.now());
      this.alerter?.notify(a);
    }
  }

  private freeBytes(dir: string | undefined): number | undefined {
    return this.host?.snapshot().reading?.disks.find((d) => d.dir === dir)?.freeBytes;
  }

  /** What every alert mail shows of the current state. */
  private alertSnapshot(): StatusSnapshot {
    const s = this.status();
    return {
      routes: s.router.routes.map((r) => ({ model: r.model, tier: r.serving_tier >= 0 ? r.serving_tier : null, backend: r.serving_backend ?? undefined })),
      backends: s.backends.map((b) => ({ name: b.name, state: `${b.state} / ${b.health}`, reason: b.health === "healthy" ? undefined : b.health_reason, forMs: b.since ? this.clock.now() - Date.parse(b.since) : undefined })),
      gpus: s.gpus?.gpus.map((g) => ({ index: g.index, temperatureC: g.temperature_c ?? undefined, memoryUsedMib: g.memory_used_mib ?? undefined, memoryTotalMib: g.memory_total_mib ?? undefined, faults: g.faults.map((f) => f.reason) })),
    };
  }

  private startScheduler(c: Config): void {
    this.scheduler = scheduleJobs(c, {
      config: () => this.config,
      alerter: this.alerter,
      clock: this.clock,
      log: this.log,
      prune: [
        { name: "event history", run: () => this.persist() },
        { name: "emergency cache", run: () => this.cache?.prune() },
      ],
      alertLog: () => this.alertLog.all(),
      history: () => this.history.all(),
      drill: (scenario, durationMs) => this.drill({ scenario, durationMs }),
    });
  }

  private onSupervisorEvent(e: SupervisorEvent): void {
    if (e.event === "backend.state") this.applyProcessHealth(e);
    const h = historyOfSupervisor(e);
    if (h) this.remember(h);
    else this.persist();
    this.alert(e);
    this.emit(e);
  }

  /** Reads the context windows of a backend's routed models (managed ones when ready; remote ones when reachable). */
  private discoverWindows(name: string, managed: boolean): void {
    const b = this.config.backends.find((x) => x.name === name);
    if (!b || b.managed !== managed) return;
    const models = [...new Set(this.config.routes.flatMap((r) => r.tiers.filter((t) => t.backend === name).map((t) => t.model)))];
    if (models.length > 0) void this.windows.refresh(b, models);
  }

  private applyProcessHealth(e: StateEvent): void {
    const state: Health = isServing(e.to) ? (e.to === "degraded" ? "degraded" : "healthy") : "down";
    // Whether it is on its way back is known before the health change is announced (routes read both).
    this.health.setRecovering(e.backend, e.to === "starting" || e.to === "backoff" || e.to === "exited" || e.to === "stopping");
    this.health.set(e.backend, "process", state, state === "healthy" ? "" : `process ${e.to}: ${e.reason}`);
    // A fresh process clears what passive failures and open breakers said about the old one.
    if (e.to === "ready") {
      this.health.set(e.backend, "passive", "healthy", "");
      this.router?.resetBackend(e.backend);
      this.discoverWindows(e.backend, true);
    } else if (e.to === "exited") this.windows.forget(e.backend);
  }

  private onRouterEvent(e: RouterEvent): void {
    const h = historyOfRouter(e);
    if (h) this.remember(h);
    this.alert(e);
    this.emit(e);
  }

  private onGpuFault(f: GpuFault, raised: boolean): void {
    if (raised) this.gpuFaults.set(f.id, f);
    else this.gpuFaults.delete(f.id);
    const at = this.clock.now();
    this.remember(historyOfGpuFault(f, raised, at));
    this.applyGpuHealth();
    this.alert({ event: raised ? "gpu.fault.raised" : "gpu.fault.cleared", fault: f, at });
    this.emit({ event: raised ? "gpu.fault.raised" : "gpu.fault.cleared", fault: f, at });
  }

  /** Every backend on a faulty GPU takes the worst of its GPUs' faults. */
  private applyGpuHealth(): void {
    const busIds = new Map((this.gpu?.snapshot().gpus ?? []).map((g) => [g.index, g.busId]));
    for (const b of this.config.backends) {
      if (b.gpus.length === 0) continue;
      const h = gpuHealthOf(b, this.gpuFaults.values(), busIds);
      this.health.set(b.name, "gpu", h.state, h.reason);
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
      backends: this.supervisor.snapshot(),
      health: (name) => this.health.get(name),
      gpu: this.gpu?.snapshot(),
      host: this.host?.snapshot(),
      alerts: this.alerter?.status(),
      cache: this.cache?.status(),
      listening: this.listening,
      history: this.history.all(),
      drained: (name) => this.drains.get(name),
      reload: this.reloadState(),
    });
  }

  statusLine(): string {
    const s = this.status();
    return s.summary.text;
  }

  // ------------------------------------------------------------------ reload

  /** What status says about reloads: a refused one, settings waiting for a restart of llmsup. */
  private reloadState(): { readonly needs_restart: readonly string[]; readonly refused: { readonly time: string; readonly error: string; readonly problems: readonly string[] } | null } {
    const needs = this.startConfig && this.startConfig !== this.config ? settingChanges(this.startConfig, this.config).filter((c) => !c.applied).map((c) => c.key) : [];
    const r = this.reloadRefused;
    return { needs_restart: needs, refused: r ? { time: new Date(r.at).toISOString(), error: r.error, problems: r.problems } : null };
  }

  /**
   * Re-reads the configuration and applies what can be applied while running;
   * an invalid one is refused, the running one kept, and the refusal is
   * recorded (history, a mail, status) until a good reload or a restart.
   */
  async reload(): Promise<{ ok: true; changes: ReloadChanges; notes: string[]; settings: string[] } | { ok: false; error: string; problems?: unknown }> {
    let next: Config;
    try {
      next = await loadConfigFile(this.options.configPath, { hostname: osHostname() });
    } catch (e) {
      const err = e as LlmsupError;
      const problems = isLlmsupError(e) ? e.details.problems : undefined;
      const at = this.clock.now();
      const error = `${err.code ?? "error"}: ${err.message}`;
      const lines = Array.isArray(problems) ? problems.map((p: { path?: string; message?: string }) => (p.path ? `${p.path}: ${p.message ?? ""}` : String(p.message ?? ""))) : [];
      this.reloadRefused = { at, error, problems: lines };
      this.log.error({ event: "daemon.reload.rejected", code: err.code, problems }, `reload refused, keeping the running configuration: ${err.message}`);
      this.remember({ at, kind: "reload_refused", summary: `reload refused, the running configuration is kept: ${error}${lines.length ? ` (${lines.join("; ")})` : ""}` });
      this.alert({ event: "daemon.reload_refused", at, error, problems: lines, config: this.options.configPath });
      return { ok: false, error, problems };
    }
    const prev = this.config;
    const settings = settingChanges(prev, next);
    const changed = (k: keyof Config) => JSON.stringify(prev[k]) !== JSON.stringify(next[k]);
    this.config = next;
    this.reloadRefused = null;
    if (this.options.logLevel === undefined && !this.options.logger) this.log.level = next.daemon.log_level;
    this.drains.keep((name) => next.backends.some((b) => b.name === name));
    this.bridge.reconfigure(next);
    this.health.reconfigure(next);
    this.gpu?.setThresholds(next.gpu);
    if (changed("alerts") || prev.daemon.hostname !== next.daemon.hostname) {
      // A new alerter over the same state_dir/alerts: the outbox and the policy state carry over.
      const old = this.alerter;
      if (old) {
        await withDeadline(old.flush(5_000), 5_000);
        await old.close().catch(() => undefined);
      }
      this.alerter = await this.openAlerter(next);
    }
    if (changed("alerts") || changed("schedule") || prev.daemon.hostname !== next.daemon.hostname) {
      await this.scheduler?.stop(1_000).catch(() => undefined);
      this.startScheduler(next);
    }
    this.openCache(next);
    const changes = await this.supervisor.apply(next);
    const oldRouter = this.router;
    this.router = this.makeRouter(next, oldRouter);
    this.routerServer.setRouter(this.router, next);
    // Routes and tiers that remain keep their state across the reload; the alert policy learns where each route stands now.
    this.alerter?.reconcile(liveAfterReload(next, this.router.snapshot().routes));
    void oldRouter.close();
    this.remote?.stop();
    this.remote = new RemoteProber(next, this.health, this.clock, this.log);
    this.remote.start();
    this.applyGpuHealth();
    const detail = reloadSummary(changes, settings);
    this.emit({ event: "daemon.reloaded", at: this.clock.now(), detail });
    const lines = settings.map(changeLine);
    return { ok: true, changes, notes: settings.filter((c) => !c.applied).map(changeLine), settings: lines };
  }

  // ------------------------------------------------------------------ stop

  /** One deadline for everything: stop accepting, drain, stop backends, flush state. */
  stop(reason = "asked to stop"): Promise<void> {
    this.stopping ??= this.doStop(reason);
    return this.stopping;
  }

  private async doStop(reason: string): Promise<void> {
    const deadline = Date.now() + this.config.daemon.shutdown_timeout;
    const left = () => Math.max(0, deadline - Date.now());
    this.notifier.notify({ STOPPING: 1, STATUS: `stopping: ${reason}` });
    this.emit({ event: "daemon.stopping", at: this.clock.now(), detail: `llmsup stopping: ${reason}` });
    this.alert({ event: "daemon.stopping", at: this.clock.now(), reason });
    await this.scheduler?.stop(1_000).catch(() => undefined);
    if (this.watchdog) clearInterval(this.watchdog);
    if (this.statusTimer) clearInterval(this.statusTimer);
    const drained = await this.routerServer.drain(Math.min(left() / 2, left()));
    if (!drained) this.log.warn({ event: "daemon.drain_timeout" }, "in-flight requests did not finish in time; closing them");
    await this.routerServer.close();
    this.remote?.stop();
    await withDeadline(this.supervisor.stopAll(reason), left());
    await this.gpu?.stop().catch(() => undefined);
    this.host?.stop();
    await this.control.close();
    await this.router.close();
    this.cache?.close();
    this.persist();
    await withDeadline(this.store.flush(), Math.min(2_000, left()));
    if (this.alerter) {
      await withDeadline(this.alerter.flush(Math.min(5_000, left())), Math.min(5_000, left()));
      await this.alerter.close().catch(() => undefined);
    }
    this.notifier.close();
    await this.stateLock?.release().catch((e: Error) => this.log.warn({ event: "daemon.lock.release_failed", err: e.message }, `could not remove the state_dir lock: ${e.message}`));
    this.log.info({ event: "daemon.stopped" }, "llmsup stopped");
  }
}
