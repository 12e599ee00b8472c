/**
 * A game day's scorecard: one row per scenario run on a route, from the
 * drills' reports (their times are the route's own transitions, the alert
 * pipeline's deliveries and the router's counters). Pure: the JSON shape,
 * the text a terminal and the mail show, and a self-contained HTML page.
 */
import { formatDuration } from "../config/units.ts";
import { hedgedAnswers, type DrillReport, type DrillScenario } from "./report.ts";

/** A moment of a scenario: milliseconds from the failure's injection, and the wall-clock time. */
export interface Moment {
  readonly ms: number;
  readonly at: string;
}

export interface ScenarioScore {
  readonly scenario: DrillScenario;
  /** pass / fail: the drill's verdict; refused: it could not start (why in `reason`); error: it broke; skipped: the game day was stopped first. */
  readonly outcome: "pass" | "fail" | "refused" | "error" | "skipped";
  readonly reason?: string;
  readonly drill_id?: string;
  readonly injected_at?: string;
  readonly detected: Moment | null;
  readonly failed_over: Moment | null;
  /** Late answers of tier 0 that the next tier answered in a hedge it won, while the route stayed on tier 0 (then no failover is needed). */
  readonly hedged_answers: number;
  /** Requests a client saw fail: the game day's own requests (without traffic: the router's count of requests no tier answered). */
  readonly client_errors: number;
  /** Complete answers that were degraded: from a fallback tier or continued on one (without traffic: the router's fallback and cache answers). */
  readonly answers_degraded: number;
  readonly alert: { readonly raised: boolean; readonly delivered: boolean | null; readonly when: Moment | null };
  readonly back_on_primary: Moment | null;
  readonly requests: number;
  readonly faults_injected?: number;
  readonly problems: readonly string[];
  /** The drill's full report (timeline included). */
  readonly report?: DrillReport;
}

export interface Scorecard {
  readonly id: string;
  readonly host: string;
  readonly route: string;
  readonly started_at: string;
  readonly finished_at: string;
  /** How long each scenario's failure was held. */
  readonly duration_ms: number;
  /** Whether the game day sent its own requests. */
  readonly traffic: boolean;
  readonly stopped: boolean;
  readonly verdict: "pass" | "fail";
  readonly summary: { readonly passed: number; readonly failed: number; readonly refused: number; readonly errors: number; readonly skipped: number };
  readonly scenarios: readonly ScenarioScore[];
}

/** What did not give a report. */
export type NoReport = { readonly scenario: DrillScenario; readonly outcome: "refused" | "error" | "skipped"; readonly reason: string };

function moment(injected: number, ms: number | null): Moment | null {
  return ms === null ? null : { ms, at: new Date(injected + ms).toISOString() };
}

/** One scenario's row from its drill's report; `traffic` false reads the client's view from the router's counters. */
export function scoreOf(r: DrillReport, traffic: boolean): ScenarioScore {
  const injected = Date.parse(r.injected_at);
  const back = r.recovery_ms !== null && r.ended_ms !== null ? r.ended_ms + r.recovery_ms : null;
  return {
    scenario: r.scenario,
    outcome: r.verdict,
    drill_id: r.id,
    injected_at: r.injected_at,
    detected: moment(injected, r.detection_ms),
    failed_over: moment(injected, r.failover_ms),
    hedged_answers: hedgedAnswers(r),
    client_errors: traffic || !r.router ? r.client_errors : r.router.unanswered,
    answers_degraded: traffic || !r.router ? r.degraded_answers : r.router.fallback_answers + r.router.cache_answers,
    alert: { raised: r.alert.raised, delivered: r.alert.delivered, when: moment(injected, r.alert_delivered_ms) },
    back_on_primary: moment(injected, back),
    requests: r.requests,
    ...(r.faults_injected !== undefined ? { faults_injected: r.faults_injected } : {}),
    problems: r.problems,
    report: r,
  };
}

function noScore(n: NoReport): ScenarioScore {
  return { scenario: n.scenario, outcome: n.outcome, reason: n.reason, detected: null, failed_over: null, hedged_answers: 0, client_errors: 0, answers_degraded: 0, alert: { raised: false, delivered: null, when: null }, back_on_primary: null, requests: 0, problems: [n.reason] };
}

export function scorecardOf(
  head: { id: string; host: string; route: string; startedAt: number; finishedAt: number; durationMs: number; traffic: boolean; stopped: boolean },
  runs: readonly (DrillReport | NoReport)[],
): Scorecard {
  const scenarios = runs.map((x) => ("verdict" in x ? scoreOf(x, head.traffic) : noScore(x)));
  const count = (o: ScenarioScore["outcome"]) => scenarios.filter((s) => s.outcome === o).length;
  const summary = { passed: count("pass"), failed: count("fail"), refused: count("refused"), errors: count("error"), skipped: count("skipped") };
  return {
    id: head.id,
    host: head.host,
    route: head.route,
    started_at: new Date(head.startedAt).toISOString(),
    finished_at: new Date(head.finishedAt).toISOString(),
    duration_ms: head.durationMs,
    traffic: head.traffic,
    stopped: head.stopped,
    verdict: summary.passed === scenarios.length && scenarios.length > 0 ? "pass" : "fail",
    summary,
    scenarios,
  };
}

