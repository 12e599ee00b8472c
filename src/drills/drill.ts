/**
 * Failover drills: cause a failure on purpose, send a marked request stream
 * through the routing socket meanwhile, and report what a client and an
 * operator would have seen.
 *
 * - primary-outage: the router treats the first tier's backend as down for the
 *   duration; its process is not touched.
 * - backend-crash: SIGKILL of the first tier's process; the supervisor's
 *   restart path brings it back.
 * - backend-hang: SIGSTOP of its process group for the duration, then SIGCONT;
 *   the wedge path (timeouts, probes) must notice.
 *
 * - latency, errors, rate-limit, stream-cut, quality, block: a router fault
 *   (faults.ts) on the first tier's upstream attempts for the duration; no
 *   process is touched, and the router sees the real failure's shape.
 *
 * A drill's failure ends at its duration, when `llmsup drill stop` aborts
 * `spec.signal`, or at daemon shutdown; then it waits for the route to come
 * back.
 *
 * The times come from the route's state transitions (router.route.fallback /
 * .down / .recovered), the same model routing, mails and status read; the
 * marked requests say what clients saw. A process the drill breaks is
 * announced to its owner first (expectDrillExit), so its exit and the restart
 * after it cost no restart budget.
 */
import { randomBytes } from "node:crypto";
import type { AlertEvent } from "../alerts/events.ts";
import type { Config, RouteConfig } from "../config/types.ts";
import { LlmsupError } from "../errors/error.ts";
import type { HealthRegistry } from "../health/registry.ts";
import { sleepOn, within, type Clock, type TimerHandle } from "../platform/clock.ts";
import { signalGroup } from "../platform/procfs.ts";
import type { Router } from "../router/router.ts";
import type { DrillMark } from "../supervisor/owner.ts";
import type { Supervisor } from "../supervisor/supervisor.ts";
import type { DaemonEvent } from "../daemon/daemon.ts";
import { defaultDelayMs, FAULT_DEFAULTS, isFaultKind, type FaultOptions } from "./faults.ts";
import type { FaultInjector } from "./inject.ts";
import { countersDelta, type RouteCounters } from "./counters.ts";
import { verdictOf, type DrillReport, type DrillScenario } from "./report.ts";
import { openTraffic } from "./traffic.ts";

export interface DrillDeps {
  readonly config: Config;
  readonly socket: string;
  readonly health: HealthRegistry;
  readonly supervisor: Supervisor;
  readonly router: () => Router;
  readonly subscribe: (fn: (e: DaemonEvent) => void) => () => void;
  /** Alerts raised since a time. */
  readonly alertsSince: (at: number) => readonly AlertEvent[];
  /** Mails delivered so far; undefined when alerts are off. */
  readonly delivered: () => number | undefined;
  readonly clock: Clock;
  /** Where router faults are put in force (the routers' Upstreams consult it). */
  readonly faults: FaultInjector;
  /** The router's counters for a route now (metrics): what all traffic saw, not only the drill's own requests. */
  readonly counters?: (route: string) => Promise<RouteCounters>;
}

export interface DrillSpec {
  readonly scenario: DrillScenario;
  readonly route?: string;
  readonly durationMs: number;
  /** Time between two requests of the marked stream. */
  readonly intervalMs?: number;
  /** How long to wait for the route's recovered transition after the failure ends. */
  readonly recoveryTimeoutMs?: number;
  /** A router fault's knobs (faults.ts FAULT_DEFAULTS for the rest). */
  readonly fault?: Partial<FaultOptions>;
  /** false: the drill sends no requests of its own and observes real traffic only; default true. */
  readonly traffic?: boolean;
  /** Aborted to end the failure now (`llmsup drill stop`, daemon shutdown). */
  readonly signal?: AbortSignal;
  /** Aborted when nothing more is worth waiting for (the daemon is stopping): the report is made at once. */
  readonly giveUp?: AbortSignal;
}

interface Sent {
  readonly n: number;
  readonly at: number;
  done?: number;
  ok?: boolean;
  tier?: number;
  degraded?: boolean;
}

/** A transition of the drilled route's serving tier, as the router announced it. */
interface RouteTransition {
  readonly kind: "fallback" | "down" | "recovered";
  readonly at: number;
}

