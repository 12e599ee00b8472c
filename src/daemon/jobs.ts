/** The daemon's scheduled jobs ([schedule]): housekeeping, the daily digest, periodic drills. */
import type { Alerter } from "../alerts/alerter.ts";
import type { AlertEvent } from "../alerts/events.ts";
import { drainsOf, withDrains } from "../alerts/digest.ts";
import type { Config } from "../config/types.ts";
import type { DrillReport } from "../drills/report.ts";
import { renderDrill } from "../drills/report.ts";
import type { GamedaySpec } from "../drills/gameday.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock } from "../platform/clock.ts";
import { digestJob, housekeepingJob, type PruneHook } from "../schedule/jobs.ts";
import { Scheduler, type TickSource } from "../schedule/scheduler.ts";
import { timeOnTier } from "./alert-bridge.ts";
import type { HistoryEntry } from "./state-store.ts";

export interface JobDeps {
  readonly config: () => Config;
  readonly alerter?: Alerter;
  readonly clock: Clock;
  /** The cron ticks, logging to `logger` (nodeCronTicks, from the composition root). */
  readonly ticks: (logger: Logger) => TickSource;
  readonly log: Logger;
  readonly prune: readonly PruneHook[];
  readonly alertLog: () => readonly AlertEvent[];
  readonly history: () => readonly HistoryEntry[];
  readonly drill: (scenario: Config["schedule"]["drill_scenario"], durationMs: number) => Promise<DrillReport>;
  /** A game day; its scorecard is stored and mailed by the drill desk. */
  readonly gameday?: (spec: GamedaySpec) => Promise<unknown>;
}

export function scheduleJobs(c: Config, d: JobDeps): Scheduler {
  const logger = d.log.child({ component: "schedule" });
  const scheduler = new Scheduler({ logger, clock: d.clock, ticks: d.ticks(logger) });
  scheduler.add({ name: "housekeeping", cron: c.schedule.housekeeping, run: housekeepingJob({ alerter: d.alerter, logger: d.log, prune: d.prune }) });
  const alerter = d.alerter;
  if (alerter) {
    scheduler.add({
      name: "digest",
      cron: c.schedule.digest,
      run: digestJob({
        alerter,
        clock: d.clock,
        collect: ({ from, to }) => {
          const alerts = d.alertLog();
          const status = alerter.status();
          const config = d.config();
          // A drain of a backend a reload removed ended with it (no undrain entry): it is not "still drained".
          const drains = drainsOf(d.history(), from, to).filter((x) => x.until !== undefined || config.backends.some((b) => b.name === x.backend));
          return {
            host: config.daemon.hostname,
            events: alerts.filter((a) => a.at >= from && a.at <= to),
            restarts: d
              .history()
              .filter((h) => h.kind === "exit" && h.at >= from && h.at <= to)
              .map((h) => ({ backend: h.backend ?? "?", at: h.at, exitClass: /: (\w+)/.exec(h.summary)?.[1] ?? "exit", reason: h.summary })),
            // Time on a drained tier was time on the next one, as maintenance (digest.ts withDrains).
            timeOnTier: withDrains((a, b) => timeOnTier(config, alerts, a, b), drains, from, to),
            drains,
            delivery: { delivered: status.delivered, pending: status.pending, lastError: status.lastError?.failure.code },
          };
        },
      }),
    });
  }
  if (c.schedule.drill) {
    scheduler.add({
      name: "drill",
      cron: c.schedule.drill,
      run: async () => {
        const report = await d.drill(c.schedule.drill_scenario, c.schedule.drill_duration);
        alerter?.send({ subject: `[llmsup] ${d.config().daemon.hostname}: drill ${report.scenario} ${report.verdict === "pass" ? "passed" : "FAILED"}`, text: renderDrill(report) }, "drill", report.verdict === "pass" ? "info" : "warning");
      },
    });
  }
  const gameday = d.gameday;
  if (c.schedule.gameday && gameday) {
    const s = c.schedule;
    scheduler.add({
      name: "gameday",
      cron: s.gameday,
      run: async () => {
        await gameday({ ...(s.gameday_route ? { route: s.gameday_route } : {}), ...(s.gameday_scenarios.length ? { scenarios: s.gameday_scenarios } : {}), durationMs: s.gameday_duration, traffic: true });
      },
    });
  }
  return scheduler;
}
