/**
 * The bodies of the scheduled jobs the alerting core owns: housekeeping
 * (outbox retry + the caller's pruning hooks) and the daily digest. The daemon
 * registers them with the Scheduler under [schedule] housekeeping and digest.
 */
import { renderDigest, type DigestInput } from "../alerts/digest.ts";
import type { AlertSeverity } from "../alerts/events.ts";
import type { RenderedMail } from "../alerts/render.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock } from "../platform/clock.ts";
import type { JobContext } from "./scheduler.ts";

/** A pruning step the daemon provides (old backend logs, state history, the response cache). */
export interface PruneHook {
  readonly name: string;
  readonly run: (signal: AbortSignal) => unknown;
}

export interface HousekeepingDeps {
  readonly alerter?: { retryNow(): void };
  readonly prune?: readonly PruneHook[];
  readonly logger: Logger;
}

/**
 * Housekeeping: try the alert outbox again now, then run each pruning hook. A
 * failing hook does not stop the others; the run fails (and the scheduler logs
 * it) naming every hook that failed.
 */
export function housekeepingJob(deps: HousekeepingDeps): (ctx: JobContext) => Promise<void> {
  return async (ctx) => {
    deps.alerter?.retryNow();
    const failed: string[] = [];
    for (const hook of deps.prune ?? []) {
      if (ctx.signal.aborted) break;
      try {
        await hook.run(ctx.signal);
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        failed.push(`${hook.name}: ${message}`);
        deps.logger.warn({ event: "schedule.housekeeping.hook_failed", hook: hook.name, err: message }, `housekeeping step ${hook.name} failed: ${message}`);
      }
    }
    if (failed.length) throw new Error(`housekeeping: ${failed.length} of ${deps.prune?.length ?? 0} steps failed (${failed.join("; ")})`);
  };
}

export interface DigestDeps {
  /** The period's events, restarts and time-on-tier figures (the daemon's history). */
  readonly collect: (period: { readonly from: number; readonly to: number }) => Omit<DigestInput, "from" | "to"> | Promise<Omit<DigestInput, "from" | "to">>;
  readonly alerter: { send(mail: RenderedMail, kind: string, severity?: AlertSeverity): void };
  readonly clock: Clock;
  /** The period covered; 24 h by default. */
  readonly periodMs?: number;
}

/** The daily digest: collects the last day, renders it, hands it to the alerter's outbox. */
export function digestJob(deps: DigestDeps): (ctx: JobContext) => Promise<void> {
  return async () => {
    const to = deps.clock.now();
    const from = to - (deps.periodMs ?? 86_400_000);
    const input = await deps.collect({ from, to });
    deps.alerter.send(renderDigest({ ...input, from, to }), "digest", "info");
  };
}
