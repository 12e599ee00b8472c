/** Supervisor tests: configurations whose backends are the simulators, and an event recorder. */
import assert from "node:assert/strict";
import { validateConfigText } from "../../src/config/load.ts";
import type { Config } from "../../src/config/types.ts";
import { createLogger, type Logger } from "../../src/log/logger.ts";
import { realClock } from "../../src/platform/clock.ts";
import { groupUsage } from "../../src/platform/procfs.ts";
import { createProber } from "../../src/supervisor/probes.ts";
import { ResourceSampler } from "../../src/supervisor/resources.ts";
import { spawnBackend } from "../../src/supervisor/spawn.ts";
import type { StateEvent, SupervisorEvent } from "../../src/supervisor/states.ts";
import { CLI_ENTRY } from "./cli.ts";
import { hostShortOfMemory, Supervisor, type SupervisorDeps } from "../../src/supervisor/supervisor.ts";
import { portHolderOnThisHost } from "../../src/supervisor/port-guard.ts";
import { freePort } from "./sim.ts";
import { tempDir } from "./tmp.ts";

/** A TOML array running `llmsup sim backend ARGS` with this node. */
export function simCommand(args: readonly (string | number)[]): string {
  return JSON.stringify([process.execPath, CLI_ENTRY, "sim", "backend", ...args.map(String)]);
}

/** A configuration with `dir` for logs and state, validated like any other. */
export function testConfig(dir: string, body: string): Config {
  const text = `[daemon]\nstate_dir = "${dir}/state"\nlog_dir = "${dir}/log"\nrun_dir = "${dir}/run"\n\n${body}`;
  const r = validateConfigText(text, { hostname: "test-box" });
  if (!r.ok) assert.fail(`test config invalid:\n${r.problems.map((p) => `${p.path}: ${p.message}`).join("\n")}\n${text}`);
  return r.config;
}

/**
 * The real supervisor dependencies, as daemon/wire.ts builds them: for tests
 * that drive real processes (the simulators) in real time.
 */
export function realSupervisorDeps(): Pick<SupervisorDeps, "clock" | "spawn" | "prober" | "portHolder" | "hostMemoryPressure" | "resources"> {
  return {
    clock: realClock,
    spawn: spawnBackend,
    prober: createProber,
    portHolder: portHolderOnThisHost,
    hostMemoryPressure: hostShortOfMemory,
    resources: new ResourceSampler({ clock: realClock, read: groupUsage }),
  };
}

/** Log lines of the code under test, kept for assertions, quiet otherwise. */
export function memoryLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const raw: string[] = [];
  const logger = createLogger({ level: "debug", destination: { write: (s: string) => void raw.push(s) } });
  return { logger, lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

export class EventLog {
  readonly events: SupervisorEvent[] = [];
  private waiters: { pred: (e: SupervisorEvent) => boolean; resolve: (e: SupervisorEvent) => void }[] = [];

  readonly push = (e: SupervisorEvent): void => {
    this.events.push(e);
    for (const w of [...this.waiters]) {
      if (w.pred(e)) {
        this.waiters = this.waiters.filter((x) => x !== w);
        w.resolve(e);
      }
    }
  };

  states(backend?: string): StateEvent[] {
    return this.events.filter((e): e is StateEvent => e.event === "backend.state" && (!backend || e.backend === backend));
  }

  /** Resolves with the first event (past or future) matching `pred`. */
  waitFor(what: string, pred: (e: SupervisorEvent) => boolean, ms = 10_000, fromIndex = 0): Promise<SupervisorEvent> {
    const seen = this.events.slice(fromIndex).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x.resolve !== done);
        reject(new Error(`timed out after ${ms}ms waiting for ${what}; events:\n${this.states().map((s) => `  ${s.backend} g${s.generation} ${s.from}→${s.to}: ${s.reason}`).join("\n")}`));
      }, ms);
      const done = (e: SupervisorEvent) => {
        clearTimeout(timer);
        resolve(e);
      };
      this.waiters.push({ pred, resolve: done });
    });
  }

  /** Waits for backend `name` to enter `state` (optionally the n-th time). */
  async state(name: string, state: string, options: { nth?: number; ms?: number } = {}): Promise<StateEvent> {
    const nth = options.nth ?? 1;
    let count = 0;
    return (await this.waitFor(`${name} → ${state} (#${nth})`, (e) => e.event === "backend.state" && e.backend === name && e.to === state && ++count === nth, options.ms)) as StateEvent;
  }
}

export interface OneBackend {
  readonly name?: string;
  readonly kind: string;
  /** Arguments of `llmsup sim backend` after --kind and --port. */
  readonly simArgs?: readonly (string | number)[];
  /** A TOML array replacing the simulator command. */
  readonly command?: string;
  /** [backend.process] lines; each replaces the default of the same key. */
  readonly process?: string;
  /** [backend.health] lines. */
  readonly health?: string;
  /** The upstream model the route sends. */
  readonly model?: string;
}

const PROCESS_DEFAULTS = ['restart_sec = "100ms"', 'restart_max_delay = "1s"', "restart_steps = 3", 'start_limit_interval = "1m"', "start_limit_burst = 5", 'startup_timeout = "10s"', 'stop_timeout = "2s"'];

/** A Supervisor over one managed backend (a simulator unless `command` says otherwise), with its events recorded. */
export async function superviseOne(t: { after(fn: () => unknown): void }, b: OneBackend): Promise<{ sup: Supervisor; events: EventLog; port: number; dir: string; logLines: () => Record<string, unknown>[] }> {
  const dir = tempDir(t);
  const port = await freePort();
  const name = b.name ?? "b";
  const own = b.process ?? "";
  const defaults = PROCESS_DEFAULTS.filter((l) => !new RegExp(`^\\s*${l.split(" ")[0]} =`, "m").test(own));
  const config = testConfig(
    dir,
    `[[backend]]
name = "${name}"
kind = "${b.kind}"
url = "http://127.0.0.1:${port}"
  [backend.process]
  command = ${b.command ?? simCommand(["--kind", b.kind, "--port", port, ...(b.simArgs ?? [])])}
${defaults.map((l) => `  ${l}`).join("\n")}
${own}
  [backend.health]
  interval = "150ms"
  timeout = "500ms"
${b.health ?? ""}
[[route]]
model = "m"
tiers = [{ backend = "${name}", model = "${b.model ?? "m"}" }]
`.replaceAll("{PORT}", String(port)),
  );
  const events = new EventLog();
  const mem = memoryLogger();
  const sup = new Supervisor(config, { ...realSupervisorDeps(), logger: mem.logger, onEvent: events.push, readinessPollMs: 50 });
  t.after(() => sup.stopAll());
  return { sup, events, port, dir, logLines: mem.lines };
}
