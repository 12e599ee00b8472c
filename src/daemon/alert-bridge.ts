/**
 * From what the components report to what an operator is mailed: supervisor
 * transitions, router route changes, GPU and host faults, the daemon's own
 * start and stop become AlertEvents. Pure, with a little memory (the
 * backends in an outage, whose return to ready is the all-clear). Route
 * mails come only from the route's state transitions, never from a single
 * request's failover. Also
 * says what is live for the alert policy to reconcile with (reconcile.ts): at
 * start, and on reload through the `onReconcile` hook.
 */
import type { AlertEvent, TierRef } from "../alerts/events.ts";
import type { LiveState } from "../alerts/reconcile.ts";
import type { TimeOnTier } from "../alerts/digest.ts";
import type { Config } from "../config/types.ts";
import type { GpuFault } from "../gpu/types.ts";
import type { HostFault } from "../host/thresholds.ts";
import type { RemediationEvent } from "./remediation-desk.ts";
import type { RouteSnapshot, RouterEvent } from "../router/router.ts";
import type { BackendSnapshot, SupervisorEvent } from "../supervisor/states.ts";

export type BridgeInput =
  | SupervisorEvent
  | RouterEvent
  | RemediationEvent
  | { readonly event: "gpu.fault.raised" | "gpu.fault.cleared"; readonly fault: GpuFault; readonly at: number }
  | { readonly event: "host.fault.raised" | "host.fault.cleared"; readonly fault: HostFault; readonly at: number; readonly freeBytes?: number; readonly minFreeBytes: number }
  | { readonly event: "daemon.started"; readonly at: number; readonly version: string; readonly pid: number; readonly config: string }
  | { readonly event: "daemon.stopping"; readonly at: number; readonly reason: string }
  | { readonly event: "daemon.reload_refused"; readonly at: number; readonly error: string; readonly problems: readonly string[]; readonly config: string };

/** Restarts inside the budget window from which "restarted repeatedly" is mailed. */
const REPEATED_RESTARTS = 2;

/**
 * The live state at daemon start, once the supervisor has restored what the
 * last run left (fatal marks): every route is settling (none has loaded its
 * first tier yet), every backend is fatal or not.
 */
export function liveAtStart(config: Config, backends: readonly Pick<BackendSnapshot, "name" | "state">[]): LiveState {
  const fatal = new Set(backends.filter((b) => b.state === "fatal").map((b) => b.name));
  return {
    routes: Object.fromEntries(config.routes.map((r) => [r.model, { serving: "settling" as const }])),
    backends: Object.fromEntries(config.backends.map((b) => [b.name, { fatal: fatal.has(b.name) }])),
    // The router counts bad answers in memory: a fresh one has no DEGRADED tier.
    degradedTiers: new Set(),
  };
}

/**
 * The live state after a reload: routes and backends the new configuration no
 * longer has are dropped; each route stands where the new router has it (a
 * route that kept its tiers kept its state; one still settling is "settling");
 * backends carry on (their outages stand).
 */
export function liveAfterReload(config: Config, routes: readonly Pick<RouteSnapshot, "model" | "serving" | "phase" | "tiers">[]): LiveState {
  const serving = (r: Pick<RouteSnapshot, "serving" | "phase" | "tiers">) =>
    r.phase === "settling" ? ("settling" as const) : r.serving < 0 ? null : { index: r.serving, backend: r.tiers[r.serving]!.backend };
  return {
    routes: Object.fromEntries(routes.map((r) => [r.model, { serving: serving(r) }])),
    backends: Object.fromEntries(config.backends.map((b) => [b.name, {}])),
    degradedTiers: new Set(routes.flatMap((r) => r.tiers.filter((t) => t.quality?.state === "degraded").map((t) => `${t.backend}/${t.model}`))),
  };
}

export class AlertBridge {
  /** Backends restarting repeatedly, blocked or fatal (or reset out of fatal): their next ready is the all-clear. */
  private readonly awaitingReady = new Set<string>();
  private config: Config;
  constructor(config: Config) {
    this.config = config;
  }

  reconfigure(config: Config): void {
    this.config = config;
    for (const b of this.awaitingReady) if (!config.backends.some((x) => x.name === b)) this.awaitingReady.delete(b);
  }

