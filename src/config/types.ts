/** The typed, resolved, frozen configuration the rest of llmsup reads. */
import type { z } from "zod";
import type {
  alertsSchema,
  backendSchema,
  cacheSchema,
  controlSchema,
  daemonSchema,
  gpuSchema,
  HEALTH_DEFAULTS,
  hostSchema,
  processSchema,
  routerSchema,
  routeQualitySchema,
  scheduleSchema,
  tierSchema,
} from "./schema.ts";

type Widen<T> = { -readonly [K in keyof T]: T[K] extends boolean ? boolean : T[K] extends number ? number : T[K] };

export type HealthConfig = Readonly<Widen<typeof HEALTH_DEFAULTS>>;
export type DaemonConfig = Readonly<z.output<typeof daemonSchema>> & { readonly hostname: string };
export type ControlConfig = Readonly<Omit<z.output<typeof controlSchema>, "socket">> & { readonly socket: string };
export type RouterConfig = Readonly<Omit<z.output<typeof routerSchema>, "socket">> & { readonly socket: string };
export type GpuConfig = Readonly<z.output<typeof gpuSchema>>;
export type HostConfig = Readonly<z.output<typeof hostSchema>>;
export type AlertsConfig = Readonly<z.output<typeof alertsSchema>>;
export type ScheduleConfig = Readonly<z.output<typeof scheduleSchema>>;
export type CacheConfig = Readonly<z.output<typeof cacheSchema>>;
export type ProcessConfig = Readonly<z.output<typeof processSchema>>;

export type BackendConfig = Readonly<Omit<z.output<typeof backendSchema>, "health" | "process">> & {
  readonly process?: ProcessConfig;
  /** Global [health] merged with this backend's [backend.health]. */
  readonly health: HealthConfig;
  /** True when llmsup runs this backend's process. */
  readonly managed: boolean;
};

export type TierConfig = Readonly<z.output<typeof tierSchema>> & {
  readonly connect_timeout: number;
  readonly ttft_timeout: number;
  readonly idle_timeout: number;
  readonly total_timeout: number;
  /** The tier's context window in tokens: the tier's own, else its backend's; undefined when unknown. */
  readonly context?: number;
};

export type RouteQualityConfig = Readonly<z.output<typeof routeQualitySchema>>;

export interface RouteConfig {
  readonly model: string;
  readonly tiers: readonly TierConfig[];
  readonly cache: boolean;
  /** The emergency cache's embeddings tier (semantic matching); absent: words only. */
  readonly cache_embeddings?: { readonly backend: string; readonly model: string };
  /** The cosine at or above which a semantic match is served; absent in a hand-built route: 0.9. */
  readonly cache_semantic_similarity?: number;
  /** Which model-failure detectors judge this route's answers; always set by the loader (absent in a hand-built route: the defaults). */
  readonly quality?: RouteQualityConfig;
}

export interface Config {
  /** Where the configuration was read from. */
  readonly source: string;
  readonly daemon: DaemonConfig;
  readonly control: ControlConfig;
  readonly router: RouterConfig;
  readonly health: HealthConfig;
  readonly gpu: GpuConfig;
  readonly host: HostConfig;
  readonly alerts: AlertsConfig;
  readonly schedule: ScheduleConfig;
  readonly cache: CacheConfig;
  readonly backends: readonly BackendConfig[];
  readonly routes: readonly RouteConfig[];
}

/** One thing wrong with a configuration, with the key path it concerns. */
export interface ConfigProblem {
  /** Key path such as `backend[2].process.restart_sec`; "" for the whole file. */
  readonly path: string;
  /** Stable rule name: syntax, unknown_key, type, missing, duration, reference, duplicate, inline_secret, start_limit, … */
  readonly rule: string;
  readonly message: string;
  readonly expected?: string;
  readonly found?: string;
  readonly line?: number;
  readonly column?: number;
}
