/**
 * What llmsup mails about: one discriminated union of alert events. The daemon
 * translates component events (supervisor states, router failovers, GPU faults,
 * host checks) into these; the policy and the renderer only know this shape.
 *
 * Each event concerns a *subject* (a route, a backend, a GPU fault, a disk, the
 * daemon) that is either fine or in a bad state. A `raise` event moves the
 * subject into a bad state (or to another bad state), a `clear` event brings it
 * back, a `notice` is a one-off. Dedupe, coalescing and recovery pairing all
 * work per subject.
 */

export type AlertSeverity = "info" | "warning" | "critical";

export const SEVERITY_RANK: Readonly<Record<AlertSeverity, number>> = { info: 0, warning: 1, critical: 2 };

export function maxSeverity(a: AlertSeverity, b: AlertSeverity): AlertSeverity {
  return SEVERITY_RANK[a] >= SEVERITY_RANK[b] ? a : b;
}

/** A tier of a route; `index` counts from 0, as in route[i].tiers[j], x-llmsup-tier and `llmsup status` (tier 0 is the primary). */
export interface TierRef {
  readonly index: number;
  readonly backend: string;
  readonly model?: string;
}

interface EventBase {
  /** When it happened, ms since the epoch. */
  readonly at: number;
  /** What the operator should do; replaces the default action line of the kind. */
  readonly action?: string;
  /** The last lines the backend concerned printed, oldest first. */
  readonly lastLines?: readonly string[];
}

/** A route moved off a tier (first failover of an outage, or further down the chain). */
export interface FailoverEvent extends EventBase {
  readonly kind: "failover";
  readonly route: string;
  readonly from: TierRef;
  readonly to: TierRef;
  /** The classified reason (connect, ttft_timeout, server_error, gpu_fault, …). */
  readonly reasonClass: string;
  /** The first error text, as the upstream or the OS said it. */
  readonly error: string;
  /** GPUs of the tier that failed, when known. */
  readonly gpus?: readonly number[];
}

/** A route is back on its first tier. The outage length comes from pairing with the failure. */
export interface RecoveryEvent extends EventBase {
  readonly kind: "recovery";
  readonly route: string;
  readonly tier: TierRef;
}

/** Every tier of a route is down: clients get 503 (or the emergency cache). */
export interface AllTiersDownEvent extends EventBase {
  readonly kind: "all_tiers_down";
  readonly route: string;
  /** Why each tier is out, in tier order. */
  readonly tiers: readonly { readonly tier: TierRef; readonly reason: string }[];
  readonly retryAfterMs?: number;
}

/** All tiers are down and the route answers from the emergency response cache. */
export interface CacheServingEvent extends EventBase {
  readonly kind: "cache_serving";
  readonly route: string;
  readonly served?: number;
}

/** A managed backend spent its restart budget and stays down until `llmsup reset`. */
export interface BackendFatalEvent extends EventBase {
  readonly kind: "backend_fatal";
  readonly backend: string;
  /** The last exit's classification (oom, gpu_occupied, wedged, startup_timeout, …). */
  readonly exitClass: string;
  readonly reason: string;
  readonly budget: { readonly used: number; readonly burst: number };
  readonly gpus?: readonly number[];
}

/** A backend keeps being restarted (crash loop, or wedged and restarted by the deep probe). */
export interface BackendRestartingEvent extends EventBase {
  readonly kind: "backend_restarting";
  readonly backend: string;
  readonly restarts: number;
  /** The span the restarts were counted over. */
  readonly windowMs: number;
  readonly exitClass: string;
  readonly reason: string;
  /** True when llmsup restarted it because it stopped answering (deep probe). */
  readonly wedged: boolean;
  readonly gpus?: readonly number[];
}

/**
 * A managed backend cannot start because something else holds what it needs
 * (GPU memory, its port); llmsup starts it as soon as that is released, and
 * its restart budget is untouched meanwhile.
 */
export interface BackendBlockedEvent extends EventBase {
  readonly kind: "backend_blocked";
  readonly backend: string;
  /** The supervisor's reason, naming the holder. */
  readonly reason: string;
  /** The process holding GPU memory on the backend's GPUs, when that is what blocks it. */
  readonly holder?: { readonly pid: number; readonly gpu: number; readonly usedMemoryMib: number; readonly processName?: string };
  /** The classification of the exit that found it (gpu_occupied, oom, start_failed), when an exit did. */
  readonly exitClass?: string;
  readonly gpus?: readonly number[];
}

/** A backend that was fatal, restarting or blocked is ready again. */
export interface BackendRecoveredEvent extends EventBase {
  readonly kind: "backend_recovered";
  readonly backend: string;
}

