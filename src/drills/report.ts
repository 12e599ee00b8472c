/** A drill's report: what an operator wants to know after rehearsing a failure. Pure. */
import { formatDuration } from "../config/units.ts";
import { FAULT_KINDS } from "./faults.ts";
import type { RouteCounters } from "./counters.ts";

/** Drills that act on the first tier's backend (its health, or its process). */
export const PROCESS_SCENARIOS = ["primary-outage", "backend-crash", "backend-hang"] as const;
/** Every drill: the process ones, then the router faults (faults.ts). */
export const DRILL_SCENARIOS = [...PROCESS_SCENARIOS, ...FAULT_KINDS] as const;
export type DrillScenario = (typeof DRILL_SCENARIOS)[number];

export interface DrillReport {
  readonly id: string;
  readonly scenario: DrillScenario;
  readonly route: string;
  readonly backend: string;
  readonly started_at: string;
  /** When the failure was injected; the three times below count from here (recovery from the failure's end). */
  readonly injected_at: string;
  /** How long the failure was held. */
  readonly duration_ms: number;
  readonly requests: number;
  /** Requests the client saw fail (anything but a 200 with a complete answer). */
  readonly client_errors: number;
  /** Requests answered by a fallback tier. */
  readonly fallback_answers: number;
  /** Complete answers marked degraded (a fallback tier's, or a stream continued on one). */
  readonly degraded_answers: number;
  /** From the failure to the first evidence llmsup had of it: backend health not healthy, the process exited or degraded, a breaker opened, a request failed on tier 0, the route moved. */
  readonly detection_ms: number | null;
  /** From the failure to the route's transition off its first tier (router.route.fallback, or router.route.down); null: the route never left tier 0. */
  readonly failover_ms: number | null;
  /** From the end of the failure (for a crash: the kill) to the route's transition back to tier 0 (router.route.recovered); null: it did not come back in time. */
  readonly recovery_ms: number | null;
  /** Worst latency a client saw during the drill. */
  readonly worst_latency_ms: number;
  readonly alert: { readonly raised: boolean; readonly delivered: boolean | null };
  /** From the failure to the first mail delivered after the drill's alert was raised; null: none (or alerts are off). */
  readonly alert_delivered_ms: number | null;
  /** From the failure to its end (the fault lifted, the hold over; a crash: 0); null: it never ended cleanly. */
  readonly ended_ms: number | null;
  /** The failure was ended early (`llmsup drill stop`, or the daemon stopping). */
  readonly stopped: boolean;
  /** Router faults: how many attempts and checks the fault hit. */
  readonly faults_injected?: number;
  /** The router's counters for the route over the drill (every client's requests, not only the drill's). */
  readonly router?: RouteCounters;
  readonly verdict: "pass" | "fail";
  /** Why the verdict is a fail, when it is. */
  readonly problems: readonly string[];
  readonly timeline: readonly { readonly at_ms: number; readonly what: string }[];
}

/**
 * Answers the next tier gave in a race it won while the route stayed on its first tier: a slow (or
 * stopped) tier 0 whose every late answer was hedged. The failure was handled without a failover, so
 * none is expected (nor its alert): a slow tier is not a failed one. 0 when the router's counters are unknown.
 */
export function hedgedAnswers(r: Pick<DrillReport, "failover_ms" | "client_errors" | "router">): number {
  return r.failover_ms === null && r.client_errors === 0 ? (r.router?.hedges_won ?? 0) : 0;
}

export function verdictOf(r: Omit<DrillReport, "verdict" | "problems">): { verdict: "pass" | "fail"; problems: string[] } {
  const problems: string[] = [];
  if (r.client_errors > 0) problems.push(`${r.client_errors} of ${r.requests} requests failed for the client`);
  if (hedgedAnswers(r) > 0) return { verdict: problems.length ? "fail" : "pass", problems };
  if (r.detection_ms === null) problems.push("the failure was never detected");
  if (r.failover_ms === null) {
    // No client error either: the failure was ridden out (answers came late), which a failure shorter than the tier's timeouts is.
    const riddenOut = r.client_errors === 0 && r.requests > 0 ? `; clients waited up to ${formatDuration(r.worst_latency_ms)} instead: a failure held ${formatDuration(r.duration_ms)} may be shorter than the tier's ttft_timeout — hold it longer (--duration) or lower ttft_timeout or hedge_after` : "";
    problems.push(`the route never left its first tier: no failover transition (router.route.fallback or router.route.down) after the failure${riddenOut}`);
  }
  else if (r.recovery_ms === null) problems.push("the route did not come back to its first tier: no router.route.recovered transition after the failure ended");
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
    `  failover          ${hedgedAnswers(r) > 0 ? `none needed: ${r.router!.hedges_won} late answers hedged by the next tier, the route stayed on tier 0` : ms(r.failover_ms)}`,
    `  recovery          ${ms(r.recovery_ms)}`,
    `  requests          ${r.requests} (${r.fallback_answers} from a fallback tier, ${r.degraded_answers} degraded)`,
    `  client errors     ${r.client_errors}`,
    `  worst latency     ${formatDuration(r.worst_latency_ms)}`,
    `  alert             ${r.alert.raised ? (r.alert.delivered === null ? "raised (alerts are off)" : r.alert.delivered ? `raised and delivered${r.alert_delivered_ms !== null ? ` (+${formatDuration(r.alert_delivered_ms)})` : ""}` : "raised, not delivered yet") : "not raised"}`,
  ];
  if (r.faults_injected !== undefined) lines.push(`  faults injected   ${r.faults_injected}`);
  if (r.router) lines.push(`  router counters   ${r.router.primary_answers} from tier 0, ${r.router.fallback_answers} from fallbacks, ${r.router.unanswered} unanswered, ${r.router.failovers} failovers, ${r.router.hedges_won} hedges won`);
  if (r.stopped) lines.push("  stopped early     yes");
  if (r.problems.length) lines.push("", "Problems:", ...r.problems.map((p) => `  - ${p}`));
  lines.push("", "Timeline:", ...r.timeline.map((t) => `  +${formatDuration(t.at_ms).padEnd(8)} ${t.what}`));
  return `${lines.join("\n")}\n`;
}