const MAX_IN_FLIGHT = 32;
/** After the failure ended with the route still on tier 0: how long a late failover transition may take to show. */
const LATE_FAILOVER_MS = 1_000;
/** A router fault's recovery needs no restart: a probe after it is lifted. */
const FAULT_RECOVERY_MS = 30_000;

export async function runDrill(d: DrillDeps, spec: DrillSpec): Promise<DrillReport> {
  const route = pickRoute(d.config, spec.route);
  const tier0 = route.tiers[0]!;
  const backendName = tier0.backend;
  const backend = d.config.backends.find((b) => b.name === backendName)!;
  // The router faults and primary-outage act inside llmsup; a crash or a hang needs tier 0's process.
  const needsProcess = spec.scenario === "backend-crash" || spec.scenario === "backend-hang";
  const pid = d.supervisor.names().includes(backendName) ? d.supervisor.owner(backendName).snapshot().pid : undefined;
  if (needsProcess && (!backend.managed || pid === undefined)) {
    throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", `drill ${spec.scenario} needs tier 0 of ${route.model} (${backendName}) to be a running managed backend`, {});
  }
  if (d.router().servingTier(route) !== 0) {
    throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", `${route.model} is not on its first tier right now; a drill would blur a real incident`, {});
  }
  if (spec.signal?.aborted) throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", "the drill was stopped before it began", {});
  if (!route.tiers.slice(1).some((t) => d.router().unavailable(t) === undefined)) {
    throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", `no fallback tier of ${route.model} can take requests right now; the drill would be a real outage`, {});
  }

  const id = randomBytes(4).toString("hex");
  // The owner knows before the signal: the exit this drill causes is not a failed start.
  const mark: DrillMark | undefined = needsProcess ? d.supervisor.expectDrillExit(backendName, { id, scenario: spec.scenario }) : undefined;
  try {
    return await drill(d, spec, { id, route, backendName, recoveryTimeoutMs: spec.recoveryTimeoutMs ?? (isFaultKind(spec.scenario) ? FAULT_RECOVERY_MS : Math.max(30_000, backend.process?.startup_timeout ?? 0)), mark });
  } finally {
    mark?.end();
  }
}

