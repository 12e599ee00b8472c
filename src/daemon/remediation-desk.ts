/**
 * The remediation room: the GPU monitor's faults go into the ladder's
 * decision (gpu/remediation.ts), one per GPU, and its actions are carried out
 * here — the backends on the GPU held stopped and released through the
 * supervisor, `nvidia-smi -r -i <gpu>` run through the monitor's runner (one
 * at a time, with a deadline; never blocking), the evaluator told that llmsup
 * reset the GPU. Actions of one GPU run in order, each after the last; faults
 * arriving meanwhile are decided at once. Every change of phase is logged
 * (`gpu.remediation`) and reported to the daemon (history, mails, events);
 * status reads snapshot().
 *
 * Log lines: gpu.remediation, gpu.remediation.hold, gpu.remediation.release,
 * gpu.reset.run, gpu.reset.result, gpu.remediation.failed.
 */
import type { GpuConfig } from "../config/types.ts";
import { isLlmsupError } from "../errors/error.ts";
import type { GpuSnapshot } from "../gpu/monitor.ts";
import {
  holdsBackends,
  initialRemediation,
  nextRemediation,
  remediationConfig,
  resetOutcome,
  stepRemediation,
  type EscalationCause,
  type Evidence,
  type GpuRemediation,
  type RemediationAction,
  type RemediationInput,
  type RemediationPhase,
  type RemediationTell,
} from "../gpu/remediation.ts";
import type { SmiRun } from "../gpu/runner.ts";
import type { GpuFault } from "../gpu/types.ts";
import type { XidOutcome } from "../gpu/xid-policy.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock, TimerHandle } from "../platform/clock.ts";

/** Least time `nvidia-smi -r` gets: a reset takes longer than a query. */
const RESET_DEADLINE_MS = 60_000;

/** One step of the ladder on one GPU, as the daemon records, mails and emits it. */
export interface RemediationEvent {
  readonly event: "gpu.remediation";
  readonly at: number;
  readonly gpu: number;
  readonly busId?: string;
  readonly from: RemediationPhase;
  readonly to: RemediationPhase;
  readonly why: string;
  /** What the operator is told (a mail), if anything. */
  readonly tell?: RemediationTell;
  readonly cause?: EscalationCause;
  /** What llmsup does next, and when. */
  readonly next: string | null;
  readonly nextAt: number | null;
  /** The faults asking for a reset or a reboot. */
  readonly evidence: readonly Evidence[];
  /** The managed backends on this GPU. */
  readonly backends: readonly string[];
  /** The GPU's last readings, one line each. */
  readonly readings: readonly string[];
  /** What the driver's gpu_recovery_action reads now. */
  readonly recoveryAction?: string;
  /** What nvidia-smi -r said. */
  readonly resetDetail?: string;
}

/** Where the ladder stands on one GPU, for status. */
export interface RemediationView {
  readonly gpu: number;
  readonly state: RemediationPhase;
  readonly since: number;
  readonly why: string;
  readonly cause: EscalationCause | null;
  readonly next: string | null;
  readonly nextAt: number | null;
  readonly evidence: readonly Evidence[];
  /** llmsup's resets of this GPU inside reset_window. */
  readonly resets: readonly number[];
  readonly backends: readonly string[];
  /** Whether the backends on it are held stopped now. */
  readonly held: boolean;
  readonly autoReset: boolean;
}

export interface RemediationDeskDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  /** [gpu] as it is now (a reload may change auto_reset, the delay, the window). */
  readonly config: () => GpuConfig;
  /** The managed backends using GPU `gpu` (their `gpus`). */
  readonly backendsOn: (gpu: number) => readonly string[];
  /** The supervisor's hold: stop and keep stopped; release: start again. */
  readonly hold: (backend: string, reason: string) => Promise<void>;
  readonly release: (backend: string, reason: string) => Promise<void>;
  /** Runs `nvidia-smi ARGS` once within `deadlineMs` (the GPU monitor's runner). */
  readonly smi: (args: readonly string[], deadlineMs: number) => Promise<SmiRun>;
  /** Tells the fault evaluator that llmsup reset GPU `gpu`. */
  readonly markReset: (gpu: number, reason: string) => void;
  /** The GPU monitor's view: bus ids, readings, processes. */
  readonly gpus: () => GpuSnapshot;
  /** Every change of phase. */
  readonly report: (e: RemediationEvent) => void;
}

