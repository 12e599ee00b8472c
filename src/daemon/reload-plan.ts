/**
 * What a reload can apply while running and what waits for a restart of
 * llmsup, and how the result reads. Pure.
 */
import type { Config } from "../config/types.ts";
import type { ReloadChanges } from "../supervisor/supervisor.ts";

/** Sections that are read once at start: a change there is noted, not applied. */
const AT_START = [
  ["control", "the control socket"],
  ["daemon", "daemon directories"],
  ["gpu", "GPU monitor settings"],
] as const;

/** Notes on what changed but needs a restart of llmsup to take effect. */
export function restartNotes(prev: Config, next: Config): string[] {
  const notes: string[] = [];
  for (const [key, what] of AT_START) if (JSON.stringify(prev[key]) !== JSON.stringify(next[key])) notes.push(`${what} changed: takes effect after a restart of llmsup`);
  if (prev.router.socket !== next.router.socket || prev.router.listen !== next.router.listen) notes.push("router listeners changed: take effect after a restart of llmsup");
  return notes;
}

/** The one-line account of a reload, for the history and the log. */
export function reloadSummary(changes: ReloadChanges, notes: readonly string[]): string {
  const restarted = changes.restarted.length ? ` (${changes.restarted.join(", ")})` : "";
  return `configuration reloaded: ${changes.unchanged.length} unchanged, ${changes.restarted.length} restarted${restarted}, ${changes.started.length} added, ${changes.stopped.length} removed${notes.length ? `; ${notes.join("; ")}` : ""}`;
}
