/**
 * Drills on the running daemon, one at a time (by hand or on schedule): a
 * second is refused, as is any while router.socket is off (a drill sends its
 * requests through it); each start and verdict is logged and the verdict is
 * one history entry.
 */
import { LlmsupError } from "../errors/error.ts";
import type { Logger } from "../log/logger.ts";
import { runDrill, type DrillDeps, type DrillSpec } from "../drills/drill.ts";
import type { DrillReport } from "../drills/report.ts";
import type { HistoryEntry } from "./state-store.ts";

export class DrillDesk {
  private running = false;
  private readonly deps: () => Omit<DrillDeps, "socket"> & { readonly socket: string | undefined };
  private readonly log: Logger;
  private readonly remember: (h: HistoryEntry) => void;

  constructor(deps: () => Omit<DrillDeps, "socket"> & { readonly socket: string | undefined }, log: Logger, remember: (h: HistoryEntry) => void) {
    this.deps = deps;
    this.log = log;
    this.remember = remember;
  }

  async run(spec: DrillSpec): Promise<DrillReport> {
    if (this.running) throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", "another drill is running", {});
    const d = this.deps();
    const socket = d.socket;
    if (!socket) throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", "drills send their requests through router.socket, which is off", {});
    this.running = true;
    try {
      this.log.info({ event: "drill.started", scenario: spec.scenario, route: spec.route, duration_ms: spec.durationMs }, `drill ${spec.scenario} started`);
      const report = await runDrill({ ...d, socket }, spec);
      this.log.info({ event: "drill.finished", ...report, timeline: undefined }, `drill ${spec.scenario}: ${report.verdict}`);
      const problems = report.problems.length ? ` (${report.problems.join("; ")})` : "";
      this.remember({ at: d.clock.now(), kind: "drill", route: report.route, summary: `drill ${report.scenario} on ${report.route}: ${report.verdict}${problems}` });
      return report;
    } finally {
      this.running = false;
    }
  }
}
