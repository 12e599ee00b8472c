/**
 * The host monitor: reads CPU, memory and disk every [host] interval and
 * turns them into facts with thresholds. Events: `reading`, `fault.raised`,
 * `fault.cleared`. Log lines: host.fault.raised, host.fault.cleared,
 * host.read.failed.
 */
import { EventEmitter } from "node:events";
import type { HostConfig } from "../config/types.ts";
import { silentLogger, type Logger } from "../log/logger.ts";
import type { Clock, TimerHandle } from "../platform/clock.ts";
import { readHost, type CpuTimes, type HostReader, type HostReading } from "./resources.ts";
import { evaluateHost, initialHostState, type HostClearedFault, type HostFault, type HostState } from "./thresholds.ts";

export interface HostMonitorOptions {
  readonly config: HostConfig;
  /** Directories whose disks must not fill up (state_dir, log_dir). */
  readonly dirs: readonly string[];
  /** Where readings come from (systemHostReader, from the composition root; tests hand their own). */
  readonly reader: HostReader;
  readonly logger?: Logger;
  readonly clock: Clock;
}

export interface HostMonitorEvents {
  reading: [reading: HostReading];
  "fault.raised": [fault: HostFault];
  "fault.cleared": [fault: HostClearedFault];
}

export interface HostSnapshot {
  readonly reading?: HostReading;
  readonly faults: readonly HostFault[];
}

export class HostMonitor extends EventEmitter<HostMonitorEvents> {
  #o: HostMonitorOptions;
  readonly #reader: HostReader;
  readonly #log: Logger;
  readonly #clock: Clock;
  #state: HostState = initialHostState();
  #cpu: CpuTimes | undefined;
  #reading: HostReading | undefined;
  #timer: TimerHandle | undefined;
  #stopped = true;
  #errors = "";

  constructor(options: HostMonitorOptions) {
    super();
    this.#o = options;
    this.#reader = options.reader;
    this.#log = options.logger ?? silentLogger();
    this.#clock = options.clock;
  }

  /** Takes a first reading, then one every interval. */
  async start(): Promise<void> {
    if (!this.#stopped) return;
    this.#stopped = false;
    await this.poll();
  }

  /** Takes a reloaded [host]: thresholds and the interval apply from the next poll. */
  reconfigure(config: HostMonitorOptions["config"]): void {
    this.#o = { ...this.#o, config };
  }

  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
  }

  snapshot(): HostSnapshot {
    return { reading: this.#reading, faults: [...this.#state.active.values()] };
  }

  /** One reading and evaluation (the timer calls it; tests may too). */
  async poll(): Promise<HostReading> {
    this.#timer?.cancel();
    const { reading, cpu } = await readHost(this.#reader, this.#o.dirs, this.#cpu, this.#clock.now());
    this.#cpu = cpu;
    this.#reading = reading;
    const errors = reading.errors.join("; ");
    if (errors && errors !== this.#errors) this.#log.warn({ event: "host.read.failed", errors: reading.errors }, "could not read some host resources");
    this.#errors = errors;
    const r = evaluateHost(this.#state, reading, this.#clock.now(), { minFreeMemory: this.#o.config.min_free_memory, minFreeDisk: this.#o.config.min_free_disk });
    this.#state = r.state;
    this.emit("reading", reading);
    for (const f of r.cleared) {
      this.#log.info({ event: "host.fault.cleared", fault: f }, `cleared: ${f.reason}`);
      this.emit("fault.cleared", f);
    }
    for (const f of r.raised) {
      this.#log.warn({ event: "host.fault.raised", fault: f }, `${f.reason}; ${f.action}`);
      this.emit("fault.raised", f);
    }
    if (!this.#stopped) this.#timer = this.#clock.setTimeout(() => void this.poll(), this.#o.config.interval);
    return reading;
  }
}
