/** Which history entries `llmsup events` shows, and how one reads on a line. Pure. */
import type { HistoryEntry } from "../daemon/state-store.ts";

export interface EventFilter {
  /** Only entries at or after this time (ms since the epoch). */
  readonly since?: number;
  readonly backend?: string;
  readonly route?: string;
  readonly kind?: string;
}

export function matches(e: HistoryEntry, f: EventFilter): boolean {
  return (f.since === undefined || e.at >= f.since) && (f.backend === undefined || e.backend === f.backend) && (f.route === undefined || e.route === f.route) && (f.kind === undefined || e.kind === f.kind);
}

export function filterEvents(entries: readonly HistoryEntry[], f: EventFilter): HistoryEntry[] {
  return entries.filter((e) => matches(e, f));
}

/** `2026-12-01 23:10:35Z  failover   llama: now served by tier 1 …` */
export function eventLine(e: HistoryEntry): string {
  const t = new Date(e.at).toISOString();
  return `${t.slice(0, 10)} ${t.slice(11, 19)}Z  ${e.kind.padEnd(10)} ${e.summary}`;
}

/** The filter from the control socket's query string (unknown or malformed parameters are left out). */
export function filterFromQuery(q: URLSearchParams): EventFilter {
  const since = Number(q.get("since"));
  return {
    ...(q.get("since") !== null && Number.isFinite(since) ? { since } : {}),
    ...(q.get("backend") ? { backend: q.get("backend")! } : {}),
    ...(q.get("route") ? { route: q.get("route")! } : {}),
    ...(q.get("kind") ? { kind: q.get("kind")! } : {}),
  };
}