  translate(e: BridgeInput): AlertEvent[] {
    switch (e.event) {
      case "router.route.fallback": {
        // A route moving off a drained backend is the operator's doing, not an outage: no mail (the drain is in the history).
        if (e.code === "drained") return [];
        // The route's state says why: the reason the tier it left is out (tier-state.ts), not whichever request failed last.
        const from: TierRef = e.from ?? { index: 0, backend: this.config.routes.find((r) => r.model === e.route)?.tiers[0]?.backend ?? "?" };
        const gpus = this.config.backends.find((b) => b.name === from.backend)?.gpus;
        return [{ kind: "failover", at: e.at, route: e.route, from, to: e.to, reasonClass: e.code, error: e.reason, ...(gpus?.length ? { gpus } : {}) }];
      }
      case "router.route.recovered":
        return [{ kind: "recovery", at: e.at, route: e.route, tier: e.to }];
      case "router.route.down":
        return [
          {
            kind: "all_tiers_down",
            at: e.at,
            route: e.route,
            tiers: e.tried.map((t) => ({ tier: { index: t.tier, backend: t.backend, model: t.model }, reason: `${t.outcome}: ${t.detail}` })),
            retryAfterMs: this.config.router.all_down_retry_after,
          },
        ];
      case "router.cache.served":
        return [{ kind: "cache_serving", at: e.at, route: e.route }];
      case "router.tier.quality": {
        const base = { at: e.at, backend: e.backend, model: e.model, detections: e.detections, windowMs: e.windowMs };
        if (!e.degraded) return [{ kind: "tier_quality_ok", ...base }];
        const routes = this.config.routes.filter((r) => r.tiers.some((t) => t.backend === e.backend && t.model === e.model)).map((r) => r.model);
        return [{ kind: "tier_degraded", ...base, routes }];
      }
      case "backend.state": {
        const gpus = this.config.backends.find((b) => b.name === e.backend)?.gpus;
        const g = gpus?.length ? { gpus } : {};
        // Out of fatal (a reset, also of a fatal carried over a daemon restart): the outage lasts until ready.
        if (e.from === "fatal") this.awaitingReady.add(e.backend);
        if (e.to === "fatal") {
          this.awaitingReady.add(e.backend);
          return [{ kind: "backend_fatal", at: e.at, backend: e.backend, exitClass: e.exit?.class ?? "unknown", reason: e.reason, budget: e.budget ?? { used: 0, burst: 0 }, lastLines: e.exit?.lastLines, ...g }];
        }
        // Said when it begins to wait, not again while it waits (a blocked backend polls the holder without changing state).
        if (e.to === "blocked" && e.from !== "blocked") {
          this.awaitingReady.add(e.backend);
          return [{ kind: "backend_blocked", at: e.at, backend: e.backend, reason: e.reason, ...(e.holder ? { holder: e.holder } : {}), ...(e.exit ? { exitClass: e.exit.class, lastLines: e.exit.lastLines } : {}), ...g }];
        }
        if (e.to === "backoff" && e.exit) {
          const wedged = e.exit.class === "wedged";
          const used = e.budget?.used ?? 0;
          if (wedged || used >= REPEATED_RESTARTS) {
            this.awaitingReady.add(e.backend);
            const window = this.config.backends.find((b) => b.name === e.backend)?.process?.start_limit_interval ?? 0;
            return [{ kind: "backend_restarting", at: e.at, backend: e.backend, restarts: used, windowMs: window, exitClass: e.exit.class, reason: e.exit.reason, wedged, lastLines: e.exit.lastLines, ...g }];
          }
          return [];
        }
        if (e.to === "ready" && this.awaitingReady.delete(e.backend)) return [{ kind: "backend_recovered", at: e.at, backend: e.backend }];
        return [];
      }
      case "gpu.fault.raised": {
        const f = e.fault;
        if (ladderMails(f)) return [];
        return [{ kind: "gpu_fault", at: e.at, gpu: f.gpu, busId: f.busId, fault: f.kind, effect: f.severity === "down" ? "down" : "degraded", reason: f.reason, recommended: f.action, ...(f.xid !== undefined ? { xid: f.xid } : {}) }];
      }
      case "gpu.fault.cleared":
        if (ladderMails(e.fault)) return [];
        return [{ kind: "gpu_fault_cleared", at: e.at, gpu: e.fault.gpu, busId: e.fault.busId, fault: e.fault.kind, reason: "clearReason" in e.fault && typeof e.fault.clearReason === "string" ? e.fault.clearReason : "the condition ended" }];
      case "gpu.remediation":
        return remediationAlerts(e);
      case "host.fault.raised":
        return e.fault.kind === "disk_low" ? [{ kind: "disk_low", at: e.at, path: e.fault.dir ?? "?", freeBytes: e.freeBytes ?? 0, minFreeBytes: e.minFreeBytes }] : [];
      case "host.fault.cleared":
        return e.fault.kind === "disk_low" ? [{ kind: "disk_ok", at: e.at, path: e.fault.dir ?? "?", freeBytes: e.freeBytes ?? 0 }] : [];
      case "daemon.started":
        return [{ kind: "daemon_started", at: e.at, version: e.version, pid: e.pid, config: e.config }];
      case "daemon.stopping":
        return [{ kind: "daemon_stopping", at: e.at, reason: e.reason }];
      case "daemon.reload_refused":
        return [{ kind: "reload_refused", at: e.at, error: e.error, problems: e.problems, config: e.config }];
      default:
        return [];
    }
  }
}