/** A GPU fault was raised (from the GPU monitor's GpuFault). */
export interface GpuFaultEvent extends EventBase {
  readonly kind: "gpu_fault";
  /** GPU index, or null when it concerns every GPU (driver). */
  readonly gpu: number | null;
  readonly busId?: string;
  /** The fault kind (thermal, ecc_uncorrected, fallen_off_bus, driver_unresponsive, …). */
  readonly fault: string;
  /** degraded: tiers on it may be slow; down: tiers on it are DOWN. */
  readonly effect: "degraded" | "down";
  readonly reason: string;
  /** The recommended action, as the GPU monitor gives it. */
  readonly recommended: string;
  readonly xid?: number;
}

export interface GpuFaultClearedEvent extends EventBase {
  readonly kind: "gpu_fault_cleared";
  readonly gpu: number | null;
  readonly busId?: string;
  readonly fault: string;
  /** Why it cleared. */
  readonly reason: string;
}

/**
 * The remediation ladder resets a GPU: `started` when its backends are
 * stopped for `nvidia-smi -r`, `done` when the reset cleared the faults and
 * they start again.
 */
/** What every step of the remediation ladder names: the GPU, the faults that asked for it, the backends on the GPU. */
interface GpuLadderEvent extends EventBase {
  readonly gpu: number;
  readonly busId?: string;
  /** The faults that asked for the step (each with its XID and the cure it asks for), one line each. */
  readonly faults: readonly string[];
  /** The backends on the GPU: stopped and held for a reset or a reboot, started again after. */
  readonly backends: readonly string[];
}

export interface GpuResetEvent extends GpuLadderEvent {
  readonly kind: "gpu_reset";
  readonly stage: "started" | "done";
  /** What nvidia-smi -r said. */
  readonly detail?: string;
}

/** A GPU needs a reset and auto_reset is off: an operator must do it. */
export interface GpuResetNeededEvent extends GpuLadderEvent {
  readonly kind: "gpu_reset_needed";
}

/** A GPU needs a reboot of the machine: its backends are stopped and held until its faults clear. */
export interface GpuRebootRequiredEvent extends GpuLadderEvent {
  readonly kind: "gpu_reboot_required";
  /** A fault only a reboot cures, a second reset need inside reset_window, or a reset that was refused, failed or did not help. */
  readonly cause: "reboot_fault" | "reset_again" | "reset_refused" | "reset_failed" | "reset_ineffective";
  /** The ladder's reason, one line. */
  readonly why: string;
  /** What the driver's gpu_recovery_action reads now, when known. */
  readonly recoveryAction?: string;
  /** The GPU's last readings, one line each. */
  readonly readings: readonly string[];
  /** What nvidia-smi -r said, when a reset was tried. */
  readonly detail?: string;
}

/** A GPU that needed a reset or a reboot no longer does: the faults cleared (held backends start again). */
export interface GpuRecoveredEvent extends EventBase {
  readonly kind: "gpu_recovered";
  readonly gpu: number;
  readonly busId?: string;
  readonly reason: string;
  readonly backends: readonly string[];
}

export interface DiskLowEvent extends EventBase {
  readonly kind: "disk_low";
  readonly path: string;
  readonly freeBytes: number;
  readonly minFreeBytes: number;
}

export interface DiskOkEvent extends EventBase {
  readonly kind: "disk_ok";
  readonly path: string;
  readonly freeBytes: number;
}

/** A (backend, model) gave enough bad answers (loops, empty, garbage, refusals) within the window to be DEGRADED. */
export interface TierDegradedEvent extends EventBase {
  readonly kind: "tier_degraded";
  readonly backend: string;
  readonly model: string;
  readonly detections: number;
  readonly windowMs: number;
  /** The routes that use it as a tier. */
  readonly routes: readonly string[];
}

/** A DEGRADED (backend, model) fell back under the count of bad answers that degrades it. */
export interface TierQualityOkEvent extends EventBase {
  readonly kind: "tier_quality_ok";
  readonly backend: string;
  readonly model: string;
  readonly detections: number;
  readonly windowMs: number;
}

export interface DaemonStartedEvent extends EventBase {
  readonly kind: "daemon_started";
  readonly version: string;
  readonly pid: number;
  readonly config: string;
}

export interface DaemonStoppingEvent extends EventBase {
  readonly kind: "daemon_stopping";
  /** Why (signal, operator command, fatal error). */
  readonly reason: string;
}

/** A reload (`llmsup reload` or SIGHUP) was refused: the running configuration is kept. */
export interface ReloadRefusedEvent extends EventBase {
  readonly kind: "reload_refused";
  /** The error code and message. */
  readonly error: string;
  /** Each problem, `key.path: message`. */
  readonly problems: readonly string[];
  /** The configuration file. */
  readonly config: string;
}

