/**
 * The GPU monitor: nvidia-smi in loop mode + the kernel log → faults.
 *
 *   probe fields (one-shot, doubles as the first sample)
 *     → loop (`-lms interval`) → samples → evaluate → fault.raised / fault.cleared
 *     ↳ it dies: classify, raise, probe again after a growing pause
 *     ↳ no sample within max(deadline, 2 × interval): driver_unresponsive; the
 *       stuck process is killed and let go of, and no other is started while it lives
 *   every ~30 s: remapped rows and compute apps (one-shot, one at a time)
 *   kernel log → XID / fallen off the bus → evaluate
 *
 * A failure line in the loop's output ("couldn't communicate with the NVIDIA
 * driver", "GPU is lost", …) ends the sample stream: the loop's end is read
 * from that line, whatever the GPU count. Readings are screened
 * (plausible.ts): an implausible one is logged once per (GPU, field), and
 * the snapshot shows the last good value, marked stale.
 *
 * Events: `sample` (screened samples), `fault.raised`, `fault.cleared`, `xid`, `kernel_log`.
 * Log lines: gpu.fault.raised, gpu.fault.cleared, gpu.driver.unresponsive,
 * gpu.nvidia_smi.failed, gpu.nvidia_smi.fields, gpu.reading.implausible,
 * gpu.faults.reset, gpu.xid, gpu.kernel_log.source,
 * gpu.kernel_log.unavailable, gpu.monitor.started, gpu.monitor.stopped.
 */
import { EventEmitter } from "node:events";
import type { GpuConfig } from "../config/types.ts";
import { silentLogger, type Logger } from "../log/logger.ts";
import { within, type Clock, type TimerHandle } from "../platform/clock.ts";
import type { VramProbe } from "../supervisor/vram.ts";
import { doublingDelay } from "../time/backoff.ts";
import { LlmsupError } from "../errors/error.ts";
import { evaluate, faultConfig, initialFaultState, staleSince, type Evaluation, type FaultConfig, type FaultInput, type FaultState, type FaultThresholds, type ResetBy } from "./faults.ts";
import { CSV_FORMAT, GPU_CANDIDATES, queryArgument, type GpuFieldKey, type SelectedField } from "./fields.ts";
import { KernelLogWatcher, type KernelLogStatus } from "./kernel-log.ts";
import { failureFromLine, loopExitFailure, parseGpuQuery, type Parsed } from "./parse.ts";
import { ReadingBook } from "./readings.ts";
import { probeFields } from "./probe-fields.ts";
import { buildReport, type GpuReport } from "./report.ts";
import { SmiRunner, type LoopExit, type LoopHandle } from "./runner.ts";
import { SlowPoll } from "./slow-poll.ts";
import type { ProgramSpawner } from "./spawn.ts";
import type { ClearedFault, ComputeApp, GpuFault, GpuSample, RemappedRows, SmiFailure } from "./types.ts";
import { SmiVramProbe } from "./vram-probe.ts";
import type { XidOutcome } from "./xid-policy.ts";

export interface GpuMonitorOptions {
  readonly config: Omit<GpuConfig, "enabled"> & { readonly enabled?: boolean };
  readonly logger?: Logger;
  /** Starts nvidia-smi and journalctl (spawnChild, from the composition root; tests script their own). */
  readonly spawn: ProgramSpawner;
  readonly clock: Clock;
  /** Kernel-log sources (tests point these at a file or a fake command). */
  readonly kernelLog?: { readonly kmsgPath?: string; readonly journalCommand?: readonly string[]; readonly pollMs?: number };
  /** Refresh remapped rows and compute apps every this many ms (default 30 s). */
  readonly slowPollMs?: number;
}

export interface GpuMonitorEvents {
  sample: [samples: readonly GpuSample[], at: number];
  "fault.raised": [fault: GpuFault];
  "fault.cleared": [fault: ClearedFault];
  xid: [outcome: XidOutcome];
  kernel_log: [status: KernelLogStatus];
}

export type SmiState = "starting" | "sampling" | "failing" | "unresponsive" | "stopped";

export interface GpuSnapshot extends GpuReport {
  readonly nvidiaSmi: {
    readonly path: string;
    readonly state: SmiState;
    readonly fields: readonly string[];
    readonly dropped: readonly string[];
    readonly remappedRows: boolean | undefined;
    readonly lastSampleAt?: number;
    readonly lastFailure?: SmiFailure;
  };
  readonly kernelLog?: KernelLogStatus;
}

