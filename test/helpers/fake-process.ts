/**
 * Supervisor tests without real processes or real time: a clock the test
 * moves, a spawner of fake children (an EventEmitter with a pid, kill() and
 * stdout/stderr streams, playing a process group), scripted probes.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { PassThrough } from "node:stream";
import type { ProbeResult, Prober, Readiness } from "../../src/supervisor/probes.ts";
import { ResourceSampler } from "../../src/supervisor/resources.ts";
import type { BackendSpawner, Spawned } from "../../src/supervisor/spawn.ts";
import { Supervisor } from "../../src/supervisor/supervisor.ts";
import type { VramProbe } from "../../src/supervisor/vram.ts";
import { EventLog, memoryLogger, testConfig } from "./supervise.ts";
import { tempDir } from "./tmp.ts";

import { flush, ManualClock } from "./clock.ts";
export { flush, ManualClock };

export type OnSigterm = "exit" | "ignore";

/** A fake backend process, leader of its own process group. */
export class FakeChild extends EventEmitter {
  // Above Linux's largest pid (2^22): no real process can have one.
  static #pids = 5_000_000;
  readonly pid = FakeChild.#pids++;
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly signals: NodeJS.Signals[] = [];
  /** What SIGTERM does; SIGKILL always ends it unless `unkillable`. */
  onSigterm: OnSigterm = "exit";
  unkillable = false;
  exitStatus?: { code: number | null; signal: NodeJS.Signals | null };

  get running(): boolean {
    return this.exitStatus === undefined;
  }

  print(line: string, stream: "stdout" | "stderr" = "stderr"): void {
    this[stream].write(`${line}\n`);
  }

  kill(signal: NodeJS.Signals = "SIGTERM"): boolean {
    if (!this.running) return false;
    this.signals.push(signal);
    if (signal === "SIGKILL" ? !this.unkillable : signal === "SIGTERM" && this.onSigterm === "exit") queueMicrotask(() => this.exit(null, signal));
    return true;
  }

  /** Ends the process on its own: `code`, or killed by `signal` from outside. */
  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    if (!this.running) return;
    this.exitStatus = { code, signal };
    this.stdout.end();
    this.stderr.end();
    this.emit("exit", code, signal);
  }
}

/** Spawns FakeChildren; `hold()` keeps the next spawn in flight until released, `failNext()` makes it fail. */
export class FakeSpawner {
  readonly children: FakeChild[] = [];
  /** How many spawns were asked for (held ones included). */
  requests = 0;
  private holding?: { release: () => void; promise: Promise<void> };
  private failing?: string;

  readonly spawn: BackendSpawner = async () => {
    this.requests++;
    if (this.holding) await this.holding.promise;
    if (this.failing) {
      const why = this.failing;
      this.failing = undefined;
      throw new Error(why);
    }
    const child = new FakeChild();
    this.children.push(child);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    const spawned: Spawned = {
      pid: child.pid,
      stdout: child.stdout,
      stderr: child.stderr,
      exited,
      release: () => undefined,
      signalGroup: (signal) => child.kill(signal),
      groupSize: async () => 0,
      processState: async () => (child.running ? (child.unkillable ? "D" : "S") : undefined),
    };
    return spawned;
  };

  /** Keeps the next spawn in flight; returns its release. */
  hold(): () => void {
    let release!: () => void;
    const promise = new Promise<void>((r) => (release = r));
    this.holding = {
      promise,
      release: () => {
        this.holding = undefined;
        release();
      },
    };
    return this.holding.release;
  }

  failNext(why: string): void {
    this.failing = why;
  }

  get running(): FakeChild[] {
    return this.children.filter((c) => c.running);
  }

  get last(): FakeChild {
    const c = this.children.at(-1);
    if (!c) throw new Error("nothing was spawned");
    return c;
  }
}

/** Probes the test scripts: readiness says loading until `ready` is set (or `failed`); liveness passes. */
export class ScriptedProber implements Prober {
  ready = false;
  failed?: string;
  shallowResult: ProbeResult = { ok: true, latencyMs: 1 };
  /** Skipped (nothing to probe) unless the test sets one. */
  deepResult: ProbeResult & { skipped?: boolean } = { ok: true, latencyMs: 1, skipped: true };

  async readiness(): Promise<Readiness> {
    if (this.failed) return { state: "failed", reason: this.failed };
    return this.ready ? { state: "ready" } : { state: "loading", detail: "loading model" };
  }

  async shallow(): Promise<ProbeResult> {
    return this.shallowResult;
  }

  async deep(): Promise<ProbeResult & { skipped?: boolean }> {
    return this.deepResult;
  }
}

/** A promise the test settles by hand. */
export function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

export interface FakeSupervisorOptions {
  /** [backend.process] keys replacing the defaults below. */
  readonly process?: Record<string, string>;
  /** [backend.health] lines. */
  readonly health?: string;
  readonly gpus?: readonly number[];
  readonly vram?: VramProbe;
  readonly hostMemoryPressure?: () => Promise<boolean>;
}

/** A Supervisor over one managed backend "b" of fake processes, on a manual clock, with its events recorded. */
export function fakeSupervisor(t: { after(fn: () => unknown): void }, o: FakeSupervisorOptions = {}) {
  const proc: Record<string, string> = {
    restart_sec: '"1s"',
    restart_max_delay: '"1s"',
    start_limit_interval: '"1h"',
    start_limit_burst: "5",
    startup_timeout: '"10m"',
    stop_timeout: '"30s"',
    ...o.process,
  };
  const config = testConfig(
    tempDir(t),
    `[[backend]]
name = "b"
kind = "vllm"
url = "http://127.0.0.1:9"
gpus = [${(o.gpus ?? []).join(", ")}]
  [backend.process]
  command = ["/opt/fake/vllm"]
${Object.entries(proc).map(([k, v]) => `  ${k} = ${v}`).join("\n")}
  [backend.health]
  interval = "5s"
${o.health ?? ""}
[[route]]
model = "m"
tiers = [{ backend = "b", model = "m" }]
`,
  );
  const clock = new ManualClock();
  const spawner = new FakeSpawner();
  const prober = new ScriptedProber();
  const events = new EventLog();
  const sup = new Supervisor(config, {
    logger: memoryLogger().logger,
    onEvent: events.push,
    clock,
    spawn: spawner.spawn,
    prober: () => prober,
    vram: o.vram,
    random: () => 0,
    hostMemoryPressure: o.hostMemoryPressure ?? (async () => false),
    readinessPollMs: 1_000,
    // Fake processes listen nowhere: no port is anyone's.
    portHolder: async () => ({ state: "nobody" }),
    // …and have no process group in /proc.
    resources: new ResourceSampler({ clock, read: async () => new Map() }),
  });
  t.after(async () => {
    for (const c of spawner.running) c.exit(null, "SIGKILL");
    await flush();
    await sup.stopAll();
  });
  const owner = sup.owner("b");
  /** The states entered so far, in order. */
  const path = () => events.states("b").map((e) => e.to);
  /** Starts b and lets readiness pass. */
  const serve = async () => {
    prober.ready = true;
    await sup.start("b");
    await flush();
    assert.equal(owner.currentState, "ready");
  };
  return { sup, owner, clock, spawner, prober, events, path, serve };
}