export class RemediationDesk {
  private readonly d: RemediationDeskDeps;
  private readonly log: Logger;
  private readonly states = new Map<number, GpuRemediation>();
  private readonly timers = new Map<number, TimerHandle>();
  /** The actions of each GPU, one after another. */
  private readonly chains = new Map<number, Promise<void>>();
  /** Which GPUs hold each backend stopped: it starts again only when none does. */
  private readonly holders = new Map<string, Set<number>>();
  private closed = false;

  constructor(d: RemediationDeskDeps) {
    this.d = d;
    this.log = d.logger;
  }

  /**
   * A GPU fault was raised or cleared. Decided once the monitor is done with
   * the sample that raised it (a microtask later), so that the readings a
   * step reports are that sample's.
   */
  fault(f: GpuFault, raised: boolean): void {
    queueMicrotask(() => {
      const gpu = this.gpuOf(f);
      if (gpu !== undefined) this.feed(gpu, raised ? { type: "raised", fault: f } : { type: "cleared", fault: f });
    });
  }

  /** A kernel-log XID: on a GPU in its quiet time, any XID but noise starts the quiet time again. */
  xid(o: XidOutcome): void {
    if (o.gpu === null || o.disposition === "noise") return;
    const gpu = o.gpu;
    queueMicrotask(() => this.feed(gpu, { type: "repeat", what: o.event.type === "xid" ? `XID ${o.event.xid}` : "fallen off the bus" }));
  }

  /** A reload changed [gpu]: every GPU is looked at again. */
  reconfigure(): void {
    for (const gpu of [...this.states.keys()]) this.feed(gpu, { type: "tick" });
  }

  /** Every GPU the ladder is acting on or has acted on (idle ones are left out). */
  snapshot(): RemediationView[] {
    const auto = this.d.config().auto_reset;
    return [...this.states.values()]
      .filter((s) => s.phase !== "idle")
      .sort((a, b) => a.gpu - b.gpu)
      .map((s) => {
        const next = nextRemediation(s);
        return {
          gpu: s.gpu,
          state: s.phase,
          since: s.since,
          why: s.why,
          cause: s.cause ?? null,
          next: next?.what ?? null,
          nextAt: next?.at ?? null,
          evidence: s.evidence,
          resets: s.resets,
          backends: this.d.backendsOn(s.gpu),
          held: holdsBackends(s.phase),
          autoReset: auto,
        };
      });
  }

  /** Nothing new starts (a reset already running ends by its own deadline). */
  close(): void {
    this.closed = true;
    for (const t of this.timers.values()) t.cancel();
    this.timers.clear();
  }

  // ------------------------------------------------------------------ deciding

  private gpuOf(f: GpuFault): number | undefined {
    if (f.gpu !== null) return f.gpu;
    if (f.busId === undefined) return undefined;
    return this.d.gpus().gpus.find((g) => g.busId === f.busId)?.index;
  }

  private feed(gpu: number, input: RemediationInput): void {
    if (this.closed) return;
    const now = this.d.clock.now();
    const before = this.states.get(gpu) ?? initialRemediation(gpu, now);
    let step;
    try {
      step = stepRemediation(before, input, now, remediationConfig(this.d.config()));
    } catch (e) {
      const err = e as Error;
      this.log.error({ event: "gpu.remediation.failed", gpu, code: isLlmsupError(err) ? err.code : undefined, err: err.message }, `GPU ${gpu}: ${err.message}`);
      return;
    }
    this.states.set(gpu, step.state);
    this.schedule(step.state, now);
    if (step.transition) this.announce(step.state, step.transition.from, step.transition.tell, now);
    for (const a of step.actions) this.enqueue(gpu, a);
  }

