/**
 * What the composition root (wire.ts) hands the daemon: everything real it
 * uses, as parameters; and the events the daemon's subscribers hear.
 */
import type { MailerFactory } from "../alerts/mailer.ts";
import type { SqliteModule } from "../cache/sqlite.ts";
import type { GpuFault } from "../gpu/types.ts";
import type { ProgramSpawner } from "../gpu/spawn.ts";
import type { HostReader } from "../host/resources.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock } from "../platform/clock.ts";
import type { CacheHook, RouterEvent } from "../router/router.ts";
import type { TickSource } from "../schedule/scheduler.ts";
import type { GroupUsageReader } from "../supervisor/resources.ts";
import type { BackendSpawner } from "../supervisor/spawn.ts";
import type { SupervisorEvent } from "../supervisor/states.ts";
import type { PortHolderLookup, ProberFactory } from "../supervisor/supervisor.ts";
import type { Notifier } from "./notify.ts";
import type { RemediationEvent } from "./remediation-desk.ts";

/** What the composition root hands the daemon: everything real it uses. */
export interface DaemonDeps {
  readonly configPath: string;
  readonly logger: Logger;
  /** True when daemon.log_level sets the logger's level (no explicit --log-level). */
  readonly followConfigLogLevel: boolean;
  readonly env: NodeJS.ProcessEnv;
  readonly clock: Clock;
  readonly hostname: () => string;
  readonly pid: number;
  /** The daemon's own uid (it may act on its control socket). */
  readonly uid: number;
  readonly notifier: (log: Logger) => Notifier;
  readonly spawnBackend: BackendSpawner;
  /** Readiness probers of managed backends (createProber). */
  readonly prober: ProberFactory;
  /** Who listens on a local port (portHolderOnThisHost). */
  readonly portHolder: PortHolderLookup;
  /** Whether the host is short of memory now (hostShortOfMemory). */
  readonly hostMemoryPressure: () => Promise<boolean>;
  /** CPU and memory of backends' process groups (groupUsage over /proc). */
  readonly groupUsage: GroupUsageReader;
  /** Starts the GPU monitor's programs: nvidia-smi, journalctl (spawnChild). */
  readonly spawnProgram: ProgramSpawner;
  /** CPU, memory and disk of the host (systemHostReader). */
  readonly hostReader: HostReader;
  /** The SQLite module of the emergency cache, loaded only when a route uses the cache (loadSqlite). */
  readonly sqlite: () => SqliteModule | Error;
  /** The SMTP transport of e-mail alerts (createMailer). */
  readonly mailer: MailerFactory;
  /** Cron ticks for [schedule] (nodeCronTicks). */
  readonly cronTicks: (logger: Logger) => TickSource;
  /** Extra consumers of every event (alerts). */
  readonly onEvent?: (e: DaemonEvent) => void;
  /** Another response cache than the emergency cache in state_dir. */
  readonly cache?: CacheHook;
}

export type DaemonEvent = SupervisorEvent | RouterEvent | RemediationEvent | { readonly event: "gpu.fault.raised" | "gpu.fault.cleared"; readonly fault: GpuFault; readonly at: number } | { readonly event: "daemon.started" | "daemon.stopping" | "daemon.reloaded"; readonly at: number; readonly detail: string };
