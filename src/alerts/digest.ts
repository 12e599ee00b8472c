/**
 * The daily digest: a day of failovers, restarts, GPU faults and drains, and
 * how long each route spent on each tier, as one plain-text mail. Pure.
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
  /** Time the route was on tier `index` (-1: none) because an operator had `backend` drained: maintenance, not an outage. */
  readonly drained?: readonly { readonly backend: string; readonly index: number; readonly ms: number }[];
}

/** A backend an operator had out of rotation (`llmsup drain`) during the period. */
export interface DigestDrain {
  readonly backend: string;
  readonly by: string;
  readonly since: number;
  /** When it was undrained; absent while it still is. */
  readonly until?: number;
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
  readonly drains?: readonly DigestDrain[];
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

/**
 * The drains overlapping [from, to], oldest first, from the event history's
 * "drain" and "undrain" entries (their summaries name who drained). An
 * undrain whose drain is no longer in the history was drained since its
 * summary's "after Ns". Pure.
 */
export function drainsOf(history: readonly { readonly at: number; readonly kind: string; readonly backend?: string; readonly summary: string }[], from: number, to: number): DigestDrain[] {
  const open = new Map<string, DigestDrain>();
  const out: DigestDrain[] = [];
  for (const h of [...history].sort((a, b) => a.at - b.at)) {
    if (h.backend === undefined || h.at > to) continue;
    if (h.kind === "drain" && !open.has(h.backend)) {
      open.set(h.backend, { backend: h.backend, by: / drained by (.+?): /.exec(h.summary)?.[1] ?? "an operator", since: h.at });
    } else if (h.kind === "undrain") {
      const after = Number(/ after (\d+)s/.exec(h.summary)?.[1] ?? 0);
      const d = open.get(h.backend) ?? { backend: h.backend, by: "an operator", since: h.at - after * 1000 };
      open.delete(h.backend);
      if (h.at >= from) out.push({ ...d, until: h.at });
    }
  }
  return [...out, ...open.values()].sort((a, b) => a.since - b.since);
}

/**
 * Time on tier with the drains in it. The router skips a drained tier
 * without a failover, so no alert marks the move and `base` (time on tier
 * from the alerts, over any stretch of the period) counts a drained tier as
 * serving: over each stretch in which the same backends were drained, that
 * time goes to the next tier that was not drained, listed as `drained`
 * (maintenance), not as the drained tier's. Pure.
 */
export function withDrains(base: (from: number, to: number) => readonly TimeOnTier[], drains: readonly DigestDrain[], from: number, to: number): TimeOnTier[] {
  const cuts = [...new Set([from, to, ...drains.flatMap((d) => [d.since, d.until ?? to]).filter((t) => t > from && t < to)])].sort((a, b) => a - b);
  const sums = new Map<string, { tiers: Map<number, number>; backends: Map<number, string>; downMs: number; drained: Map<string, { backend: string; index: number; ms: number }> }>();
  for (let i = 0; i + 1 < cuts.length; i++) {
    const [a, b] = [cuts[i]!, cuts[i + 1]!];
    const mid = (a + b) / 2;
    const out = new Set(drains.filter((d) => d.since <= mid && (d.until ?? Infinity) > mid).map((d) => d.backend));
    for (const r of base(a, b)) {
      let sum = sums.get(r.route);
      if (!sum) sums.set(r.route, (sum = { tiers: new Map(), backends: new Map(), downMs: 0, drained: new Map() }));
      sum.downMs += r.downMs ?? 0;
      for (const t of r.tiers) {
        sum.backends.set(t.index, t.backend);
        if (!out.has(t.backend)) {
          sum.tiers.set(t.index, (sum.tiers.get(t.index) ?? 0) + t.ms);
          continue;
        }
        if (t.ms === 0) continue;
        const next = r.tiers.find((x) => x.index > t.index && !out.has(x.backend))?.index ?? -1;
        const key = `${t.backend}\u0000${next}`;
        const d = sum.drained.get(key) ?? { backend: t.backend, index: next, ms: 0 };
        sum.drained.set(key, { ...d, ms: d.ms + t.ms });
      }
    }
  }
  return [...sums].map(([route, s]) => ({
    route,
    tiers: [...s.backends].map(([index, backend]) => ({ index, backend, ms: s.tiers.get(index) ?? 0 })),
    downMs: s.downMs,
    ...(s.drained.size ? { drained: [...s.drained.values()] } : {}),
  }));
}

/**
 * A recovery that only ends a drain: the route's first one after the undrain
 * of a backend it spent drained time off, with no failover of the route since
 * the drain began. It is no recovery from an outage.
 */
function endsDrain(rec: Extract<AlertEvent, { kind: "recovery" }>, events: readonly AlertEvent[], drains: readonly DigestDrain[], timeOnTier: readonly TimeOnTier[]): boolean {
  const off = new Set(timeOnTier.find((r) => r.route === rec.route)?.drained?.map((d) => d.backend));
  return drains.some(
    (d) =>
      d.until !== undefined &&
      d.until <= rec.at &&
      off.has(d.backend) &&
      !events.some((e) => e !== rec && "route" in e && e.route === rec.route && (e.kind === "failover" || e.kind === "all_tiers_down" || e.kind === "recovery") && e.at >= d.since && e.at <= rec.at),
  );
}

export function renderDigest(d: DigestInput): RenderedMail {
  const tz = d.timeZone;
  const events = [...d.events].filter((e) => e.at >= d.from && e.at <= d.to).sort((a, b) => a.at - b.at);
  const of = <K extends AlertEvent["kind"]>(kind: K) => events.filter((e): e is Extract<AlertEvent, { kind: K }> => e.kind === kind);
  const failovers = of("failover");
  const drains = [...(d.drains ?? [])].filter((x) => x.since <= d.to && (x.until ?? Infinity) >= d.from).sort((a, b) => a.since - b.since);
  const recoveries = of("recovery").filter((e) => !endsDrain(e, events, drains, d.timeOnTier ?? []));
  const allDown = of("all_tiers_down");
  const fatal = of("backend_fatal");
  const faults = of("gpu_fault");
  const cleared = of("gpu_fault_cleared");
  const restarts = [...(d.restarts ?? [])].filter((r) => r.at >= d.from && r.at <= d.to).sort((a, b) => a.at - b.at);
  const gpuEvents = events.filter((e) => e.kind === "gpu_fault" || e.kind === "gpu_fault_cleared");
  const others = events.filter((e) => !["failover", "recovery", "gpu_fault", "gpu_fault_cleared"].includes(e.kind));
  const stillDrained = [...new Set(drains.filter((x) => x.until === undefined).map((x) => x.backend))];

  const headline = [
    failovers.length ? plural(failovers.length, "failover") : undefined,
    restarts.length ? plural(restarts.length, "restart") : undefined,
    faults.length ? plural(faults.length, "GPU fault") : undefined,
    fatal.length ? `${fatal.length} FATAL` : undefined,
    allDown.length ? `${allDown.length}x ALL TIERS DOWN` : undefined,
    drains.length ? plural(drains.length, "drain") : undefined,
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
  if (drains.length) lines.push(`  ${plural(drains.length, "drain")} (maintenance): ${[...new Set(drains.map((x) => x.backend))].join(", ")}${stillDrained.length ? `; still drained: ${stillDrained.join(", ")}` : ""}`);

  for (const r of d.timeOnTier ?? []) {
    const total = r.tiers.reduce((n, t) => n + t.ms, 0) + (r.downMs ?? 0) + (r.drained ?? []).reduce((n, x) => n + x.ms, 0);
    lines.push("", `Time on tier, ${r.route}:`);
    for (const t of r.tiers) lines.push(`  tier ${t.index} (${t.backend}): ${formatDuration(t.ms)}, ${percent(t.ms, total)}`);
    if (r.downMs) lines.push(`  no tier: ${formatDuration(r.downMs)}, ${percent(r.downMs, total)}`);
    for (const x of r.drained ?? []) {
      const on = x.index < 0 ? "no tier" : `tier ${x.index} (${r.tiers.find((t) => t.index === x.index)?.backend ?? "?"})`;
      lines.push(`  ${on} while ${x.backend} drained: ${formatDuration(x.ms)}, ${percent(x.ms, total)}`);
    }
  }

  const at = (ms: number) => formatClock(ms, tz);
  lines.push(...list("Failovers", failovers.map((f) => `${at(f.at)} ${f.route}: tier ${f.from.index} -> ${f.to.index} (${f.to.backend}), ${f.reasonClass}`)));
  const when = (ms: number) => (ms >= d.from ? at(ms) : formatWhen(ms, tz));
  lines.push(
    ...list(
      "Drains",
      drains.map((x) => `${when(x.since)} ${x.backend} drained by ${x.by}, ${x.until === undefined ? `still drained (${formatDuration(d.to - x.since)})` : `undrained ${at(x.until)} (${formatDuration(x.until - x.since)})`}`),
    ),
  );
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