  /** A due time (end of the quiet time, end of verification) comes back as a tick. */
  private schedule(s: GpuRemediation, now: number): void {
    this.timers.get(s.gpu)?.cancel();
    this.timers.delete(s.gpu);
    if (s.due === undefined || (s.phase !== "waiting" && s.phase !== "verifying")) return;
    this.timers.set(
      s.gpu,
      this.d.clock.setTimeout(() => {
        this.timers.delete(s.gpu);
        this.feed(s.gpu, { type: "tick" });
      }, Math.max(0, s.due - now)),
    );
  }

  private announce(s: GpuRemediation, from: RemediationPhase, tell: RemediationTell | undefined, now: number): void {
    const entry = this.d.gpus().gpus.find((g) => g.index === s.gpu);
    const next = nextRemediation(s);
    const e: RemediationEvent = {
      event: "gpu.remediation",
      at: now,
      gpu: s.gpu,
      ...(entry?.busId ? { busId: entry.busId } : {}),
      from,
      to: s.phase,
      why: s.why,
      ...(tell ? { tell } : {}),
      ...(s.cause ? { cause: s.cause } : {}),
      next: next?.what ?? null,
      nextAt: next?.at ?? null,
      evidence: s.evidence,
      backends: this.d.backendsOn(s.gpu),
      readings: readingsOf(entry),
      ...(entry?.sample?.recoveryAction !== undefined ? { recoveryAction: entry.sample.recoveryAction } : {}),
      ...(s.resetDetail ? { resetDetail: s.resetDetail } : {}),
    };
    const level = s.phase === "reboot_required" ? "error" : s.phase === "resetting" || s.phase === "reset_needed" ? "warn" : "info";
    this.log[level](
      { event: "gpu.remediation", gpu: s.gpu, from, to: s.phase, why: s.why, tell, cause: s.cause, next: e.next, next_at: e.nextAt, evidence: s.evidence.map((x) => x.id), code: s.phase === "reboot_required" ? "LLMSUP_E_GPU_REBOOT_REQUIRED" : undefined },
      `GPU ${s.gpu}: ${from} → ${s.phase}: ${s.why}`,
    );
    this.d.report(e);
  }

  // ------------------------------------------------------------------ acting

  private enqueue(gpu: number, a: RemediationAction): void {
    const chain = (this.chains.get(gpu) ?? Promise.resolve())
      .then(() => this.run(gpu, a))
      .catch((e: Error) => this.log.error({ event: "gpu.remediation.failed", gpu, action: a.type, code: isLlmsupError(e) ? e.code : undefined, err: e.message }, `GPU ${gpu}: ${a.type} failed: ${e.message}`));
    this.chains.set(gpu, chain);
  }

  private async run(gpu: number, a: RemediationAction): Promise<void> {
    switch (a.type) {
      case "hold":
        return this.holdAll(gpu, a.reason);
      case "release":
        return this.releaseAll(gpu, a.reason);
      case "reset":
        return this.reset(gpu);
      case "mark_reset":
        this.d.markReset(gpu, a.reason);
        return;
    }
  }

  private async holdAll(gpu: number, reason: string): Promise<void> {
    const names = this.d.backendsOn(gpu);
    for (const n of names) {
      const set = this.holders.get(n) ?? new Set<number>();
      set.add(gpu);
      this.holders.set(n, set);
    }
    if (names.length === 0) return;
    this.log.warn({ event: "gpu.remediation.hold", gpu, backends: names, reason }, `GPU ${gpu}: stopping and holding ${names.join(", ")}: ${reason}`);
    await Promise.all(names.map((n) => this.d.hold(n, reason)));
  }

  private async releaseAll(gpu: number, reason: string): Promise<void> {
    const free: string[] = [];
    for (const [n, set] of this.holders) {
      if (!set.delete(gpu)) continue;
      if (set.size === 0) {
        this.holders.delete(n);
        free.push(n);
      }
    }
    if (free.length === 0) return;
    this.log.info({ event: "gpu.remediation.release", gpu, backends: free, reason }, `GPU ${gpu}: starting ${free.join(", ")} again: ${reason}`);
    await Promise.all(free.map((n) => this.d.release(n, reason)));
  }

