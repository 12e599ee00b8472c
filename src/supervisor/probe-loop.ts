/**
 * When a backend's process is probed: readiness polled while it starts,
 * liveness rounds every `health.interval` while it serves (a deep 1-token
 * probe when no real request proved it alive lately), and the counters
 * status shows. The owner says whether the process is still the one to probe
 * and applies what the probes find; the judging itself is pure (liveness.ts).
 */
import type { HealthConfig } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock } from "../platform/clock.ts";
import { deepProbeDue, judgeLiveness, type LivenessVerdict } from "./liveness.ts";
import type { Prober, Readiness } from "./probes.ts";
import type { BackendSnapshot } from "./states.ts";

export interface ProbeLoopDeps {
  readonly name: string;
  readonly clock: Clock;
  readonly log: Logger;
  readonly health: HealthConfig;
  /** How often readiness is polled while starting. */
  readonly readinessPollMs: number;
  /** Runs `fn` after `ms` on a timer the owner cancels with its own. */
  readonly after: (ms: number, fn: () => void) => void;
}

/** What the owner tells the loop about one starting process, and what it does with the outcome. */
export interface StartWatch {
  /** Still the process to probe, still starting, nothing asked of it. */
  readonly current: () => boolean;
  readonly ready: () => void;
  /** Readiness reported a definite failure (a model that cannot load). */
  readonly failed: (reason: string) => void;
}

/** The same for one serving process. */
export interface ServeWatch {
  /** Still the process to probe, still serving, nothing asked of it. */
  readonly current: () => boolean;
  readonly degraded: () => boolean;
  readonly verdict: (v: LivenessVerdict) => void;
}

export class ProbeLoop {
  prober: Prober;
  /** While starting: what readiness last said ("loading model"). */
  progress?: string;
  private shallowFailures = 0;
  private deepFailures = 0;
  private lastDeepAt?: number;
  private lastSuccessAt?: number;
  private lastLatencyMs?: number;
  private probing = false;
  private readonly deps: ProbeLoopDeps;

  constructor(prober: Prober, deps: ProbeLoopDeps) {
    this.prober = prober;
    this.deps = deps;
  }

  /** A new process: its failures start from zero. */
  newProcess(): void {
    this.shallowFailures = 0;
    this.deepFailures = 0;
    this.progress = "spawning";
  }

  /** A real request succeeded: no deep probe is needed for a while. */
  noteSuccess(): void {
    this.lastSuccessAt = this.deps.clock.now();
  }

  snapshot(): BackendSnapshot["probes"] {
    return { shallowFailures: this.shallowFailures, deepFailures: this.deepFailures, lastDeepAt: this.lastDeepAt, lastSuccessAt: this.lastSuccessAt, lastLatencyMs: this.lastLatencyMs };
  }

  /** Polls readiness until it passes, fails, or the process is no longer the one starting. */
  async untilReady(w: StartWatch): Promise<void> {
    while (w.current()) {
      let readiness: Readiness;
      try {
        readiness = await this.prober.readiness();
      } catch (e) {
        readiness = { state: "loading", detail: (e as Error).message };
      }
      if (!w.current()) return;
      if (readiness.state === "ready") {
        this.progress = undefined;
        this.noteSuccess();
        return w.ready();
      }
      if (readiness.state === "failed") return w.failed(readiness.reason);
      this.progress = readiness.detail;
      await new Promise<void>((resolve) => this.deps.after(this.deps.readinessPollMs, resolve));
    }
  }

  /** Schedules liveness rounds every health.interval while `w.current()`. */
  watch(w: ServeWatch): void {
    this.deps.after(this.deps.health.interval, () => {
      this.round(w).catch((e: Error) => this.deps.log.error({ event: "backend.owner_error", err: e.message }, `${this.deps.name}: liveness round failed: ${e.message}`));
    });
  }

  private async round(w: ServeWatch): Promise<void> {
    if (!w.current()) return;
    if (this.probing) return this.watch(w);
    this.probing = true;
    try {
      const shallow = await this.prober.shallow().catch((e: Error) => ({ ok: false, latencyMs: 0, detail: e.message }));
      if (!w.current()) return;
      this.lastLatencyMs = shallow.latencyMs;
      let deep: Awaited<ReturnType<Prober["deep"]>> | undefined;
      if (deepProbeDue(shallow.ok, this.deps.clock.now(), this.lastSuccessAt, this.deps.health)) {
        deep = await this.prober.deep().catch((e: Error) => ({ ok: false, latencyMs: 0, detail: e.message }));
        if (!w.current()) return;
        this.lastDeepAt = this.deps.clock.now();
        if (deep.ok && !deep.skipped) this.lastSuccessAt = this.lastDeepAt;
        if (!deep.ok) this.deps.log.warn({ event: "backend.probe.deep_failed", failures: this.deepFailures + 1, detail: deep.detail }, `${this.deps.name}: deep probe failed: ${deep.detail}`);
      }
      const round = judgeLiveness({ shallow, deep, shallowFailures: this.shallowFailures, deepFailures: this.deepFailures, degraded: w.degraded(), health: this.deps.health });
      this.shallowFailures = round.shallowFailures;
      this.deepFailures = round.deepFailures;
      w.verdict(round.verdict);
    } finally {
      this.probing = false;
      if (w.current()) this.watch(w);
    }
  }
}
