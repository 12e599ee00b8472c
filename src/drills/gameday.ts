/**
 * A game day: the drills run one after another on one route — the router
 * faults, then (when the route's first tier is a managed backend) the three
 * process drills — each with its own small request stream unless traffic is
 * off, the route given time to settle back on its first tier between them;
 * then one scorecard (scorecard.ts), kept in state_dir as JSON and HTML.
 */
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { randomBytes } from "node:crypto";
import type { Config } from "../config/types.ts";
import { LlmsupError } from "../errors/error.ts";
import { sleepOn, type Clock } from "../platform/clock.ts";
import { writeJsonAtomic } from "../platform/json-file.ts";
import type { Router } from "../router/router.ts";
import { pickRoute, type DrillSpec } from "./drill.ts";
import { FAULT_KINDS, type FaultOptions } from "./faults.ts";
import { DRILL_SCENARIOS, PROCESS_SCENARIOS, type DrillReport, type DrillScenario } from "./report.ts";
import { scorecardHtml, scorecardOf, type NoReport, type Scorecard } from "./scorecard.ts";

export interface GamedaySpec {
  readonly route?: string;
  /** Default: gamedayScenarios(). */
  readonly scenarios?: readonly DrillScenario[];
  /** How long each scenario's failure is held. */
  readonly durationMs: number;
  /** false: no requests of the game day's own (real traffic is observed). */
  readonly traffic: boolean;
  /** Between two of its own requests; default 500 ms. */
  readonly intervalMs?: number;
  /** How long to wait for the route to be back on its first tier before the next scenario; default 60 s. */
  readonly settleTimeoutMs?: number;
  readonly recoveryTimeoutMs?: number;
  readonly fault?: Partial<FaultOptions>;
}

export interface GamedayDeps {
  readonly config: Config;
  readonly router: () => Router;
  readonly clock: Clock;
  /** Aborted by `llmsup drill stop` or a daemon stop: the scenario running ends, the rest are skipped. */
  readonly signal: AbortSignal;
  /** Runs one drill (the signal is passed on to it). */
  readonly drill: (spec: DrillSpec) => Promise<DrillReport>;
}

export const GAMEDAY_INTERVAL_MS = 500;
const SETTLE_MS = 60_000;
/** After the route is back on tier 0: a moment for the last mails and breaker notes to land before the next failure. */
const QUIET_MS = 500;
/** Scorecards kept in state_dir/gamedays. */
const KEEP = 30;

/** The scenarios a game day runs on `route` by default: every router fault, and the process drills when tier 0 is a managed backend. Pure. */
export function gamedayScenarios(config: Config, routeModel: string): DrillScenario[] {
  const route = pickRoute(config, routeModel);
  const managed = config.backends.find((b) => b.name === route.tiers[0]!.backend)?.managed === true;
  return [...FAULT_KINDS, ...(managed ? PROCESS_SCENARIOS : [])];
}

/** A --scenarios list (a,b,…) checked against the drills; a bad name: a usage error naming the drills. */
export function parseScenarios(list: string): DrillScenario[] {
  const names = list.split(",").map((s) => s.trim()).filter(Boolean);
  const bad = names.filter((n) => !(DRILL_SCENARIOS as readonly string[]).includes(n));
  if (names.length === 0 || bad.length > 0) throw new LlmsupError("LLMSUP_E_CONTROL_BAD_REQUEST", `no drill ${bad.join(", ") || "named"} (drills: ${DRILL_SCENARIOS.join(", ")})`);
  return names as DrillScenario[];
}

export async function runGameday(d: GamedayDeps, spec: GamedaySpec): Promise<Scorecard> {
  const route = pickRoute(d.config, spec.route);
  const scenarios = spec.scenarios ?? gamedayScenarios(d.config, route.model);
  const startedAt = d.clock.now();
  const runs: (DrillReport | NoReport)[] = [];
  for (const scenario of scenarios) {
    if (d.signal.aborted) {
      runs.push({ scenario, outcome: "skipped", reason: "the game day was stopped before this scenario" });
      continue;
    }
    await settle(d, route.model, spec.settleTimeoutMs ?? SETTLE_MS);
    try {
      runs.push(
        await d.drill({
          scenario,
          route: route.model,
          durationMs: spec.durationMs,
          intervalMs: spec.intervalMs ?? GAMEDAY_INTERVAL_MS,
          traffic: spec.traffic,
          signal: d.signal,
          ...(spec.recoveryTimeoutMs !== undefined ? { recoveryTimeoutMs: spec.recoveryTimeoutMs } : {}),
          ...(spec.fault ? { fault: spec.fault } : {}),
        }),
      );
    } catch (e) {
      const refused = e instanceof LlmsupError && e.code === "LLMSUP_E_DRILL_REFUSED";
      runs.push({ scenario, outcome: refused ? "refused" : "error", reason: (e as Error).message });
    }
  }
  return scorecardOf(
    { id: randomBytes(4).toString("hex"), host: d.config.daemon.hostname, route: route.model, startedAt, finishedAt: d.clock.now(), durationMs: spec.durationMs, traffic: spec.traffic, stopped: d.signal.aborted },
    runs,
  );
}

/** Until the route is on its first tier and that tier admissible (or `timeoutMs`, or a stop), then a short quiet. */
async function settle(d: GamedayDeps, model: string, timeoutMs: number): Promise<void> {
  const until = d.clock.now() + timeoutMs;
  const back = () => {
    const r = d.router();
    const route = r.routeFor(model);
    return route !== undefined && r.servingTier(route) === 0 && r.unavailable(route.tiers[0]!) === undefined;
  };
  try {
    while (!back() && d.clock.now() < until) await sleepOn(d.clock, 100, d.signal);
    await sleepOn(d.clock, QUIET_MS, d.signal);
  } catch {
    /* stopped */
  }
}

/** Keeps the scorecard in `<state_dir>/gamedays` as JSON and HTML (the newest KEEP of each); the paths written. */
export async function storeScorecard(stateDir: string, c: Scorecard): Promise<{ json: string; html: string }> {
  const dir = path.join(stateDir, "gamedays");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const base = path.join(dir, `${c.started_at.replace(/[:.]/g, "-")}-${c.id}`);
  await writeJsonAtomic(`${base}.json`, c);
  await writeFile(`${base}.html`, scorecardHtml(c), { mode: 0o600 });
  const names = (await readdir(dir)).filter((n) => n.endsWith(".json")).sort();
  for (const old of names.slice(0, Math.max(0, names.length - KEEP))) {
    const stem = old.slice(0, -".json".length);
    await rm(path.join(dir, `${stem}.json`), { force: true });
    await rm(path.join(dir, `${stem}.html`), { force: true });
  }
  return { json: `${base}.json`, html: `${base}.html` };
}