/**
 * Whether a fault is the remediation ladder's to mail: one on a known GPU
 * whose cure is a GPU reset or a reboot. The ladder mails it with the
 * evidence — reset needed, REBOOT REQUIRED, or the reset it does itself —
 * and its all-clear, so that one state change is one mail. (Until a reset
 * llmsup does itself is due, the route's failover mail says what happened.)
 */
function ladderMails(f: GpuFault): boolean {
  return f.gpu !== null && (f.recovery === "reset_gpu" || f.recovery === "reboot");
}

/** The mail a step of the remediation ladder asks for (its `tell`), if any. */
function remediationAlerts(e: RemediationEvent): AlertEvent[] {
  const base = { at: e.at, gpu: e.gpu, ...(e.busId ? { busId: e.busId } : {}), backends: e.backends };
  const faults = e.evidence.map((f) => `${f.reason}${f.xid !== undefined ? ` (XID ${f.xid})` : ""}; cure: ${f.recovery === "reboot" ? "a reboot" : "a GPU reset"}`);
  switch (e.tell) {
    case "reset_started":
      return [{ kind: "gpu_reset", stage: "started", ...base, faults }];
    case "reset_done":
      return [{ kind: "gpu_reset", stage: "done", ...base, faults, ...(e.resetDetail ? { detail: e.resetDetail } : {}) }];
    case "reset_needed":
      return [{ kind: "gpu_reset_needed", ...base, faults }];
    case "reboot_required":
      return [
        {
          kind: "gpu_reboot_required",
          ...base,
          cause: e.cause ?? "reboot_fault",
          why: e.why,
          faults,
          readings: e.readings,
          ...(e.recoveryAction !== undefined ? { recoveryAction: e.recoveryAction } : {}),
          ...(e.resetDetail ? { detail: e.resetDetail } : {}),
        },
      ];
    case "recovered":
      return [{ kind: "gpu_recovered", ...base, reason: e.why }];
    default:
      return [];
  }
}

/**
 * Time each tier answered each route over [from, to], from the route-level
 * alert events (failover → that tier, recovery → tier 0, all tiers down → none).
 * Pure.
 */
export function timeOnTier(config: Config, events: readonly AlertEvent[], from: number, to: number): TimeOnTier[] {
  return config.routes.map((route) => {
    const changes = events
      .filter((e) => "route" in e && e.route === route.model && (e.kind === "failover" || e.kind === "recovery" || e.kind === "all_tiers_down"))
      .sort((a, b) => a.at - b.at);
    let tier = 0;
    for (const c of changes) if (c.at < from) tier = c.kind === "failover" ? c.to.index : c.kind === "recovery" ? 0 : -1;
    const ms = new Map<number, number>();
    let at = from;
    for (const c of changes) {
      if (c.at < from || c.at > to) continue;
      ms.set(tier, (ms.get(tier) ?? 0) + (c.at - at));
      at = c.at;
      tier = c.kind === "failover" ? c.to.index : c.kind === "recovery" ? 0 : -1;
    }
    ms.set(tier, (ms.get(tier) ?? 0) + (to - at));
    return {
      route: route.model,
      tiers: route.tiers.map((t, index) => ({ index, backend: t.backend, ms: ms.get(index) ?? 0 })),
      downMs: ms.get(-1) ?? 0,
    };
  });
}
