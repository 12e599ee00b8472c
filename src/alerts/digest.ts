/**
 * The daily digest: a day of failovers, restarts and GPU faults, and how long
 * each route spent on each tier, as one plain-text mail. Pure.
 */
import { formatDuration } from "../config/units.ts";
import { describe } from "./describe.ts";
import type { AlertEvent } from "./events.ts";
import type { RenderedMail } from "./render.ts";
import { formatClock, formatWhen, plural, quote, wrap } from "./text.ts";

export interface DigestRestart {
  readonly backend: string;
  readonly at: number;
  /** The exit's classification (oom, wedged, killed, …). */
  readonly exitClass: string;
  readonly reason?: string;
}

export interface TimeOnTier {
  readonly route: string;
  /** Time each tier answered the route, in tier order. */
  readonly tiers: readonly { readonly index: number; readonly backend: string; readonly ms: number }[];
  /** Time no tier could answer. */
  readonly downMs?: number;
}

export interface DigestInput {
  readonly host: string;
  /** The period covered (normally the last 24 h). */
  readonly from: number;
  readonly to: number;
  /** Alert events of the period, in any order. */
  readonly events: readonly AlertEvent[];
  readonly restarts?: readonly DigestRestart[];
  readonly timeOnTier?: readonly TimeOnTier[];
  /** The alert outbox, as Alerter.status() gives it. */
  readonly delivery?: { readonly delivered: number; readonly pending: number; readonly lastError?: string };
  readonly timeZone?: string;
}

/** Lines per list; the rest are counted. */
export const DIGEST_LIST_MAX = 20;

function list(title: string, items: readonly string[]): string[] {
  if (items.length === 0) return [];
  const shown = items.slice(0, DIGEST_LIST_MAX).map((l) => quote(l));
  if (items.length > DIGEST_LIST_MAX) shown.push(`  and ${items.length - DIGEST_LIST_MAX} more`);
  return ["", `${title}:`, ...shown];
}

function percent(ms: number, total: number): string {
  return total > 0 ? `${((100 * ms) / total).toFixed(1)}%` : "-";
}

export function renderDigest(d: DigestInput): RenderedMail {
  const tz = d.timeZone;
  const events = [...d.events].filter((e) => e.at >= d.from && e.at <= d.to).sort((a, b) => a.at - b.at);
  const of = <K extends AlertEvent["kind"]>(kind: K) => events.filter((e): e is Extract<AlertEvent, { kind: K }> => e.kind === kind);
  const failovers = of("failover");
  const recoveries = of("recovery");
  const allDown = of("all_tiers_down");
  const fatal = of("backend_fatal");
  const faults = of("gpu_fault");
  const cleared = of("gpu_fault_cleared");
  const restarts = [...(d.restarts ?? [])].filter((r) => r.at >= d.from && r.at <= d.to).sort((a, b) => a.at - b.at);
  const gpuEvents = events.filter((e) => e.kind === "gpu_fault" || e.kind === "gpu_fault_cleared");
  const others = events.filter((e) => !["failover", "recovery", "gpu_fault", "gpu_fault_cleared"].includes(e.kind));

  const headline = [
    failovers.length ? plural(failovers.length, "failover") : undefined,
    restarts.length ? plural(restarts.length, "restart") : undefined,
    faults.length ? plural(faults.length, "GPU fault") : undefined,
    fatal.length ? `${fatal.length} FATAL` : undefined,
    allDown.length ? `${allDown.length}x ALL TIERS DOWN` : undefined,
  ].filter((s): s is string => s !== undefined);

  const byBackend = new Map<string, number>();
  for (const r of restarts) byBackend.set(r.backend, (byBackend.get(r.backend) ?? 0) + 1);
  const routes = new Set(failovers.map((f) => f.route));

  const lines: string[] = wrap(`Last ${formatDuration(d.to - d.from)} on ${d.host}: ${formatWhen(d.from, tz)} to ${formatWhen(d.to, tz)}.`);
  lines.push("", "Summary:");
  lines.push(`  ${plural(failovers.length, "failover")}${routes.size ? ` on ${plural(routes.size, "route")}` : ""}, ${plural(recoveries.length, "recovery", "recoveries")}`);
  lines.push(`  ${plural(restarts.length, "backend restart")}${byBackend.size ? ` (${[...byBackend].map(([b, n]) => `${b} ${n}`).join(", ")})` : ""}`);
  if (fatal.length) lines.push(`  ${plural(fatal.length, "backend")} gave up (FATAL): ${[...new Set(fatal.map((f) => f.backend))].join(", ")}`);
  lines.push(`  ${plural(faults.length, "GPU fault")} raised, ${cleared.length} cleared`);
  if (allDown.length) lines.push(`  all tiers down ${plural(allDown.length, "time")}`);

  for (const r of d.timeOnTier ?? []) {
    const total = r.tiers.reduce((n, t) => n + t.ms, 0) + (r.downMs ?? 0);
    lines.push("", `Time on tier, ${r.route}:`);
    for (const t of r.tiers) lines.push(`  tier ${t.index} (${t.backend}): ${formatDuration(t.ms)}, ${percent(t.ms, total)}`);
    if (r.downMs) lines.push(`  no tier: ${formatDuration(r.downMs)}, ${percent(r.downMs, total)}`);
  }

  const at = (ms: number) => formatClock(ms, tz);
  lines.push(...list("Failovers", failovers.map((f) => `${at(f.at)} ${f.route}: tier ${f.from.index} -> ${f.to.index} (${f.to.backend}), ${f.reasonClass}`)));
  lines.push(...list("Restarts", restarts.map((r) => `${at(r.at)} ${r.backend}: ${r.exitClass}${r.reason ? `, ${r.reason}` : ""}`)));
  lines.push(...list("GPU faults", gpuEvents.map((e) => `${at(e.at)} ${describe(e).headline}`)));
  lines.push(...list("Other alerts", others.map((e) => `${at(e.at)} ${describe(e).headline}`)));
  if (d.delivery) {
    lines.push("", "Alert mail:", `  ${d.delivery.delivered} delivered, ${d.delivery.pending} waiting in the outbox`);
    if (d.delivery.lastError) lines.push(quote(`last error: ${d.delivery.lastError}`));
  }
  lines.push("", "-- ", `llmsup on ${d.host}, daily digest`);
  return {
    subject: `[llmsup] ${d.host}: daily digest, ${headline.length ? headline.join(", ") : "all quiet"}`,
    text: `${lines.join("\n")}\n`,
  };
}