export type AlertEvent =
  | FailoverEvent
  | RecoveryEvent
  | AllTiersDownEvent
  | CacheServingEvent
  | BackendFatalEvent
  | BackendRestartingEvent
  | BackendBlockedEvent
  | BackendRecoveredEvent
  | GpuFaultEvent
  | GpuFaultClearedEvent
  | GpuResetEvent
  | GpuResetNeededEvent
  | GpuRebootRequiredEvent
  | GpuRecoveredEvent
  | DiskLowEvent
  | DiskOkEvent
  | TierDegradedEvent
  | TierQualityOkEvent
  | DaemonStartedEvent
  | DaemonStoppingEvent
  | ReloadRefusedEvent;

export type AlertKind = AlertEvent["kind"];

export type AlertPhase = "raise" | "clear" | "notice";

/** How the policy treats an event. */
export interface AlertClass {
  /** Dedupe and pairing key: `route:<model>`, `backend:<name>`, `gpu:<index|all>:<fault>`, `gpu:<index>:remediation`, `disk:<path>`, `daemon`, `config`. */
  readonly subject: string;
  readonly severity: AlertSeverity;
  readonly phase: AlertPhase;
  /** The subject's state after the event; a raise to the same state is a repeat, not a change. */
  readonly state: string;
}

export function gpuLabel(gpu: number | null): string {
  return gpu === null ? "all" : String(gpu);
}

export function classifyAlert(e: AlertEvent): AlertClass {
  switch (e.kind) {
    case "failover":
      return { subject: `route:${e.route}`, severity: "warning", phase: "raise", state: `tier:${e.to.index}` };
    case "all_tiers_down":
      return { subject: `route:${e.route}`, severity: "critical", phase: "raise", state: "all_down" };
    case "cache_serving":
      return { subject: `route:${e.route}`, severity: "warning", phase: "raise", state: "cache" };
    case "recovery":
      return { subject: `route:${e.route}`, severity: "info", phase: "clear", state: "ok" };
    case "backend_restarting":
      return { subject: `backend:${e.backend}`, severity: "warning", phase: "raise", state: e.wedged ? "wedged" : "restarting" };
    case "backend_fatal":
      return { subject: `backend:${e.backend}`, severity: "critical", phase: "raise", state: "fatal" };
    case "backend_blocked":
      return { subject: `backend:${e.backend}`, severity: "warning", phase: "raise", state: "blocked" };
    case "backend_recovered":
      return { subject: `backend:${e.backend}`, severity: "info", phase: "clear", state: "ok" };
    case "gpu_fault":
      return { subject: `gpu:${gpuLabel(e.gpu)}:${e.fault}`, severity: e.effect === "down" ? "critical" : "warning", phase: "raise", state: e.effect };
    case "gpu_fault_cleared":
      return { subject: `gpu:${gpuLabel(e.gpu)}:${e.fault}`, severity: "info", phase: "clear", state: "ok" };
    case "gpu_reset":
      return e.stage === "started"
        ? { subject: `gpu:${e.gpu}:remediation`, severity: "warning", phase: "raise", state: "resetting" }
        : { subject: `gpu:${e.gpu}:remediation`, severity: "info", phase: "clear", state: "ok" };
    case "gpu_reset_needed":
      return { subject: `gpu:${e.gpu}:remediation`, severity: "warning", phase: "raise", state: "reset_needed" };
    case "gpu_reboot_required":
      return { subject: `gpu:${e.gpu}:remediation`, severity: "critical", phase: "raise", state: "reboot_required" };
    case "gpu_recovered":
      return { subject: `gpu:${e.gpu}:remediation`, severity: "info", phase: "clear", state: "ok" };
    case "disk_low":
      return { subject: `disk:${e.path}`, severity: "warning", phase: "raise", state: "low" };
    case "disk_ok":
      return { subject: `disk:${e.path}`, severity: "info", phase: "clear", state: "ok" };
    case "tier_degraded":
      return { subject: `tier:${e.backend}/${e.model}`, severity: "warning", phase: "raise", state: "degraded" };
    case "tier_quality_ok":
      return { subject: `tier:${e.backend}/${e.model}`, severity: "info", phase: "clear", state: "ok" };
    case "daemon_started":
      return { subject: "daemon", severity: "info", phase: "notice", state: "started" };
    case "daemon_stopping":
      return { subject: "daemon", severity: "info", phase: "notice", state: "stopping" };
    case "reload_refused":
      return { subject: "config", severity: "warning", phase: "notice", state: "reload_refused" };
  }
}
