/**
 * What `llmsup status` shows, as Prometheus series: one pure function from
 * the status (the one the status command prints) to the samples of every
 * status-derived metric, so /metrics and `llmsup status` cannot disagree.
 * Labels are bounded sets only (configured route and backend names, tier and
 * GPU indexes, stable codes): never free text, pids or request ids. A state
 * set has one series per possible state (1 for the current one, 0 for the
 * others). Readings nobody has (a GPU not sampled yet, a remote backend's
 * memory) have no series.
 */
import { CLOCK_EVENT_REASONS } from "../gpu/report.ts";
import { REMEDIATION_PHASES } from "../gpu/remediation.ts";
import { BACKEND_STATES } from "../supervisor/states.ts";
import type { AlertChannelStatus, DaemonStatus } from "./status.ts";

export type Labels = Readonly<Record<string, string>>;

export interface Series {
  readonly labels: Labels;
  readonly value: number;
}

export interface MetricSpec {
  readonly name: string;
  readonly type: "gauge" | "counter";
  readonly help: string;
  readonly labels: readonly string[];
}

/** Every status-derived metric: its name, type, help and labels (the contract the alert rules and dashboards use). */
export const STATUS_METRICS = [
  { name: "llmsup_build_info", type: "gauge", labels: ["version", "node"], help: "Always 1: the llmsup version and the Node.js version it runs on." },
  { name: "llmsup_status_verdict", type: "gauge", labels: [], help: "The verdict `llmsup status` prints: 0 ok, 1 warning, 2 critical, 3 unknown (its exit code)." },
  // routes
  { name: "llmsup_route_on_fallback", type: "gauge", labels: ["route"], help: "1 while the route is served by a tier other than its first, or by none; 0 on its first tier or while settling at boot." },
  { name: "llmsup_route_fallback_since_timestamp_seconds", type: "gauge", labels: ["route"], help: "When the route left its first tier (unix time); no series while it is on it." },
  { name: "llmsup_route_settling", type: "gauge", labels: ["route"], help: "1 at boot while the route's first tier is still loading (no route alerts yet)." },
  { name: "llmsup_tier_degraded", type: "gauge", labels: ["route", "tier", "backend"], help: "1 while the tier's (backend, model) is DEGRADED by its rate of bad answers (loops, empty, garbage, refusals), else 0." },
  // backends
  { name: "llmsup_backend_state", type: "gauge", labels: ["backend", "kind", "state"], help: `Supervisor state of each backend, one series per state (1 current, 0 others): ${[...BACKEND_STATES, "remote"].join(", ")}.` },
  { name: "llmsup_backend_start_budget_used", type: "gauge", labels: ["backend"], help: "Failed starts counted in the current start-limit window (fatal at start_limit_burst)." },
  { name: "llmsup_backend_start_budget_limit", type: "gauge", labels: ["backend"], help: "The backend's start_limit_burst: failed starts within start_limit_interval that make it fatal." },
  { name: "llmsup_backend_held", type: "gauge", labels: ["backend"], help: "1 while the GPU remediation ladder holds the backend stopped (its GPU needs a reset or a reboot)." },
  { name: "llmsup_backend_drained", type: "gauge", labels: ["backend"], help: "1 while an operator has the backend out of rotation (`llmsup drain`)." },
  { name: "llmsup_backend_adopted", type: "gauge", labels: ["backend"], help: "1 when the running process was adopted from an earlier llmsup (no model reload)." },
  { name: "llmsup_backend_resident_memory_bytes", type: "gauge", labels: ["backend"], help: "Resident memory of the backend's whole process group; no series before a sample or for a remote backend." },
  { name: "llmsup_backend_cpu_usage_ratio", type: "gauge", labels: ["backend"], help: "CPU of the backend's process group over the last sampling interval, in cores (1 = one full core)." },
  { name: "llmsup_backend_health", type: "gauge", labels: ["backend"], help: "Backend health: 0 healthy, 1 degraded, 2 down." },
  // GPUs
  { name: "llmsup_gpu_info", type: "gauge", labels: ["gpu", "uuid", "name", "bus_id"], help: "Always 1: each GPU nvidia-smi reports, with its identity." },
  { name: "llmsup_gpu_monitor_up", type: "gauge", labels: [], help: "1 while nvidia-smi answers with plausible samples, 0 while it fails (or has not answered yet)." },
  { name: "llmsup_gpu_readings_age_seconds", type: "gauge", labels: ["gpu"], help: "Age of the GPU's readings below (the last plausible sample)." },
  { name: "llmsup_gpu_condition", type: "gauge", labels: ["gpu", "condition"], help: "Condition of each GPU, one series per condition (1 current, 0 others): ok, degraded, down, unknown." },
  { name: "llmsup_gpu_temperature_celsius", type: "gauge", labels: ["gpu"], help: "GPU core temperature." },
  { name: "llmsup_gpu_memory_temperature_celsius", type: "gauge", labels: ["gpu"], help: "GPU memory (HBM) temperature, where the GPU has a sensor." },
  { name: "llmsup_gpu_power_watts", type: "gauge", labels: ["gpu"], help: "GPU power draw." },
  { name: "llmsup_gpu_power_limit_watts", type: "gauge", labels: ["gpu"], help: "GPU power limit." },
  { name: "llmsup_gpu_utilization_ratio", type: "gauge", labels: ["gpu"], help: "GPU utilization (0..1)." },
  { name: "llmsup_gpu_memory_used_bytes", type: "gauge", labels: ["gpu"], help: "GPU memory in use." },
  { name: "llmsup_gpu_memory_total_bytes", type: "gauge", labels: ["gpu"], help: "GPU memory in all." },
  { name: "llmsup_gpu_clock_event_reason", type: "gauge", labels: ["gpu", "reason"], help: `Clock event (throttle) reasons: 1 for each active one, 0 for each known inactive one (${CLOCK_EVENT_REASONS.join(", ")}).` },
  { name: "llmsup_gpu_ecc_errors", type: "gauge", labels: ["gpu", "type"], help: "Volatile ECC error counts (reset by a GPU reset), by type: corrected, uncorrected." },
  { name: "llmsup_gpu_retired_pages_pending", type: "gauge", labels: ["gpu"], help: "1 when retired pages wait for a GPU reset." },
  { name: "llmsup_gpu_remapped_rows", type: "gauge", labels: ["gpu", "kind"], help: "Row remapping: correctable and uncorrectable remapped rows, pending and failure (1/0)." },
  { name: "llmsup_gpu_requires_reset", type: "gauge", labels: ["gpu"], help: "1 when nvidia-smi says the GPU requires a reset." },
  { name: "llmsup_gpu_reading_stale", type: "gauge", labels: ["gpu", "field"], help: "1 for each field whose last reading was implausible (the readings show the last good value); no series otherwise." },
  { name: "llmsup_gpu_faults", type: "gauge", labels: ["gpu", "kind", "severity"], help: 'Active GPU faults, by GPU ("all" for faults not on one GPU), kind and severity (degraded, down).' },
  { name: "llmsup_gpu_remediation_state", type: "gauge", labels: ["gpu", "state"], help: `Where the GPU remediation ladder stands on each GPU, one series per state (1 current, 0 others): ${REMEDIATION_PHASES.join(", ")}.` },
  // alerts
  { name: "llmsup_alerts_pending", type: "gauge", labels: ["channel"], help: "Alert messages waiting in the channel's outbox." },
  { name: "llmsup_alerts_delivered_total", type: "counter", labels: ["channel"], help: "Alert messages the channel delivered." },
  { name: "llmsup_alerts_failed_attempts_total", type: "counter", labels: ["channel"], help: "Failed delivery attempts of the channel." },
  { name: "llmsup_alerts_rejected_total", type: "counter", labels: ["channel"], help: "Alert messages the receiver refused for good." },
  { name: "llmsup_alerts_dropped", type: "gauge", labels: ["channel"], help: "Alert messages dropped for the outbox bound and not yet reported." },
  { name: "llmsup_alerts_delivery_failing", type: "gauge", labels: ["channel"], help: "1 while the channel's last delivery attempt failed (0 once one got through)." },
  { name: "llmsup_alerts_last_delivery_timestamp_seconds", type: "gauge", labels: ["channel"], help: "When the channel last delivered a message (unix time); no series before the first." },
] as const satisfies readonly MetricSpec[];

