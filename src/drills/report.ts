/** A drill's report: what an operator wants to know after rehearsing a failure. Pure. */
import { formatDuration } from "../config/units.ts";

export const DRILL_SCENARIOS = ["primary-outage", "backend-crash", "backend-hang"] as const;
export type DrillScenario = (typeof DRILL_SCENARIOS)[number];

export interface DrillReport {
  readonly id: string;
  readonly scenario: DrillScenario;
  readonly route: string;
  readonly backend: string;
  readonly started_at: string;
  /** How long the failure was held. */
  readonly duration_ms: number;
  readonly requests: number;
  /** Requests the client saw fail (anything but a 200 with a complete answer). */
  readonly client_errors: number;
  /** Requests answered by a fallback tier. */
  readonly fallback_answers: number;
  /** From the failure to llmsup noticing it (tier out of service, or the process gone). */
  readonly detection_ms: number | null;
  /** From the failure to the first answer from a fallback tier. */
  readonly failover_ms: number | null;
  /** From the end of the failure to answers from the first tier again. */
  readonly recovery_ms: number | null;
  /** Worst latency a client saw during the drill. */
  readonly worst_latency_ms: number;
  readonly alert: { readonly raised: boolean; readonly delivered: boolean | null };
  readonly verdict: "pass" | "fail";
  /** Why the verdict is a fail, when it is. */
  readonly problems: readonly string[];
  readonly timeline: readonly { readonly at_ms: number; readonly what: string }[];
}

export function verdictOf(r: Omit<DrillReport, "verdict" | "problems">): { verdict: "pass" | "fail"; problems: string[] } {
  const problems: string[] = [];
  if (r.client_errors > 0) problems.push(`${r.client_errors} of ${r.requests} requests failed for the client`);
  if (r.detection_ms === null) problems.push("the failure was never detected");
  if (r.recovery_ms === null) problems.push("the route did not come back to its first tier");
  if (!r.alert.raised) problems.push("no failover alert was raised");
  return { verdict: problems.length ? "fail" : "pass", problems };
}

const ms = (v: number | null) => (v === null ? "never" : formatDuration(v));

/** The report as a table for a terminal and a mail. */
export function renderDrill(r: DrillReport): string {
  const lines = [
    `Drill ${r.scenario} on ${r.route} (tier 0: ${r.backend}) — ${r.verdict.toUpperCase()}`,
    `  started           ${r.started_at}, failure held ${formatDuration(r.duration_ms)}`,
    `  detection         ${ms(r.detection_ms)}`,
    `  failover          ${ms(r.failover_ms)}`,
    `  recovery          ${ms(r.recovery_ms)}`,
    `  requests          ${r.requests} (${r.fallback_answers} from a fallback tier)`,
    `  client errors     ${r.client_errors}`,
    `  worst latency     ${formatDuration(r.worst_latency_ms)}`,
    `  alert             ${r.alert.raised ? (r.alert.delivered === null ? "raised (alerts are off)" : r.alert.delivered ? "raised and delivered" : "raised, not delivered yet") : "not raised"}`,
  ];
  if (r.problems.length) lines.push("", "Problems:", ...r.problems.map((p) => `  - ${p}`));
  lines.push("", "Timeline:", ...r.timeline.map((t) => `  +${formatDuration(t.at_ms).padEnd(8)} ${t.what}`));
  return `${lines.join("\n")}\n`;
}