const when = (m: Moment | null) => (m === null ? "never" : `+${formatDuration(m.ms)}`);
const alertCell = (s: ScenarioScore) => (!s.alert.raised ? "not raised" : s.alert.delivered === null ? "raised (mail off)" : s.alert.delivered ? `yes ${when(s.alert.when)}` : "no");

const COLUMNS = ["scenario", "result", "detected", "failed over", "client errors", "degraded", "alert delivered", "back on primary"] as const;

/** "failed over": when, or that hedging answered the late requests and no failover was needed. */
function failedOverCell(s: ScenarioScore): string {
  return s.hedged_answers > 0 ? `hedged ×${s.hedged_answers}` : when(s.failed_over);
}

function cells(s: ScenarioScore): string[] {
  return [s.scenario, s.outcome.toUpperCase(), when(s.detected), failedOverCell(s), String(s.client_errors), String(s.answers_degraded), alertCell(s), when(s.back_on_primary)];
}

/** The scorecard as a table for a terminal and the mail. */
export function renderScorecard(c: Scorecard): string {
  const rows = [COLUMNS as readonly string[], ...c.scenarios.map(cells)];
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: readonly string[]) => r.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
  const { passed, failed, refused, errors, skipped } = c.summary;
  const out = [
    `Game day on ${c.route} (${c.host}) — ${c.verdict.toUpperCase()}: ${passed} passed, ${failed} failed, ${refused} refused${errors ? `, ${errors} broke` : ""}${skipped ? `, ${skipped} skipped` : ""}${c.stopped ? " (stopped early)" : ""}`,
    `  ${c.started_at} → ${c.finished_at}; each failure held ${formatDuration(c.duration_ms)}; ${c.traffic ? "with its own requests" : "real traffic only"}; times count from each failure's injection`,
    "",
    line(rows[0]!),
    ...rows.slice(1).map(line),
  ];
  const notes = c.scenarios.filter((s) => s.problems.length > 0);
  if (notes.length) out.push("", "Problems:", ...notes.flatMap((s) => s.problems.map((p) => `  - ${s.scenario}: ${p}`)));
  return `${out.join("\n")}\n`;
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** The scorecard as one self-contained HTML page: inline style, no script, no external asset. */
export function scorecardHtml(c: Scorecard): string {
  const row = (s: ScenarioScore) =>
    `<tr class="${s.outcome}">${cells(s)
      .map((v) => `<td>${esc(v)}</td>`)
      .join("")}</tr>`;
  const problems = c.scenarios.flatMap((s) => s.problems.map((p) => `<li><b>${esc(s.scenario)}</b>: ${esc(p)}</li>`));
  const timelines = c.scenarios
    .filter((s) => s.report)
    .map((s) => `<details><summary>${esc(s.scenario)} — drill ${esc(s.report!.id)}</summary><pre>${esc(s.report!.timeline.map((t) => `+${formatDuration(t.at_ms)}  ${t.what}`).join("\n"))}</pre></details>`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>llmsup game day ${esc(c.route)} ${esc(c.started_at)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#eee}tr.pass td:nth-child(2){color:#070}tr.fail td:nth-child(2),tr.error td:nth-child(2){color:#b00}
tr.refused td:nth-child(2),tr.skipped td:nth-child(2){color:#850}pre{background:#f6f6f6;padding:.5em}
.verdict-pass{color:#070}.verdict-fail{color:#b00}
</style></head><body>
<h1>Game day on ${esc(c.route)} <span class="verdict-${c.verdict}">${c.verdict.toUpperCase()}</span></h1>
<p>${esc(c.host)} · ${esc(c.started_at)} → ${esc(c.finished_at)} · each failure held ${esc(formatDuration(c.duration_ms))} · ${c.traffic ? "with its own requests" : "real traffic only"}${c.stopped ? " · stopped early" : ""} · times count from each failure's injection</p>
<p>${c.summary.passed} passed, ${c.summary.failed} failed, ${c.summary.refused} refused, ${c.summary.errors} broke, ${c.summary.skipped} skipped</p>
<table><thead><tr>${COLUMNS.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead>
<tbody>${c.scenarios.map(row).join("\n")}</tbody></table>
${problems.length ? `<h2>Problems</h2><ul>${problems.join("")}</ul>` : ""}
<h2>Timelines</h2>
${timelines.join("\n")}
</body></html>
`;
}
