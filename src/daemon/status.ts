/**
 * The status the control socket serves and `llmsup status` shows: is the LLM
 * API up, on which tier, and what is wrong. The verdict and exit code follow
 * the monitoring-plugin convention (verdict.ts).
 */
import type { StatusSnapshot } from "../alerts/snapshot.ts";
import type { AlerterStatus } from "../alerts/alerter.ts";
import type { CacheStatus } from "../cache/cache.ts";
import type { Config } from "../config/types.ts";
import { reportJson } from "../gpu/report.ts";
import type { GpuSnapshot } from "../gpu/monitor.ts";
import type { BackendHealth } from "../health/registry.ts";
import type { HostSnapshot } from "../host/monitor.ts";
import { packageVersion } from "../platform/version.ts";
import type { RouteSnapshot } from "../router/router.ts";
import type { Listening } from "../router/server.ts";
import type { BackendSnapshot } from "../supervisor/states.ts";
import type { RemediationView } from "./remediation-desk.ts";
import type { HistoryEntry } from "./state-store.ts";
import { verdict, type Verdict, type VerdictInput } from "./verdict.ts";

export type GpuJson = ReturnType<typeof reportJson>;

export interface TierStatus {
  readonly index: number;
  readonly backend: string;
  readonly model: string;
  /** Admissible by the tier-state model (it may serve now). */
  readonly available: boolean;
  /** Why not (null when available), its stable code, since and until when. */
  readonly why: string | null;
  readonly code: string | null;
  readonly out_since: string | null;
  readonly out_until: string | null;
  readonly breaker: string;
  /** Context window in tokens, configured or discovered; null when unknown. */
  readonly context: number | null;
  /** Model failures caught on its answers (loops, empty, garbage, refusals) within the window; degraded at the router's count. Null: none. */
  readonly quality: { readonly state: "ok" | "degraded"; readonly detections: number; readonly window_s: number; readonly since: string | null } | null;
}

export interface RouteStatus {
  readonly model: string;
  /** The serving tier by the tier-state model; -1 when none can serve. */
  readonly serving_tier: number;
  readonly serving_backend: string | null;
  /** settling: at boot, while the first tier is still loading (no alerts yet). */
  readonly phase: "settling" | "settled";
  readonly serving_since: string;
  /** When the route left its first tier; null while on it. */
  readonly degraded_since: string | null;
  readonly tiers: readonly TierStatus[];
}

export interface BackendStatus {
  readonly name: string;
  readonly kind: string;
  readonly managed: boolean;
  /** Supervisor state (managed), or "remote". */
  readonly state: string;
  readonly since: string | null;
  readonly state_reason: string | null;
  readonly health: string;
  readonly health_reason: string;
  readonly pid: number | null;
  /** CPU of the whole process group, in percent of one core over the last sampling interval; null before two samples (or remote). */
  readonly cpu_pct: number | null;
  /** Resident memory of the whole process group (leader and every member); null before a sample (or remote). */
  readonly rss_bytes: number | null;
  /** Live processes in the group; null before a sample (or remote). */
  readonly processes: number | null;
  readonly generation: number | null;
  /** When the running process started (an adopted one: when the earlier llmsup started it); null when none runs. */
  readonly process_started_at: string | null;
  /** The running process was left by an earlier llmsup and adopted (no model reload). */
  readonly adopted: boolean;
  /** "used/burst" failed starts in the current window. */
  readonly restarts: string | null;
  /** The same as numbers: failed starts counted in the current start-limit window, and start_limit_burst; null for a remote backend. */
  readonly start_budget: { readonly used: number; readonly burst: number } | null;
  readonly last_failure: string | null;
  readonly progress: string | null;
  readonly gpus: readonly number[];
  readonly url: string;
  /** Set while an operator has the backend out of rotation (`llmsup drain`). */
  readonly drained: { readonly by: string; readonly since: string } | null;
  /** Requests the router has on it now (streams until their last byte): a drained backend at 0 is idle. */
  readonly inflight: number;
  /** Why it is held stopped (its GPU needs a reset or a reboot); null when it is not. */
  readonly held: string | null;
}

