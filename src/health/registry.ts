/**
 * One health state per backend (HEALTHY / DEGRADED / DOWN, with the reason),
 * from every source that knows something: the supervisor's process state, GPU
 * faults on the backend's GPUs, active probes, passive connection failures and
 * drills. The router reads it; nothing here does I/O.
 */
import type { Config } from "../config/types.ts";
import type { Clock } from "../platform/clock.ts";

export type Health = "healthy" | "degraded" | "down";

export interface BackendHealth {
  readonly state: Health;
  readonly reason: string;
  readonly since: number;
}

interface Source {
  readonly state: Health;
  readonly reason: string;
}

export type HealthSource = "process" | "gpu" | "probe" | "passive" | "drill";

const RANK: Record<Health, number> = { healthy: 0, degraded: 1, down: 2 };

export class HealthRegistry {
  private readonly sources = new Map<string, Map<HealthSource, Source>>();
  private readonly current = new Map<string, BackendHealth>();
  private readonly listeners = new Set<(name: string, h: BackendHealth, previous: BackendHealth) => void>();
  private readonly clock: Clock;
  /** Managed backends whose process is on its way back (starting, backoff): requests may wait for them. */
  private readonly recovering = new Set<string>();

  constructor(config: Config, clock: Clock) {
    this.clock = clock;
    for (const b of config.backends) {
      this.sources.set(b.name, new Map());
      this.current.set(b.name, { state: "healthy", reason: "no report yet", since: clock.now() });
      if (b.managed) this.notStarted(b.name);
    }
  }

  /** A managed backend before its first start: down, and on its way up. */
  private notStarted(name: string): void {
    this.set(name, "process", "down", "not started");
    this.recovering.add(name);
  }

  /** Follows a reload: new backends start fresh, removed ones are forgotten, the rest keep their state. */
  reconfigure(config: Config): void {
    const names = new Set(config.backends.map((b) => b.name));
    for (const n of [...this.sources.keys()]) {
      if (!names.has(n)) {
        this.sources.delete(n);
        this.current.delete(n);
        this.recovering.delete(n);
      }
    }
    for (const b of config.backends) {
      if (this.sources.has(b.name)) continue;
      this.sources.set(b.name, new Map());
      this.current.set(b.name, { state: "healthy", reason: "no report yet", since: this.clock.now() });
      if (b.managed) this.notStarted(b.name);
    }
  }

  get(name: string): BackendHealth {
    return this.current.get(name) ?? { state: "down", reason: "unknown backend", since: 0 };
  }

  all(): Record<string, BackendHealth> {
    return Object.fromEntries(this.current);
  }

  /** Reports one source's view; `healthy` clears it. */
  set(name: string, source: HealthSource, state: Health, reason: string): void {
    const map = this.sources.get(name);
    if (!map) return;
    if (state === "healthy") map.delete(source);
    else map.set(source, { state, reason });
    this.recompute(name);
  }

  /** Whether a source currently reports something about a backend. */
  has(name: string, source: HealthSource): boolean {
    return this.sources.get(name)?.has(source) ?? false;
  }

  setRecovering(name: string, recovering: boolean): void {
    if (recovering) this.recovering.add(name);
    else this.recovering.delete(name);
  }

  isRecovering(name: string): boolean {
    return this.recovering.has(name);
  }

  onChange(fn: (name: string, h: BackendHealth, previous: BackendHealth) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private recompute(name: string): void {
    const map = this.sources.get(name)!;
    let worst: Source = { state: "healthy", reason: "all checks pass" };
    for (const s of map.values()) if (RANK[s.state] > RANK[worst.state]) worst = s;
    const prev = this.get(name);
    if (prev.state === worst.state && prev.reason === worst.reason) return;
    const next: BackendHealth = { state: worst.state, reason: worst.reason, since: prev.state === worst.state ? prev.since : this.clock.now() };
    this.current.set(name, next);
    for (const l of this.listeners) l(name, next, prev);
  }
}
