/**
 * The status snapshot a mail carries: either text the caller already wrote
 * (e.g. what `llmsup status` prints) or a structured one rendered here as
 * short lines.
 */
import { formatDuration } from "../config/units.ts";
import { quote } from "./text.ts";

export interface StatusSnapshot {
  readonly routes?: readonly {
    readonly model: string;
    /** The tier answering now (from 0), null when none. */
    readonly tier: number | null;
    readonly backend?: string;
    readonly note?: string;
  }[];
  readonly backends?: readonly {
    readonly name: string;
    readonly state: string;
    readonly reason?: string;
    /** How long it has been in this state. */
    readonly forMs?: number;
  }[];
  readonly gpus?: readonly {
    readonly index: number;
    readonly temperatureC?: number;
    readonly memoryUsedMib?: number;
    readonly memoryTotalMib?: number;
    readonly faults?: readonly string[];
  }[];
}

/** Called when a mail is written; a slow or failing provider costs the mail its snapshot, nothing else. */
export type SnapshotProvider = () => string | StatusSnapshot | undefined | Promise<string | StatusSnapshot | undefined>;

export function renderSnapshot(s: string | StatusSnapshot): string[] {
  if (typeof s === "string") return s.trim() === "" ? [] : s.replace(/^\s*\n|\s+$/g, "").split("\n").map((l) => quote(l, ""));
  const out: string[] = [];
  if (s.routes?.length) {
    out.push("Routes:");
    for (const r of s.routes) out.push(quote(`${r.model}: ${r.tier === null ? "NO TIER UP" : `tier ${r.tier}${r.backend ? ` (${r.backend})` : ""}`}${r.note ? `, ${r.note}` : ""}`));
  }
  if (s.backends?.length) {
    out.push("Backends:");
    for (const b of s.backends) out.push(quote(`${b.name}: ${b.state}${b.forMs !== undefined ? ` for ${formatDuration(b.forMs)}` : ""}${b.reason ? ` (${b.reason})` : ""}`));
  }
  if (s.gpus?.length) {
    out.push("GPUs:");
    for (const g of s.gpus) {
      const bits = [
        g.temperatureC !== undefined ? `${g.temperatureC} C` : undefined,
        g.memoryUsedMib !== undefined && g.memoryTotalMib !== undefined ? `${(g.memoryUsedMib / 1024).toFixed(1)}/${(g.memoryTotalMib / 1024).toFixed(0)} GiB` : undefined,
        g.faults?.length ? `faults: ${g.faults.join(", ")}` : "no faults",
      ].filter((b): b is string => b !== undefined);
      out.push(quote(`GPU ${g.index}: ${bits.join(", ")}`));
    }
  }
  return out;
}