async function drill(
  d: DrillDeps,
  spec: DrillSpec,
  o: { id: string; route: RouteConfig; backendName: string; recoveryTimeoutMs: number; mark: DrillMark | undefined },
): Promise<DrillReport> {
  const { id, route, backendName, mark } = o;
  const deliveredBefore = d.delivered();
  const countersBefore = await d.counters?.(route.model);
  const client = openTraffic(d.socket, route, id, MAX_IN_FLIGHT);
  const sent: Sent[] = [];
  const timeline: { at: number; what: string }[] = [];
  const transitions: RouteTransition[] = [];
  const t0 = d.clock.now();
  const note = (what: string, at = d.clock.now()) => timeline.push({ at, what });
  // Set just before the failure is injected: evidence older than this is not about the drill.
  let failAt = Number.POSITIVE_INFINITY;
  let detectedAt: number | undefined;
  // The first mail delivered after this drill's alert was raised.
  let deliveredAt: number | undefined;
  const raisedNow = () => d.alertsSince(failAt).some((a) => (a.kind === "failover" || a.kind === "all_tiers_down") && a.route === route.model);
  const watchDelivery = () => {
    if (deliveredAt === undefined && deliveredBefore !== undefined && (d.delivered() ?? 0) > deliveredBefore && raisedNow()) deliveredAt = d.clock.now();
  };
  const detected = (why: string, at: number) => {
    if (at < failAt) return;
    if (detectedAt === undefined || at < detectedAt) {
      if (detectedAt === undefined) note(`detected: ${why}`, at);
      detectedAt = at;
    }
  };
  let wake: (() => void) | undefined;
  const off = d.subscribe((e) => {
    if (e.event === "backend.state" && e.backend === backendName && e.at >= t0) {
      note(`${backendName}: ${e.from} → ${e.to} (${e.reason})`, e.at);
      if (e.to === "exited" || e.to === "degraded" || e.to === "stopping") detected(`${backendName} ${e.to}`, e.at);
    } else if ((e.event === "router.route.fallback" || e.event === "router.route.recovered" || e.event === "router.route.down") && e.route === route.model) {
      const kind = e.event === "router.route.fallback" ? "fallback" : e.event === "router.route.down" ? "down" : "recovered";
      transitions.push({ kind, at: e.at });
      note(e.event === "router.route.recovered" ? `${route.model} back on tier 0` : e.event === "router.route.down" ? `${route.model}: every tier down` : `${route.model} now on tier ${e.to.index} (${e.to.backend})`, e.at);
      if (kind !== "recovered") detected(`${route.model} left tier 0`, e.at);
      wake?.();
    } else if (e.event === "router.breaker" && e.backend === backendName && e.to !== "closed") {
      detected(`breaker ${e.backend}/${e.model} ${e.from} → ${e.to}`, e.at);
    } else if (e.event === "router.failover" && e.route === route.model && e.from.backend === backendName) {
      detected(`a request failed on tier 0 (${e.reason})`, e.at);
    } else if (e.event === "router.quality" && e.route === route.model && e.backend === backendName) {
      detected(`a model failure on tier 0 (${e.detector})`, e.at);
    }
  });
  const offHealth = d.health.onChange((name, h) => {
    if (name === backendName && h.state !== "healthy") detected(`${backendName} ${h.state}: ${h.reason}`, d.clock.now());
  });

  // The marked request stream (streamed answers for stream-cut: a cut needs a stream).
  const traffic = spec.traffic !== false;
  const asStream = spec.scenario === "stream-cut";
  let n = 0;
  let streaming = true;
  const inFlight = new Set<Promise<void>>();
  const fire = () => {
    if (inFlight.size >= MAX_IN_FLIGHT) return;
    const s: Sent = { n: ++n, at: d.clock.now() };
    sent.push(s);
    const p = client.ask(s.n, asStream).then((r) => {
      s.done = d.clock.now();
      s.ok = r.ok;
      s.tier = r.tier;
      s.degraded = r.degraded;
    });
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };
  const interval = spec.intervalMs ?? 250;
  let pump: TimerHandle | undefined;
  const pumpNext = () => {
    pump = d.clock.setTimeout(() => {
      if (!streaming) return;
      watchDelivery();
      if (traffic) fire();
      pumpNext();
    }, interval);
  };
  pumpNext();
  if (traffic) fire();

  const sleep = (ms: number) => sleepOn(d.clock, ms);
  /** Holds the failure for `ms`, or until the drill is stopped; true when stopped. */
  let stopped = false;
  const hold = async (ms: number): Promise<boolean> => {
    try {
      await sleepOn(d.clock, ms, spec.signal);
    } catch {
      stopped = true;
      note("stopped by the operator (llmsup drill stop) or a daemon stop");
    }
    return stopped;
  };
  const fault = isFaultKind(spec.scenario) ? spec.scenario : undefined;
  /** Until `done()` holds or `until` passes; woken early by each route transition. */
  const waitUntil = async (done: () => boolean, until: number) => {
    while (!done() && d.clock.now() < until && !spec.giveUp?.aborted) {
      watchDelivery();
      const woken = new Promise<void>((r) => (wake = r));
      await within(d.clock, woken, Math.max(1, Math.min(100, until - d.clock.now())));
      wake = undefined;
    }
  };
  const failover = () => transitions.find((t) => t.kind !== "recovered" && t.at >= failAt);
  // The failure's end: the hold ends for an outage or a hang; a crash is over the moment it happens, and the restart is part of the recovery.
  let endAt = Number.POSITIVE_INFINITY;
  const recovered = () => {
    const f = failover();
    if (!f) return undefined;
    // A router fault can let the route back on tier 0 while it is still in force (a probe it does not hit): the route is back once the fault is lifted and its last transition is a recovery.
    if (fault) {
      const last = transitions.at(-1);
      return Number.isFinite(endAt) && last?.kind === "recovered" && last.at >= f.at ? last : undefined;
    }
    return transitions.find((t) => t.kind === "recovered" && t.at >= Math.max(endAt, f.at));
  };
  failAt = d.clock.now();
  note(`failure injected: ${spec.scenario} on ${backendName}${mark ? ` (pid ${mark.pid}, generation ${mark.generation})` : ""}`, failAt);
  let continued = spec.scenario !== "backend-hang";
  try {
    if (fault) {
      d.faults.start({ ...FAULT_DEFAULTS, ...spec.fault, delayMs: spec.fault?.delayMs ?? defaultDelayMs(route.tiers[0]!.ttft_timeout), id, kind: fault, backend: backendName, model: route.tiers[0]!.model, until: failAt + spec.durationMs });
      await hold(spec.durationMs);
      endAt = d.clock.now();
      d.faults.end(stopped ? "the drill was stopped" : "its duration is over");
      note(`failure ended: ${fault} lifted (${d.faults.injected()} injected)`, endAt);
    } else if (spec.scenario === "primary-outage") {
      d.health.set(backendName, "drill", "down", `drill ${id}: primary-outage`);
      await hold(spec.durationMs);
      endAt = d.clock.now();
      note("failure ended: tier 0 back in service", endAt);
      d.health.set(backendName, "drill", "healthy", "");
    } else if (spec.scenario === "backend-crash") {
      process.kill(mark!.pid, "SIGKILL");
      endAt = failAt;
      await hold(spec.durationMs);
    } else {
      signalGroup(mark!.pid, "SIGSTOP");
      await hold(spec.durationMs);
      endAt = d.clock.now();
      note("failure ended: SIGCONT", endAt);
      signalGroup(mark!.pid, "SIGCONT");
      continued = true;
    }
    // Until the route's recovered transition. A route that never left tier 0 has nothing to recover from: a short grace for a late failover, then the report says so.
    const deadline = d.clock.now() + o.recoveryTimeoutMs;
    await waitUntil(() => failover() !== undefined, Math.min(deadline, d.clock.now() + LATE_FAILOVER_MS));
    if (failover()) await waitUntil(() => recovered() !== undefined, deadline);
  } finally {
    streaming = false;
    pump?.cancel();
    if (!continued) signalGroup(mark!.pid, "SIGCONT");
    if (spec.scenario === "primary-outage") d.health.set(backendName, "drill", "healthy", "");
    if (fault) d.faults.end("the drill ended");
  }
  const injected = fault ? d.faults.injected() : undefined;
  await within(d.clock, Promise.all(inFlight), 10_000);
  off();
  offHealth();
  await client.close();

  const finished = sent.filter((s) => s.done !== undefined);
  const failedOver = failover();
  const back = recovered();
  const raised = d.alertsSince(t0).some((a) => (a.kind === "failover" || a.kind === "all_tiers_down") && a.route === route.model);
  const before = deliveredBefore;
  let delivered: boolean | null = null;
  if (before !== undefined) {
    const until = d.clock.now() + 10_000;
    while (d.clock.now() < until && deliveredAt === undefined && raised && !spec.giveUp?.aborted) {
      await sleep(100);
      watchDelivery();
    }
    delivered = raised && deliveredAt !== undefined;
  }
  const countersAfter = await d.counters?.(route.model);
  const base = {
    id,
    scenario: spec.scenario,
    route: route.model,
    backend: backendName,
    started_at: new Date(t0).toISOString(),
    injected_at: new Date(failAt).toISOString(),
    duration_ms: spec.durationMs,
    requests: sent.length,
    client_errors: sent.filter((s) => s.done !== undefined && !s.ok).length + sent.filter((s) => s.done === undefined).length,
    fallback_answers: finished.filter((s) => s.ok && (s.tier ?? 0) > 0).length,
    degraded_answers: finished.filter((s) => s.ok && s.degraded).length,
    detection_ms: detectedAt === undefined ? null : detectedAt - failAt,
    failover_ms: failedOver ? failedOver.at - failAt : null,
    recovery_ms: back && Number.isFinite(endAt) ? Math.max(0, back.at - endAt) : null,
    worst_latency_ms: Math.max(0, ...finished.map((s) => s.done! - s.at)),
    alert: { raised, delivered },
    alert_delivered_ms: delivered && deliveredAt !== undefined ? deliveredAt - failAt : null,
    ended_ms: Number.isFinite(endAt) ? endAt - failAt : null,
    stopped,
    ...(injected !== undefined ? { faults_injected: injected } : {}),
    ...(countersBefore && countersAfter ? { router: countersDelta(countersBefore, countersAfter) } : {}),
    timeline: timeline.sort((a, b) => a.at - b.at).map((t) => ({ at_ms: t.at - t0, what: t.what })),
  };
  return { ...base, ...verdictOf(base) };
}

export function pickRoute(config: Config, name: string | undefined): RouteConfig {
  const routes = config.routes;
  const r = name ? routes.find((x) => x.model === name) : (routes.find((x) => x.model !== "*") ?? routes[0]);
  if (!r) throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", name ? `no route ${name} (routes: ${routes.map((x) => x.model).join(", ")})` : "no route to drill", {});
  return r;
}