  private async reset(gpu: number): Promise<void> {
    const deadline = Math.max(this.d.config().deadline, RESET_DEADLINE_MS);
    const args = ["-r", "-i", String(gpu)];
    this.log.warn({ event: "gpu.reset.run", gpu, args, deadline_ms: deadline }, `GPU ${gpu}: running nvidia-smi ${args.join(" ")}`);
    let r: ReturnType<typeof resetOutcome>;
    try {
      const run = await this.d.smi(args, deadline);
      r = resetOutcome({ exitCode: run.exitCode, output: run.output });
    } catch (e) {
      const err = e as Error;
      r = resetOutcome({ error: { code: isLlmsupError(err) ? err.code : undefined, message: err.message } });
    }
    const detail = r.outcome === "refused" ? `${r.detail}${holdersOf(this.d.gpus(), gpu)}` : r.detail;
    const code = r.outcome === "done" ? undefined : r.outcome === "refused" ? "LLMSUP_E_GPU_RESET_REFUSED" : r.outcome === "timed_out" ? "LLMSUP_E_GPU_UNRESPONSIVE" : "LLMSUP_E_GPU_RESET_FAILED";
    this.log[r.outcome === "done" ? "info" : "error"]({ event: "gpu.reset.result", gpu, outcome: r.outcome, detail, code }, `GPU ${gpu}: nvidia-smi -r ${r.outcome}: ${detail}`);
    this.feed(gpu, { type: "reset_result", outcome: r.outcome, detail });
  }
}

/** " (held by pid 123 python3, …)" from the monitor's last look at the compute apps, or "". */
function holdersOf(snap: GpuSnapshot, gpu: number): string {
  const apps = snap.gpus.find((g) => g.index === gpu)?.processes ?? [];
  return apps.length ? ` (compute processes seen on it: ${apps.map((p) => `pid ${p.pid}${p.processName ? ` ${p.processName}` : ""}`).join(", ")})` : "";
}

/** A GPU's last readings, one line each, for people. */
export function readingsOf(entry: GpuSnapshot["gpus"][number] | undefined): string[] {
  const s = entry?.sample;
  if (!entry || !s) return ["no sample of this GPU yet"];
  const opt = (x: number | string | undefined, unit = "") => (x === undefined ? "?" : `${x}${unit}`);
  const lines = [
    `sampled ${entry.sampledAt !== undefined ? new Date(entry.sampledAt).toISOString() : "?"}: ${[s.name, s.busId ?? entry.busId].filter(Boolean).join(" ")}`,
    `temperature ${opt(s.temperatureC, " °C")} (memory ${opt(s.memoryTemperatureC, " °C")}), utilisation ${opt(s.utilizationPct, "%")}, ${opt(s.pstate)}`,
    `memory ${opt(s.memoryUsedMib)} of ${opt(s.memoryTotalMib)} MiB, power ${opt(s.powerDrawW, " W")} of ${opt(s.powerLimitW, " W")}`,
    `ECC errors (volatile): ${opt(s.eccUncorrected)} uncorrected, ${opt(s.eccCorrected)} corrected; retired pages pending: ${s.retiredPagesPending === undefined ? "?" : s.retiredPagesPending ? "yes" : "no"}`,
    `gpu_recovery_action: ${opt(s.recoveryAction)}${s.requiresReset ? "; cells read [GPU requires reset]" : ""}`,
  ];
  if (entry.remappedRows) lines.push(`row remapping: pending ${entry.remappedRows.pending ? "yes" : "no"}, failure ${entry.remappedRows.failure ? "yes" : "no"}`);
  if (entry.processes.length) lines.push(`compute processes: ${entry.processes.map((p) => `pid ${p.pid}${p.processName ? ` ${p.processName}` : ""}${p.usedMemoryMib !== undefined ? ` ${p.usedMemoryMib} MiB` : ""}`).join(", ")}`);
  return lines;
}