/** The remediation ladder on one GPU (gpu/remediation.ts): where it stands, since when, why, and what comes next. */
export interface RemediationStatus {
  readonly gpu: number;
  /** idle, waiting, resetting, verifying, recovered, reset_needed, reboot_required. */
  readonly state: string;
  readonly since: string;
  readonly why: string;
  /** reboot_required: reboot_fault, reset_again, reset_refused, reset_failed, reset_ineffective. */
  readonly cause: string | null;
  /** What llmsup does next, and when (null: nothing pending, or no time set). */
  readonly next: string | null;
  readonly next_at: string | null;
  /** The faults asking for a reset or a reboot. */
  readonly faults: readonly { readonly id: string; readonly kind: string; readonly reason: string; readonly recovery: string; readonly xid: number | null; readonly since: string }[];
  /** llmsup's resets of this GPU inside reset_window. */
  readonly resets_in_window: readonly string[];
  readonly backends: readonly string[];
  /** Whether those backends are held stopped now. */
  readonly backends_held: boolean;
  readonly auto_reset: boolean;
}

export interface DaemonStatus {
  readonly daemon: { readonly version: string; readonly pid: number; readonly started_at: string; readonly uptime_s: number; readonly config: string; readonly hostname: string };
  readonly router: {
    readonly socket: string | null;
    readonly tcp: string | null;
    readonly requests_per_s: number;
    readonly fallback_share_5m: number | null;
    readonly routes: readonly RouteStatus[];
  };
  readonly backends: readonly BackendStatus[];
  readonly gpus: GpuJson | null;
  /** `last_sample_at`: when nvidia-smi last gave a plausible sample (the readings under `gpus` are that old). */
  readonly gpu_monitor: { readonly state: string; readonly nvidia_smi: string; readonly kernel_log: unknown; readonly last_sample_at: string | null } | null;
  /** The remediation ladder, per GPU it is acting on or has acted on; null when GPUs are not watched. */
  readonly remediation: readonly RemediationStatus[] | null;
  readonly host: unknown;
  readonly alerts: { readonly enabled: boolean; readonly pending: number; readonly delivered: number; readonly last_error: string | null; readonly channels: readonly AlertChannelStatus[] } | null;
  /** The emergency response cache; null when no route has `cache = true`. */
  readonly cache: (CacheStatus & { readonly routes: readonly string[] }) | null;
  readonly events: readonly (HistoryEntry & { readonly time: string })[];
  readonly reload: VerdictInput["reload"];
  readonly summary: Verdict;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** One alert channel's delivery (smtp, alertmanager, each webhook by name); counts since the daemon started. */
export interface AlertChannelStatus {
  readonly channel: string;
  /** Messages in the channel's outbox, the one being sent included. */
  readonly pending: number;
  readonly delivered: number;
  readonly failed_attempts: number;
  /** Refused for good by the receiver (kept in the outbox's rejected/). */
  readonly rejected: number;
  /** Dropped for the outbox bound (outbox_max) and not yet reported by a delivered message. */
  readonly dropped: number;
  /** The last attempt failed and the channel is backing off. */
  readonly failing: boolean;
  /** The stable code of the last failure (LLMSUP_E_SMTP_*, LLMSUP_E_ALERT_RECEIVER_*), null when none. */
  readonly last_error_code: string | null;
  /** The last failure in words (the code, then the receiver's or the OS's answer, secrets scrubbed); null when none. */
  readonly last_error: string | null;
  readonly last_delivered_at: string | null;
}

/** A delivery failure in words: its code, then what the server or the OS answered. */
function failureText(f: { readonly code?: string; readonly llmsupCode?: string; readonly response?: string }): string {
  return `${f.code ?? f.llmsupCode ?? "error"}${f.response ? `: ${f.response}` : ""}`;
}

export function alertChannelStatus(c: AlerterStatus["channels"][number]): AlertChannelStatus {
  return {
    channel: c.channel,
    pending: c.pending,
    delivered: c.delivered,
    failed_attempts: c.failedAttempts,
    rejected: c.rejected,
    dropped: c.dropped?.count ?? 0,
    failing: c.failures > 0,
    last_error_code: c.lastError?.failure.llmsupCode ?? null,
    last_error: c.lastError ? failureText(c.lastError.failure) : null,
    last_delivered_at: c.lastDeliveredAt === undefined ? null : iso(c.lastDeliveredAt),
  };
}

/** Everything status is made of, read once from the running parts (the daemon gathers it). */
export interface StatusSources {
  readonly now: number;
  readonly startedAt: number;
  readonly config: Config;
  readonly routes: readonly RouteSnapshot[];
  /** Answers served (and by a fallback tier) over the last minute and the last five. */
  readonly served: { readonly minute: { total: number; fallback: number }; readonly fiveMinutes: { total: number; fallback: number } };
  readonly backends: readonly BackendSnapshot[];
  readonly health: (backend: string) => BackendHealth;
  readonly gpu?: GpuSnapshot;
  readonly host?: HostSnapshot;
  readonly alerts?: AlerterStatus;
  readonly cache?: CacheStatus;
  readonly listening: Listening;
  readonly history: readonly HistoryEntry[];
  /** An operator's drain of a backend, if any. */
  readonly drained?: (backend: string) => { readonly by: string; readonly since: number } | undefined;
  /** Requests the router has on a backend now. */
  readonly inflight?: (backend: string) => number;
  /** Why a backend is held stopped by the remediation ladder, if it is. */
  readonly held?: (backend: string) => string | undefined;
  /** The remediation ladder's GPUs (absent: GPUs are not watched). */
  readonly remediation?: readonly RemediationView[];
  /** Reload trouble: a refused reload, settings waiting for a restart of llmsup (verdict.ts). */
  readonly reload?: VerdictInput["reload"];
}

/** The status from its sources. Pure. */
export function buildStatus(d: StatusSources): DaemonStatus {
  const now = d.now;
  const c = d.config;
  const routes: RouteStatus[] = d.routes.map((r) => ({
    model: r.model,
    serving_tier: r.serving,
    serving_backend: r.serving >= 0 ? (r.tiers[r.serving]?.backend ?? null) : null,
    phase: r.phase,
    serving_since: iso(r.since),
    degraded_since: r.degradedSince !== undefined ? iso(r.degradedSince) : null,
    tiers: r.tiers.map((t, index) => {
      const a = t.admission;
      return {
        index,
        backend: t.backend,
        model: t.model,
        available: a.admissible,
        why: a.admissible ? null : a.why,
        code: a.admissible ? null : a.code,
        out_since: !a.admissible && a.since !== undefined ? iso(a.since) : null,
        out_until: !a.admissible && a.until !== undefined ? iso(a.until) : null,
        breaker: t.breaker,
        context: t.context ?? null,
        quality: t.quality ? { state: t.quality.state, detections: t.quality.detections, window_s: t.quality.windowMs / 1000, since: t.quality.since !== undefined ? iso(t.quality.since) : null } : null,
      };
    }),
  }));
  const sup = new Map(d.backends.map((s) => [s.name, s]));
  const backends: BackendStatus[] = c.backends.map((b) => {
    const s = sup.get(b.name);
    const h = d.health(b.name);
    const drain = d.drained?.(b.name);
    return {
      name: b.name,
      kind: b.kind,
      managed: b.managed,
      state: s?.state ?? "remote",
      since: s ? iso(s.since) : null,
      state_reason: s?.reason ?? null,
      health: h.state,
      health_reason: h.reason,
      pid: s?.pid ?? null,
      cpu_pct: s?.resources?.cpuPct ?? null,
      rss_bytes: s?.resources?.rssBytes ?? null,
      processes: s?.resources?.processes ?? null,
      generation: s?.generation ?? null,
      process_started_at: s?.startedAt !== undefined ? iso(s.startedAt) : null,
      adopted: s?.adopted === true,
      restarts: s ? `${s.budget.used}/${s.budget.burst}` : null,
      start_budget: s ? { used: s.budget.used, burst: s.budget.burst } : null,
      last_failure: s?.lastExit ? `${iso(s.lastExit.at)} ${s.lastExit.class}: ${s.lastExit.reason}` : null,
      progress: s?.progress ?? null,
      gpus: b.gpus,
      url: b.url,
      drained: drain ? { by: drain.by, since: iso(drain.since) } : null,
      inflight: d.inflight?.(b.name) ?? 0,
      held: d.held?.(b.name) ?? null,
    };
  });
  const served = d.served.minute;
  const five = d.served.fiveMinutes;
  const gsnap = d.gpu;
  const gpus = gsnap ? reportJson(gsnap) : null;
  const alerts = d.alerts
    ? (() => {
        const a = d.alerts;
        const err = a.lastError?.failure;
        // The channel the last error came from, named unless it is mail.
        const from = a.channels.find((c) => c.lastError && c.lastError === a.lastError)?.channel;
        const named = from && from !== "smtp" ? `${from}: ` : "";
        return { enabled: a.enabled, pending: a.pending, delivered: a.delivered, last_error: err ? `${named}${failureText(err)}` : null, channels: a.channels.map(alertChannelStatus) };
      })()
    : null;
  return {
    daemon: { version: packageVersion(), pid: process.pid, started_at: iso(d.startedAt), uptime_s: Math.round((now - d.startedAt) / 1000), config: c.source, hostname: c.daemon.hostname },
    router: {
      socket: d.listening.socket ?? null,
      tcp: d.listening.tcp ? `http://${d.listening.tcp.host}:${d.listening.tcp.port}` : null,
      requests_per_s: Math.round((served.total / 60) * 100) / 100,
      fallback_share_5m: five.total > 0 ? Math.round((five.fallback / five.total) * 1000) / 1000 : null,
      routes,
    },
    backends,
    gpus,
    remediation: d.remediation ? d.remediation.map(remediationStatus) : null,
    gpu_monitor: gsnap
      ? { state: gsnap.nvidiaSmi.state, nvidia_smi: gsnap.nvidiaSmi.path, kernel_log: gsnap.kernelLog ?? null, last_sample_at: gsnap.nvidiaSmi.lastSampleAt === undefined ? null : new Date(gsnap.nvidiaSmi.lastSampleAt).toISOString() }
      : null,
    host: d.host ?? null,
    alerts,
    cache: d.cache ? { ...d.cache, routes: c.routes.filter((r) => r.cache).map((r) => r.model) } : null,
    events: d.history.slice(-20).map((h) => ({ ...h, time: iso(h.at) })),
    reload: d.reload ?? null,
    summary: verdict({ routes, backends, gpus: gpus?.gpus ?? [], alerts, reload: d.reload }),
  };
}

function remediationStatus(r: RemediationView): RemediationStatus {
  return {
    gpu: r.gpu,
    state: r.state,
    since: iso(r.since),
    why: r.why,
    cause: r.cause,
    next: r.next,
    next_at: r.nextAt === null ? null : iso(r.nextAt),
    faults: r.evidence.map((e) => ({ id: e.id, kind: e.kind, reason: e.reason, recovery: e.recovery, xid: e.xid ?? null, since: iso(e.since) })),
    resets_in_window: r.resets.map(iso),
    backends: r.backends,
    backends_held: r.held,
    auto_reset: r.autoReset,
  };
}

/** What every alert mail shows of the current state, from the status. Pure. */
export function mailSnapshot(s: DaemonStatus, now: number): StatusSnapshot {
  return {
    routes: s.router.routes.map((r) => ({ model: r.model, tier: r.serving_tier >= 0 ? r.serving_tier : null, backend: r.serving_backend ?? undefined })),
    backends: s.backends.map((b) => ({ name: b.name, state: `${b.state} / ${b.health}`, reason: b.health === "healthy" ? undefined : b.health_reason, forMs: b.since ? now - Date.parse(b.since) : undefined })),
    gpus: s.gpus?.gpus.map((g) => ({ index: g.index, temperatureC: g.temperature_c ?? undefined, memoryUsedMib: g.memory_used_mib ?? undefined, memoryTotalMib: g.memory_total_mib ?? undefined, faults: g.faults.map((f) => f.reason) })),
  };
}

/** Backends in the order routes prefer them (the order they are started in). Pure. */
export function preferenceOrder(c: Config): string[] {
  const out: string[] = [];
  for (const r of c.routes) for (const t of r.tiers) if (!out.includes(t.backend)) out.push(t.backend);
  return out;
}
