/**
 * Drills on the running daemon, one at a time (by hand or on schedule): a
 * second is refused, as is any while router.socket is off (a drill sends its
 * requests through it); each start and verdict is logged and the verdict is
 * one history entry. A game day is one long drill of several scenarios: its
 * scorecard is kept in state_dir, logged, one history entry and one mail.
 * `stop` (llmsup drill stop, and the daemon's own stop) ends the failure in
 * force now; a game day skips the scenarios it had left.
 */
import { LlmsupError } from "../errors/error.ts";
import type { Logger } from "../log/logger.ts";
import type { RenderedMail } from "../alerts/render.ts";
import type { AlertSeverity } from "../alerts/events.ts";
import { runDrill, type DrillDeps, type DrillSpec } from "../drills/drill.ts";
import { runGameday, storeScorecard, type GamedaySpec } from "../drills/gameday.ts";
import { FaultInjector } from "../drills/inject.ts";
import type { DrillReport } from "../drills/report.ts";
import { renderScorecard, type Scorecard } from "../drills/scorecard.ts";
import type { Clock } from "../platform/clock.ts";
import type { HistoryEntry } from "./state-store.ts";

type DeskDeps = Omit<DrillDeps, "socket" | "faults"> & {
  readonly socket: string | undefined;
  /** Sends a notice mail through the alerts pipeline (nothing when alerts are off). */
  readonly mail?: (m: RenderedMail, severity: AlertSeverity) => void;
};

/** What `llmsup drill stop` answers. */
export interface DrillStopped {
  readonly stopped: boolean;
  /** What was running: "drill errors on llama", "game day on llama". */
  readonly what?: string;
}

export class DrillDesk {
  /** The router faults in force; the routers' Upstreams consult it (RouterDeps.faults). */
  readonly faults: FaultInjector;
  private running: { readonly what: string; readonly stop: AbortController; readonly giveUp: AbortController } | undefined;
  private readonly deps: () => DeskDeps;
  private readonly log: Logger;
  private readonly remember: (h: HistoryEntry) => void;

  constructor(deps: () => DeskDeps, log: Logger, remember: (h: HistoryEntry) => void, clock: Clock) {
    this.deps = deps;
    this.log = log;
    this.remember = remember;
    this.faults = new FaultInjector(clock, log.child({ component: "drill" }), (summary, f) => remember({ at: clock.now(), kind: "drill", backend: f.backend, summary }));
  }

  private begin(what: string): { d: DeskDeps & { socket: string }; stop: AbortController; giveUp: AbortController } {
    if (this.running) throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", `another drill is running (${this.running.what}); \`llmsup drill stop\` ends it`, {});
    const d = this.deps();
    const socket = d.socket;
    if (!socket) throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", "drills send their requests through router.socket, which is off", {});
    const stop = new AbortController();
    const giveUp = new AbortController();
    this.running = { what, stop, giveUp };
    return { d: { ...d, socket }, stop, giveUp };
  }

  async run(spec: DrillSpec): Promise<DrillReport> {
    const { d, stop, giveUp } = this.begin(`drill ${spec.scenario}${spec.route ? ` on ${spec.route}` : ""}`);
    try {
      return await this.drill(d, { ...spec, signal: spec.signal ? AbortSignal.any([spec.signal, stop.signal]) : stop.signal, giveUp: giveUp.signal });
    } finally {
      this.running = undefined;
    }
  }

  private async drill(d: DeskDeps & { socket: string }, spec: DrillSpec): Promise<DrillReport> {
    this.log.info({ event: "drill.started", scenario: spec.scenario, route: spec.route, duration_ms: spec.durationMs }, `drill ${spec.scenario} started`);
    const report = await runDrill({ ...d, faults: this.faults }, spec);
    this.log.info({ event: "drill.finished", ...report, timeline: undefined }, `drill ${spec.scenario}: ${report.verdict}`);
    const problems = report.problems.length ? ` (${report.problems.join("; ")})` : "";
    this.remember({ at: d.clock.now(), kind: "drill", route: report.route, summary: `drill ${report.scenario} on ${report.route}: ${report.verdict}${problems}` });
    return report;
  }

  /** Runs a game day; its scorecard is stored, logged, remembered and mailed (one mail). */
  async gameday(spec: GamedaySpec): Promise<Scorecard & { readonly files?: { readonly json: string; readonly html: string } }> {
    const { d, stop, giveUp } = this.begin(`game day${spec.route ? ` on ${spec.route}` : ""}`);
    try {
      this.log.info({ event: "drill.gameday.started", route: spec.route, scenarios: spec.scenarios, duration_ms: spec.durationMs, traffic: spec.traffic }, "game day started");
      const card = await runGameday({ config: d.config, router: d.router, clock: d.clock, signal: stop.signal, drill: (s) => this.drill(d, { ...s, giveUp: giveUp.signal }) }, spec);
      let files: { json: string; html: string } | undefined;
      try {
        files = await storeScorecard(d.config.daemon.state_dir, card);
      } catch (e) {
        this.log.warn({ event: "drill.gameday.store_failed", err: (e as Error).message }, `the game day's scorecard could not be kept in state_dir: ${(e as Error).message}`);
      }
      const { passed, failed, refused } = card.summary;
      const summary = `game day on ${card.route}: ${card.verdict} (${passed} passed, ${failed} failed, ${refused} refused of ${card.scenarios.length})`;
      this.log.info({ event: "drill.gameday.finished", id: card.id, route: card.route, verdict: card.verdict, summary: card.summary, files }, summary);
      this.remember({ at: d.clock.now(), kind: "drill", route: card.route, summary });
      d.mail?.({ subject: `[llmsup] ${card.host}: game day on ${card.route} ${card.verdict === "pass" ? "passed" : "FAILED"}`, text: renderScorecard(card) }, card.verdict === "pass" ? "info" : "warning");
      return { ...card, ...(files ? { files } : {}) };
    } finally {
      this.running = undefined;
    }
  }

  /**
   * Ends the failure in force now (a drill waits for the route to come back, then reports; a game day skips what
   * is left); `final` (the daemon is stopping): the report is made at once, without waiting.
   */
  stop(why: string, final = false): DrillStopped {
    const r = this.running;
    const lifted = this.faults.end(why);
    if (!r) return { stopped: lifted };
    this.log.warn({ event: "drill.stopped", what: r.what, why }, `${r.what} stopped: ${why}`);
    r.stop.abort(why);
    if (final) r.giveUp.abort(why);
    return { stopped: true, what: r.what };
  }
}
