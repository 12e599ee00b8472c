/**
 * What the HTTP channels (Alertmanager, webhooks) say about an alert besides
 * the mail text: a stable alert name and bounded labels per event, and the
 * facts of a message (state, summary, what, why, action), all taken from
 * describe.ts, the one describer. Pure.
 */
import { describe } from "./describe.ts";
import { classifyAlert, gpuLabel, type AlertEvent, type AlertKind, type AlertSeverity } from "./events.ts";
import type { PlannedMail } from "./policy.ts";

/** A stable CamelCase name per event kind: Alertmanager's `alertname`. A clear resolves the alert of the raise before it and never fires under its own name. */
export const ALERT_NAMES: Readonly<Record<AlertKind, string>> = {
  failover: "LlmsupFailover",
  recovery: "LlmsupRecovered",
  all_tiers_down: "LlmsupAllTiersDown",
  cache_serving: "LlmsupCacheServing",
  backend_fatal: "LlmsupBackendFatal",
  backend_restarting: "LlmsupBackendRestarting",
  backend_blocked: "LlmsupBackendBlocked",
  backend_recovered: "LlmsupBackendRecovered",
  gpu_fault: "LlmsupGpuFault",
  gpu_fault_cleared: "LlmsupGpuFaultCleared",
  gpu_reset: "LlmsupGpuResetting",
  gpu_reset_needed: "LlmsupGpuResetNeeded",
  gpu_reboot_required: "LlmsupGpuRebootRequired",
  gpu_recovered: "LlmsupGpuRecovered",
  disk_low: "LlmsupDiskLow",
  disk_ok: "LlmsupDiskOk",
  tier_degraded: "LlmsupTierDegraded",
  tier_quality_ok: "LlmsupTierQualityOk",
  daemon_started: "LlmsupDaemonStarted",
  daemon_stopping: "LlmsupDaemonStopping",
  reload_refused: "LlmsupReloadRefused",
};

/** Names of messages that are about no one event: the rate cap's summary, `llmsup test-alert`. */
export const HELD_ALERT_NAME = "LlmsupAlertsHeld";
export const TEST_ALERT_NAME = "LlmsupTestAlert";

/** The name of a message written past the policy, from its kind: digest → LlmsupDigest, drill → LlmsupDrill. */
export function messageAlertName(kind: string): string {
  return `Llmsup${kind.replace(/(^|_)([a-z0-9])/g, (_m, _s, c: string) => c.toUpperCase())}`;
}

export type AlertLabels = Readonly<Record<string, string>>;

/**
 * alertname, box, severity and what the event is about (route, backend, gpu, fault, path):
 * only the labels that apply, each from a bounded set (configured names, GPU indices, fault
 * kinds), never free text. Two subjects never share a label set.
 */
export function alertLabels(e: AlertEvent, box: string): AlertLabels {
  const about: Record<string, string> = {};
  switch (e.kind) {
    case "failover":
      about.route = e.route;
      about.backend = e.from.backend;
      break;
    case "recovery":
    case "all_tiers_down":
    case "cache_serving":
      about.route = e.route;
      break;
    case "backend_fatal":
    case "backend_restarting":
    case "backend_blocked":
    case "backend_recovered":
      about.backend = e.backend;
      break;
    case "gpu_fault":
    case "gpu_fault_cleared":
      about.gpu = gpuLabel(e.gpu);
      about.fault = e.fault;
      break;
    case "gpu_reset":
    case "gpu_reset_needed":
    case "gpu_reboot_required":
    case "gpu_recovered":
      about.gpu = String(e.gpu);
      break;
    case "disk_low":
    case "disk_ok":
      about.path = e.path;
      break;
    case "tier_degraded":
    case "tier_quality_ok":
      about.backend = e.backend;
      about.model = e.model;
      break;
    case "daemon_started":
    case "daemon_stopping":
    case "reload_refused":
      break;
  }
  return { alertname: ALERT_NAMES[e.kind], box, ...about, severity: classifyAlert(e).severity };
}

/** The same label set, as one comparable string. */
export function labelsKey(l: AlertLabels): string {
  return JSON.stringify(Object.entries(l).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** What an event says, as Alertmanager annotations and webhook fields: summary (the headline), what, why, action. */
export interface EventFacts {
  readonly summary: string;
  readonly what: string;
  readonly why: string | null;
  readonly action: string;
}

export function eventFacts(e: AlertEvent): EventFacts {
  const f = describe(e);
  const why = f.why ? (f.why.raw && f.why.raw !== f.why.reason ? `${f.why.reason}: ${f.why.raw}` : f.why.reason) : null;
  return { summary: f.headline, what: f.what, why, action: f.action };
}

/** firing: a subject went (or is) bad; resolved: it is fine again; notice: a one-off, or a message about no subject. */
export type MessageState = "firing" | "resolved" | "notice";

/** What a webhook says of one alert message besides its text. */
export interface MessageFacts {
  readonly state: MessageState;
  readonly severity: AlertSeverity;
  readonly labels: AlertLabels;
  readonly summary: string;
  readonly what: string;
  readonly why: string | null;
  readonly action: string | null;
}

/**
 * The facts of a planned mail. `raised`: for a clear, the subject's last raise before it
 * (its labels are the alert being resolved); `summary`: the mail's subject line without the
 * "[llmsup] host: " prefix.
 */
export function plannedFacts(m: PlannedMail, raised: AlertEvent | undefined, summary: string, box: string): MessageFacts {
  if (m.type === "event" && m.event) {
    const phase = classifyAlert(m.event).phase;
    const f = eventFacts(m.event);
    const labels = alertLabels(phase === "clear" && raised ? raised : m.event, box);
    return { state: phase === "raise" ? "firing" : phase === "clear" ? "resolved" : "notice", severity: m.severity, labels, summary, what: f.what, why: f.why, action: f.action };
  }
  const latest = m.current?.latest;
  if (m.type === "summary" && latest) {
    const phase = classifyAlert(latest).phase;
    const f = eventFacts(latest);
    const state: MessageState = phase === "notice" ? "notice" : m.current?.bad ? "firing" : "resolved";
    const labels = alertLabels(phase === "clear" && raised ? raised : latest, box);
    return { state, severity: m.severity, labels, summary, what: summary, why: null, action: m.current?.bad ? f.action : null };
  }
  return { state: "notice", severity: m.severity, labels: { alertname: HELD_ALERT_NAME, box, severity: m.severity }, summary, what: summary, why: null, action: null };
}
