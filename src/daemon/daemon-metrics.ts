/**
 * The daemon's own metrics on the router's registry: every status-derived
 * family read at scrape time from the status `llmsup status` shows (through
 * the pure status-metrics.ts, once per scrape), and the counters of events
 * only the daemon sees — restarts the supervisor decides on, XIDs in the
 * kernel log. Families are stateless: a route, backend or GPU gone on
 * reload is gone from the next scrape.
 */
import { Counter, type Registry } from "prom-client";
import { registerFamily, type Family } from "../router/metric-family.ts";
import type { XidOutcome } from "../gpu/xid-policy.ts";
import type { DaemonEvent } from "./deps.ts";
import type { DaemonStatus } from "./status.ts";
import { STATUS_METRICS, statusSeries, type MetricSpec, type Series, type StatusMetricName } from "./status-metrics.ts";

export interface DaemonMetricsDeps {
  readonly registry: Registry;
  /** The status `llmsup status` shows (it may throw before the daemon is up: the verdict is then unknown). */
  readonly status: () => DaemonStatus;
  readonly now: () => number;
  readonly version: string;
}

/** XID number of a kernel-log GPU event: a GPU fallen off the bus is XID 79 (the policy counts it so too). */
const xidOf = (o: XidOutcome) => String(o.event.type === "xid" ? o.event.xid : 79);

/** Whether a daemon event is a restart the supervisor decided on after an unplanned exit (it entered backoff). Pure. */
export function isSupervisorRestart(e: DaemonEvent): e is Extract<DaemonEvent, { event: "backend.state" }> {
  return "event" in e && e.event === "backend.state" && e.to === "backoff";
}

export class DaemonMetrics {
  private readonly d: DaemonMetricsDeps;
  private readonly restarts: Counter<"backend">;
  /** Backends the restart counter has a series of. */
  private readonly restarted = new Set<string>();
  private readonly xids: Counter<"gpu" | "xid">;
  /** One status per scrape: every family of a scrape is collected in the same turn of the event loop. */
  private scrape?: { readonly status: DaemonStatus | undefined; readonly series: ReadonlyMap<StatusMetricName, readonly Series[]> };

  constructor(deps: DaemonMetricsDeps) {
    this.d = deps;
    const registers = [deps.registry];
    for (const spec of STATUS_METRICS) registerFamily(deps.registry, this.family(spec));
    const metrics = this;
    this.restarts = new Counter({
      name: "llmsup_backend_restarts_total",
      help: "Restarts the supervisor decided on after an unplanned exit (the backend entered backoff); operator starts, restarts and resets are not counted.",
      labelNames: ["backend"],
      registers,
      collect() {
        // Every managed backend has a series from the start; one no longer configured has none.
        const backends = metrics.current().status?.backends;
        if (!backends) return;
        const managed = new Set(backends.filter((b) => b.managed).map((b) => b.name));
        for (const name of metrics.restarted) {
          if (managed.has(name)) continue;
          this.remove({ backend: name });
          metrics.restarted.delete(name);
        }
        for (const name of managed) {
          this.inc({ backend: name }, 0);
          metrics.restarted.add(name);
        }
      },
    });
    this.xids = new Counter({ name: "llmsup_gpu_xid_errors_total", help: 'XID errors seen in the kernel log since llmsup started, by GPU ("unknown" when its bus id is not a known GPU) and XID number (a GPU fallen off the bus counts as 79).', labelNames: ["gpu", "xid"], registers });
  }

  /** Counts what the daemon's events say (restarts the supervisor decided on). */
  event(e: DaemonEvent): void {
    if (!isSupervisorRestart(e)) return;
    this.restarts.inc({ backend: e.backend });
    this.restarted.add(e.backend);
  }

  /** Counts one GPU event of the kernel log. */
  xid(o: XidOutcome): void {
    this.xids.inc({ gpu: o.gpu === null ? "unknown" : String(o.gpu), xid: xidOf(o) });
  }

  private current(): NonNullable<DaemonMetrics["scrape"]> {
    if (this.scrape) return this.scrape;
    let status: DaemonStatus | undefined;
    try {
      status = this.d.status();
    } catch {
      status = undefined;
    }
    const scrape = (this.scrape = { status, series: statusSeries({ status, now: this.d.now(), node: process.versions.node, version: this.d.version }) });
    queueMicrotask(() => {
      if (this.scrape === scrape) this.scrape = undefined;
    });
    return scrape;
  }

  /** A family prom-client's registry collects like its own metrics; its series are read afresh at each scrape. */
  private family(spec: MetricSpec): Family {
    const read = () => this.current().series.get(spec.name as StatusMetricName) ?? [];
    return { name: spec.name, help: spec.help, type: spec.type, values: () => read().map((s) => ({ labels: { ...s.labels }, value: s.value })) };
  }
}