export type StatusMetricName = (typeof STATUS_METRICS)[number]["name"];

export interface StatusMetricsInput {
  /** The status `llmsup status` shows; undefined when it cannot be had (the verdict is then unknown). */
  readonly status: DaemonStatus | undefined;
  readonly now: number;
  /** The Node.js version (process.versions.node). */
  readonly node: string;
  readonly version: string;
}

const CONDITIONS = ["ok", "degraded", "down", "unknown"] as const;
const BACKEND_STATE_SET: readonly string[] = [...BACKEND_STATES, "remote"];
const HEALTH_VALUE: Readonly<Record<string, number>> = { healthy: 0, degraded: 1, down: 2 };
const MIB = 1024 * 1024;

const flag = (b: boolean) => (b ? 1 : 0);
const seconds = (iso: string) => Date.parse(iso) / 1000;

/** The samples of every status-derived metric (each name present, maybe with no series). Pure. */
export function statusSeries(i: StatusMetricsInput): ReadonlyMap<StatusMetricName, readonly Series[]> {
  const out = new Map<StatusMetricName, Series[]>(STATUS_METRICS.map((m) => [m.name, []]));
  const add = (name: StatusMetricName, labels: Labels, value: number | null | undefined) => {
    if (value === null || value === undefined || !Number.isFinite(value)) return;
    out.get(name)!.push({ labels, value });
  };
  const stateSet = (name: StatusMetricName, base: Labels, key: string, states: readonly string[], current: string) => {
    for (const st of states) add(name, { ...base, [key]: st }, flag(st === current));
  };
  add("llmsup_build_info", { version: i.version, node: i.node }, 1);
  const s = i.status;
  add("llmsup_status_verdict", {}, s ? s.summary.code : 3);
  if (!s) return out;

  for (const r of s.router.routes) {
    const route = { route: r.model };
    const settling = r.phase === "settling";
    add("llmsup_route_settling", route, flag(settling));
    add("llmsup_route_on_fallback", route, flag(!settling && r.serving_tier !== 0));
    if (r.degraded_since !== null) add("llmsup_route_fallback_since_timestamp_seconds", route, seconds(r.degraded_since));
    for (const t of r.tiers) add("llmsup_tier_degraded", { route: r.model, tier: String(t.index), backend: t.backend }, flag(t.quality?.state === "degraded"));
  }

  for (const b of s.backends) {
    const backend = { backend: b.name };
    stateSet("llmsup_backend_state", { backend: b.name, kind: b.kind }, "state", BACKEND_STATE_SET, b.state);
    add("llmsup_backend_health", backend, HEALTH_VALUE[b.health]);
    if (b.start_budget) {
      add("llmsup_backend_start_budget_used", backend, b.start_budget.used);
      add("llmsup_backend_start_budget_limit", backend, b.start_budget.burst);
    }
    add("llmsup_backend_held", backend, flag(b.held !== null));
    add("llmsup_backend_drained", backend, flag(b.drained !== null));
    add("llmsup_backend_adopted", backend, flag(b.adopted));
    add("llmsup_backend_resident_memory_bytes", backend, b.rss_bytes);
    add("llmsup_backend_cpu_usage_ratio", backend, b.cpu_pct === null ? null : b.cpu_pct / 100);
  }

  if (s.gpus && s.gpu_monitor) gpuSeries(s, i.now, add, stateSet);

  for (const c of alertChannels(s)) {
    const channel = { channel: c.channel };
    add("llmsup_alerts_pending", channel, c.pending);
    add("llmsup_alerts_delivered_total", channel, c.delivered);
    add("llmsup_alerts_failed_attempts_total", channel, c.failed_attempts);
    add("llmsup_alerts_rejected_total", channel, c.rejected);
    add("llmsup_alerts_dropped", channel, c.dropped);
    add("llmsup_alerts_delivery_failing", channel, flag(c.failing));
    if (c.last_delivered_at !== null) add("llmsup_alerts_last_delivery_timestamp_seconds", channel, seconds(c.last_delivered_at));
  }
  return out;
}