export class GpuMonitor extends EventEmitter<GpuMonitorEvents> {
  readonly runner: SmiRunner;
  readonly #config: GpuMonitorOptions["config"];
  #fc: FaultConfig;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #kernel: KernelLogWatcher;
  readonly #slowPollMs: number;
  readonly #slow: SlowPoll;
  #faults: FaultState = initialFaultState();
  #state: SmiState = "stopped";
  #fields: SelectedField<GpuFieldKey>[] = [];
  #dropped: readonly string[] = [];
  /** The latest good readings of each GPU (rejected fields carried from before, marked stale). */
  readonly #readings: ReadingBook;
  #remapped: RemappedRows[] = [];
  #apps: ComputeApp[] = [];
  #lastSampleAt: number | undefined;
  #lastSlowPoll = -Infinity;
  #lastFailure: SmiFailure | undefined;
  #loop: LoopHandle | undefined;
  #retryTimer: TimerHandle | undefined;
  #tickTimer: TimerHandle | undefined;
  #failures = 0;
  #stopped = true;
  /** Sampling is paused while `exclusive` runs something that needs the GPUs to itself (a reset). */
  #paused = false;
  readonly #problems = new Set<string>();

  constructor(options: GpuMonitorOptions) {
    super();
    this.#config = options.config;
    this.#fc = faultConfig(options.config);
    this.#log = options.logger ?? silentLogger();
    this.#readings = new ReadingBook(this.#log);
    this.#clock = options.clock;
    this.#slowPollMs = options.slowPollMs ?? 30_000;
    this.runner = new SmiRunner({ path: options.config.nvidia_smi, deadlineMs: options.config.deadline, spawn: options.spawn, clock: this.#clock });
    this.#slow = new SlowPoll({
      runner: this.runner,
      logger: this.#log,
      active: () => !this.#stopped && !this.#paused,
      remapped: (rows) => this.#onRemapped(rows),
      apps: (apps) => {
        this.#apps = apps;
      },
    });
    this.#kernel = new KernelLogWatcher({
      mode: options.config.kernel_log,
      ...options.kernelLog,
      spawn: options.spawn,
      clock: this.#clock,
      onEvent: (event) => this.#feed({ type: "kernel", event }),
      onStatus: (status) => this.#kernelStatus(status),
      onNote: (note) => this.#log.debug({ event: "gpu.kernel_log.note", note }),
    });
  }

  /** New fault thresholds (temperature_limit, memory_full, sustain/clear/stale samples, event_hold) from the next sample on; nvidia-smi keeps running. */
  setThresholds(config: FaultThresholds): void {
    this.#fc = faultConfig(config);
  }

  /** Starts sampling and watching the kernel log; resolves once the kernel-log source is chosen. */
  async start(): Promise<void> {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#state = "starting";
    this.#log.info({ event: "gpu.monitor.started", nvidia_smi: this.#config.nvidia_smi, interval_ms: this.#config.interval }, "GPU monitor started");
    this.#scheduleTick();
    void this.#cycle();
    await this.#kernel.start();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#state = "stopped";
    this.#retryTimer?.cancel();
    this.#tickTimer?.cancel();
    this.#loop?.stop();
    this.#loop = undefined;
    await this.#kernel.stop();
    this.#log.info({ event: "gpu.monitor.stopped" }, "GPU monitor stopped");
  }

  /**
   * Runs `fn` with no nvidia-smi of the monitor's own running: the sampling
   * loop is ended (and waited for, up to the query deadline) and nothing new
   * starts until `fn` is done; then sampling starts again with a fresh probe.
   * `nvidia-smi -r` needs this: NVIDIA refuses a reset while a monitoring
   * application, another nvidia-smi included, has the device open.
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.#paused = true;
    this.#retryTimer?.cancel();
    const loop = this.#loop;
    this.#loop = undefined;
    if (loop) {
      loop.stop();
      await within(this.#clock, loop.exited, this.#config.deadline);
    }
    try {
      return await fn();
    } finally {
      this.#paused = false;
      if (!this.#stopped) void this.#cycle();
    }
  }

  /** Active faults. */
  faults(): GpuFault[] {
    return [...this.#faults.active.values()];
  }

  snapshot(): GpuSnapshot {
    const report = buildReport({
      at: this.#clock.now(),
      samples: this.#readings.readings,
      staleSince: (gpu) => staleSince(this.#faults, gpu),
      identities: this.#faults.gpus,
      remapped: this.#remapped,
      apps: this.#apps,
      faults: this.faults(),
    });
    return {
      ...report,
      nvidiaSmi: {
        path: this.#config.nvidia_smi,
        state: this.#state,
        fields: this.#fields.map((f) => f.name),
        dropped: this.#dropped,
        remappedRows: this.#slow.remappedRows,
        lastSampleAt: this.#lastSampleAt,
        lastFailure: this.#lastFailure,
      },
      kernelLog: this.#kernel.status,
    };
  }

  /**
   * GPU `gpu` (null: every GPU) was reset by llmsup (after `nvidia-smi -r`
   * succeeded), or the operator says its event faults are dealt with
   * (`llmsup gpus clear`): its event faults (XIDs, ECC rises) clear, with a
   * clearReason naming who and why. Returns what cleared. Throws
   * LLMSUP_E_GPU_UNKNOWN for a GPU nvidia-smi has not shown and no fault names.
   */
  gpuWasReset(gpu: number | null, by: ResetBy, reason?: string): ClearedFault[] {
    if (gpu !== null && !this.#faults.gpus.has(gpu) && !this.faults().some((f) => f.gpu === gpu)) {
      const known = [...this.#faults.gpus.keys()].sort((a, b) => a - b);
      throw new LlmsupError("LLMSUP_E_GPU_UNKNOWN", `no GPU ${gpu} (GPUs: ${known.join(", ") || "none seen yet"})`, { gpu });
    }
    const r = this.#feed({ type: "reset", gpu, by, ...(reason !== undefined ? { reason } : {}) });
    this.#log.info({ event: "gpu.faults.reset", gpu, by, reason: reason ?? null, cleared: r.cleared.map((f) => f.id) }, `${gpu === null ? "every GPU" : `GPU ${gpu}`}: ${by === "llmsup" ? "reset by llmsup" : "event faults cleared by the operator"}; ${r.cleared.length} fault${r.cleared.length === 1 ? "" : "s"} cleared`);
    return [...r.cleared];
  }

  /** The supervisor's "who holds VRAM" check, sharing this monitor's runner and GPU map. */
  vramProbe(): VramProbe {
    return new SmiVramProbe({ runner: this.runner, gpus: () => this.#faults.gpus });
  }

  // ---- evaluation ------------------------------------------------------------

  /**
   * One evaluation step, and what it changed, in an order that never shows a
   * GPU healthy in between: a fault replaced by a new version of itself is
   * cleared first, then what was raised, then what ended (a driver fault
   * superseded by another is never seen absent).
   */
  #feed(input: FaultInput): Evaluation {
    const r = evaluate(this.#faults, input, this.#clock.now(), this.#fc);
    this.#faults = r.state;
    if (r.xid) this.#logXid(r.xid);
    const reraised = new Set(r.raised.map((f) => f.id));
    const cleared = (f: ClearedFault) => {
      this.#log.info({ event: "gpu.fault.cleared", fault: f }, `cleared: ${f.reason} (${f.clearReason})`);
      this.emit("fault.cleared", f);
    };
    for (const f of r.cleared) if (reraised.has(f.id)) cleared(f);
    for (const f of r.raised) {
      this.#log[f.severity === "down" ? "error" : "warn"]({ event: "gpu.fault.raised", fault: f }, `${f.severity}: ${f.reason}; ${f.action}`);
      this.emit("fault.raised", f);
    }
    for (const f of r.cleared) if (!reraised.has(f.id)) cleared(f);
    if (r.xid) this.emit("xid", r.xid);
    return r;
  }

  #logXid(x: XidOutcome): void {
    const level = x.disposition === "noise" ? "debug" : x.disposition === "fault" ? "warn" : "info";
    this.#log[level]({ event: "gpu.xid", gpu: x.gpu, bus_id: x.event.busId, xid: x.event.type === "xid" ? x.event.xid : undefined, class: x.info.class, disposition: x.disposition, note: x.note, message: x.event.message });
  }

  #kernelStatus(status: KernelLogStatus): void {
    if (status.source === "unavailable") this.#log.warn({ event: "gpu.kernel_log.unavailable", reason: status.reason }, `kernel log unavailable, XIDs will not be seen: ${status.reason}`);
    else this.#log.info({ event: "gpu.kernel_log.source", source: status.source }, `reading XIDs from ${status.source}`);
    this.emit("kernel_log", status);
  }

  #scheduleTick(): void {
    if (this.#stopped) return;
    this.#tickTimer = this.#clock.setTimeout(() => {
      this.#feed({ type: "tick" });
      this.#scheduleTick();
    }, Math.max(this.#config.interval, 100));
  }

  // ---- nvidia-smi --------------------------------------------------------------

  async #cycle(): Promise<void> {
    if (this.#stopped || this.#paused) return;
    const probe = await probeFields(this.runner, "--query-gpu", GPU_CANDIDATES, parseGpuQuery);
    if (this.#stopped || this.#paused) return;
    if (!probe.ok) {
      this.#failed(probe.failure);
      return;
    }
    const names = probe.fields.map((f) => f.name).join(",");
    if (names !== this.#fields.map((f) => f.name).join(",")) {
      this.#log.info({ event: "gpu.nvidia_smi.fields", fields: probe.fields.map((f) => f.name), dropped: probe.dropped, replaced: probe.replaced }, "nvidia-smi fields chosen");
    }
    this.#fields = probe.fields;
    this.#dropped = probe.dropped;
    this.#onSample(probe.parsed);
    const lines = probe.parsed.rows.length + probe.parsed.failures.length;
    try {
      this.#loop = this.runner.startLoop(
        [queryArgument("--query-gpu", this.#fields), CSV_FORMAT, "-lms", String(Math.max(1, Math.round(this.#config.interval)))],
        {
          linesPerSample: Math.max(1, lines),
          overdueMs: Math.max(this.#config.deadline, 2 * this.#config.interval),
          startsSample: (l) => l.startsWith("0, "),
          endsStream: (l) => failureFromLine(l) !== undefined,
        },
        {
          sample: (batch) => this.#onSample(parseGpuQuery(batch.join("\n"), this.#fields)),
          overdue: (waitedMs) => this.#onOverdue(waitedMs),
          exit: (exit) => this.#onLoopExit(exit),
        },
      );
    } catch (e) {
      this.#failed({ kind: "unresponsive", code: "LLMSUP_E_GPU_UNRESPONSIVE", message: (e as Error).message });
    }
  }

  #onSample(parsed: Parsed<GpuSample>): void {
    const at = this.#clock.now();
    for (const p of parsed.problems) {
      // Said once per distinct line, however often nvidia-smi repeats it.
      if (this.#problems.has(p.message) || this.#problems.size > 100) continue;
      this.#problems.add(p.message);
      this.#log.warn({ event: "gpu.nvidia_smi.output", code: "LLMSUP_E_GPU_SMI_OUTPUT", problem: p.message }, "unexpected nvidia-smi output");
    }
    // Garbage is fed too: a sample with nothing plausible in it counts towards gpu_readings_stale.
    if (parsed.rows.length === 0 && parsed.failures.length === 0 && parsed.problems.length === 0) return;
    const r = this.#feed({ type: "sample", gpus: parsed.rows, failures: parsed.failures });
    const observed = r.observed ?? [];
    this.#readings.take(observed, at);
    const valid = observed.filter((o) => o.screened.valid);
    if (valid.length === 0) return;
    this.#state = "sampling";
    this.#failures = 0;
    this.#lastFailure = undefined;
    this.#lastSampleAt = at;
    this.emit(
      "sample",
      valid.map((o) => o.screened.sample),
      at,
    );
    if (at - this.#lastSlowPoll >= this.#slowPollMs) {
      this.#lastSlowPoll = at;
      void this.#slow.run();
    }
  }

  #onOverdue(waitedMs: number): void {
    this.#state = "unresponsive";
    this.#log.error({ event: "gpu.driver.unresponsive", waited_ms: waitedMs, code: "LLMSUP_E_GPU_UNRESPONSIVE" }, "nvidia-smi stopped answering; the driver may be wedged");
    this.#feed({ type: "unresponsive", waitedMs });
  }

  #onLoopExit(exit: LoopExit): void {
    this.#loop = undefined;
    if (this.#stopped || this.#paused || exit.stopped) return;
    if (exit.overdue) {
      this.#retry();
      return;
    }
    this.#failed(exit.error ? { kind: "missing", code: "LLMSUP_E_GPU_SMI_MISSING", message: exit.leftover } : loopExitFailure(exit.leftover, exit.code));
  }

  #failed(failure: SmiFailure): void {
    const repeated = this.#lastFailure?.message === failure.message;
    this.#lastFailure = failure;
    this.#state = failure.kind === "unresponsive" ? "unresponsive" : "failing";
    this.#log[repeated ? "debug" : "warn"]({ event: "gpu.nvidia_smi.failed", code: failure.code, kind: failure.kind, message: failure.message, exit_code: failure.exitCode }, "nvidia-smi failed");
    this.#feed({ type: "failure", failure });
    this.#retry();
  }

  /** Probe again after a pause that grows with consecutive failures (interval, doubling, at most 12 intervals). */
  #retry(): void {
    if (this.#stopped || this.#paused) return;
    const delay = doublingDelay({ first: this.#config.interval, max: Math.max(12 * this.#config.interval, 1_000) }, this.#failures);
    this.#failures++;
    this.#retryTimer?.cancel();
    this.#retryTimer = this.#clock.setTimeout(() => void this.#cycle(), delay);
  }

  #onRemapped(rows: RemappedRows[]): void {
    if (this.#stopped) return;
    this.#remapped = rows;
    this.#feed({ type: "remapped", rows });
  }
}
