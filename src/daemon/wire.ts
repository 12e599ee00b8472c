/**
 * The composition root: the one place where llmsup's real dependencies are
 * built — the wall clock, the logger, the process environment, the host's
 * name and pid, the backend spawner and what watches backends (readiness
 * probers, the port-holder lookup, /proc readings), the GPU tools' spawner,
 * the host reader, the SQLite loader, the SMTP transport, the cron ticks,
 * the systemd notifier — and handed to the daemon. Everything below takes
 * them as parameters, with no real defaults; tests hand their own.
 */
import { hostname } from "node:os";
import { createMailer } from "../alerts/mailer.ts";
import { loadSqlite } from "../cache/sqlite.ts";
import { spawnChild } from "../gpu/spawn.ts";
import { systemHostReader } from "../host/resources.ts";
import { createLogger, type Logger } from "../log/logger.ts";
import { realClock } from "../platform/clock.ts";
import { groupUsage } from "../platform/procfs.ts";
import type { CacheHook } from "../router/router.ts";
import { nodeCronTicks } from "../schedule/scheduler.ts";
import { createProber } from "../supervisor/probes.ts";
import { spawnBackend } from "../supervisor/spawn.ts";
import { hostShortOfMemory } from "../supervisor/supervisor.ts";
import { portHolderOnThisHost } from "../supervisor/port-guard.ts";
import { Daemon, type DaemonEvent } from "./daemon.ts";
import { createNotifier } from "./notify.ts";

export interface WireOptions {
  readonly configPath: string;
  /** An explicit log level (`--log-level`); otherwise daemon.log_level. */
  readonly logLevel?: string;
  /** Another logger (tests); its level is left alone. */
  readonly logger?: Logger;
  readonly env?: NodeJS.ProcessEnv;
  readonly onEvent?: (e: DaemonEvent) => void;
  readonly cache?: CacheHook;
}

export function wireDaemon(o: WireOptions): Daemon {
  return new Daemon({
    configPath: o.configPath,
    logger: o.logger ?? createLogger({ level: (o.logLevel as never) ?? "info" }),
    followConfigLogLevel: o.logLevel === undefined && !o.logger,
    env: o.env ?? process.env,
    clock: realClock,
    hostname,
    pid: process.pid,
    uid: process.getuid?.() ?? 0,
    notifier: (log) => createNotifier(o.env ?? process.env, log),
    spawnBackend,
    prober: createProber,
    portHolder: portHolderOnThisHost,
    hostMemoryPressure: hostShortOfMemory,
    groupUsage: (pgids) => groupUsage(pgids),
    spawnProgram: spawnChild,
    hostReader: systemHostReader,
    sqlite: loadSqlite,
    mailer: createMailer,
    cronTicks: nodeCronTicks,
    onEvent: o.onEvent,
    cache: o.cache,
  });
}