type Add = (name: StatusMetricName, labels: Labels, value: number | null | undefined) => void;
type StateSet = (name: StatusMetricName, base: Labels, key: string, states: readonly string[], current: string) => void;

function gpuSeries(s: DaemonStatus, now: number, add: Add, stateSet: StateSet): void {
  const report = s.gpus!;
  add("llmsup_gpu_monitor_up", {}, flag(s.gpu_monitor!.state === "sampling"));
  const ladder = new Map((s.remediation ?? []).map((r) => [r.gpu, r.state]));
  for (const g of report.gpus) {
    const gpu = { gpu: String(g.index) };
    add("llmsup_gpu_info", { ...gpu, uuid: g.uuid ?? "", name: g.name ?? "", bus_id: g.bus_id ?? "" }, 1);
    stateSet("llmsup_gpu_condition", gpu, "condition", CONDITIONS, g.condition);
    stateSet("llmsup_gpu_remediation_state", gpu, "state", REMEDIATION_PHASES, ladder.get(g.index) ?? "idle");
    add("llmsup_gpu_requires_reset", gpu, flag(g.requires_reset));
    for (const f of g.stale_fields) add("llmsup_gpu_reading_stale", { ...gpu, field: f.field }, 1);
    // Readings only once the GPU was sampled: no series rather than a made-up 0.
    if (g.sampled_at === null) continue;
    add("llmsup_gpu_readings_age_seconds", gpu, Math.max(0, (now - Date.parse(g.sampled_at)) / 1000));
    add("llmsup_gpu_temperature_celsius", gpu, g.temperature_c);
    add("llmsup_gpu_memory_temperature_celsius", gpu, g.memory_temperature_c);
    add("llmsup_gpu_power_watts", gpu, g.power_draw_w);
    add("llmsup_gpu_power_limit_watts", gpu, g.power_limit_w);
    add("llmsup_gpu_utilization_ratio", gpu, g.utilization_pct === null ? null : g.utilization_pct / 100);
    add("llmsup_gpu_memory_used_bytes", gpu, g.memory_used_mib === null ? null : g.memory_used_mib * MIB);
    add("llmsup_gpu_memory_total_bytes", gpu, g.memory_total_mib === null ? null : g.memory_total_mib * MIB);
    for (const reason of CLOCK_EVENT_REASONS) add("llmsup_gpu_clock_event_reason", { ...gpu, reason }, flag(g.clock_event_reasons.includes(reason)));
    add("llmsup_gpu_ecc_errors", { ...gpu, type: "corrected" }, g.ecc_corrected_volatile);
    add("llmsup_gpu_ecc_errors", { ...gpu, type: "uncorrected" }, g.ecc_uncorrected_volatile);
    add("llmsup_gpu_retired_pages_pending", gpu, g.retired_pages_pending === null ? null : flag(g.retired_pages_pending));
    const rows = g.remapped_rows;
    if (rows) {
      add("llmsup_gpu_remapped_rows", { ...gpu, kind: "correctable" }, rows.correctable);
      add("llmsup_gpu_remapped_rows", { ...gpu, kind: "uncorrectable" }, rows.uncorrectable);
      add("llmsup_gpu_remapped_rows", { ...gpu, kind: "pending" }, rows.pending === null ? null : flag(rows.pending));
      add("llmsup_gpu_remapped_rows", { ...gpu, kind: "failure" }, rows.failure === null ? null : flag(rows.failure));
    }
  }
  const faults = new Map<string, { labels: Labels; n: number }>();
  for (const f of report.faults) {
    const labels = { gpu: f.gpu === null ? "all" : String(f.gpu), kind: f.kind, severity: f.severity };
    const key = JSON.stringify(labels);
    const x = faults.get(key);
    if (x) x.n++;
    else faults.set(key, { labels, n: 1 });
  }
  for (const { labels, n } of faults.values()) add("llmsup_gpu_faults", labels, n);
}

/** The alert delivery channels, as status lists them (none while alerts are off). Pure. */
export function alertChannels(s: DaemonStatus): readonly AlertChannelStatus[] {
  return s.alerts?.enabled ? s.alerts.channels : [];
}
