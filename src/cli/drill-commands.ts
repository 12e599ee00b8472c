/**
 * `llmsup drill stop`, `llmsup drill gameday`, and the knobs of the router
 * faults (`llmsup drill errors --fraction 0.5`, …); `llmsup drill <scenario>`
 * itself is in daemon-commands.ts.
 */
import { writeFile } from "node:fs/promises";
import { callDaemon } from "../control/client.ts";
import { drillDurationProblem } from "../control/request.ts";
import { parseDuration } from "../config/units.ts";
import { faultQueryFrom, isFaultKind } from "../drills/faults.ts";
import { DRILL_SCENARIOS } from "../drills/report.ts";
import { renderScorecard, scorecardHtml, type Scorecard } from "../drills/scorecard.ts";
import { EXIT } from "../errors/registry.ts";
import { refusedToAct, withDaemon, type TargetOptions } from "./daemon-commands.ts";
import { writeJson, type Io } from "./output.ts";

export interface DrillCliOptions {
  readonly duration?: string;
  readonly route?: string;
  readonly json?: boolean;
  /** false with --no-traffic. */
  readonly traffic?: boolean;
  readonly scenarios?: string;
  readonly html?: string;
  readonly delay?: string;
  readonly fraction?: string;
  readonly status?: string;
  readonly retryAfter?: string;
  readonly chunks?: string;
  readonly seed?: string;
}

const KNOBS = ["delay", "fraction", "status", "retryAfter", "chunks", "seed"] as const;

/** A router fault's knobs as the control socket's query; a usage error (exit 64, said) for a bad one or for knobs on a drill that has none. */
export function faultKnobs(scenario: string, o: DrillCliOptions, io: Io): URLSearchParams | number {
  const given = KNOBS.filter((k) => o[k] !== undefined);
  if (!isFaultKind(scenario)) {
    if (given.length === 0) return new URLSearchParams();
    io.stderr.write(`llmsup drill ${scenario}: --${given[0]!.replace("retryAfter", "retry-after")} applies to the router faults only (latency, errors, rate-limit, stream-cut, quality, block)\n`);
    return EXIT.USAGE;
  }
  const q = faultQueryFrom(o);
  if (typeof q === "string") {
    io.stderr.write(`llmsup drill ${scenario}: ${q}\n`);
    return EXIT.USAGE;
  }
  return q;
}

export async function drillStopCommand(o: TargetOptions & DrillCliOptions, io: Io): Promise<number> {
  return withDaemon(o, io, async (socket) => {
    const r = await callDaemon<{ stopped?: boolean; what?: string; error?: { code: string; message: string } }>(socket, "POST", "/drills/stop");
    const refused = refusedToAct(io, "drill stop", r, o.json);
    if (refused !== undefined) return refused;
    if (r.status !== 200) {
      io.stderr.write(`llmsup drill stop: ${r.body.error?.code}: ${r.body.error?.message}\n`);
      return EXIT.FAILURE;
    }
    if (o.json) writeJson(io, r.body);
    else io.stdout.write(r.body.stopped ? `stopped: ${r.body.what ?? "the router fault in force"}; the failure is lifted, the report follows once the route is back\n` : "no drill is running\n");
    return EXIT.OK;
  });
}

/** `llmsup drill gameday [--route R] [--scenarios a,b] [--duration 30s] [--no-traffic] [--json] [--html FILE]`: exit 0 when every scenario passed, 1 otherwise. */
export async function gamedayCommand(o: TargetOptions & DrillCliOptions, io: Io): Promise<number> {
  const durationMs = parseDuration(o.duration ?? "30s");
  const problem = durationMs === undefined ? undefined : drillDurationProblem(durationMs);
  if (durationMs === undefined || problem !== undefined) {
    io.stderr.write(`llmsup drill gameday: --duration expects a duration from 1ms to 1h such as "30s", found ${JSON.stringify(o.duration)}${problem ? ` (${problem})` : ""}\n`);
    return EXIT.USAGE;
  }
  const names = o.scenarios?.split(",").map((s) => s.trim()).filter(Boolean);
  const unknown = names?.filter((n) => !(DRILL_SCENARIOS as readonly string[]).includes(n)) ?? [];
  if ((names && names.length === 0) || unknown.length > 0) {
    io.stderr.write(`llmsup drill gameday: --scenarios names drills from ${DRILL_SCENARIOS.join(", ")}${unknown.length ? `; unknown: ${unknown.join(", ")}` : ""}\n`);
    return EXIT.USAGE;
  }
  const knobs = faultQueryFrom(o);
  if (typeof knobs === "string") {
    io.stderr.write(`llmsup drill gameday: ${knobs}\n`);
    return EXIT.USAGE;
  }
  return withDaemon(o, io, async (socket) => {
    const q = new URLSearchParams({ duration_ms: String(durationMs), ...(o.route ? { route: o.route } : {}), ...(names ? { scenarios: names.join(",") } : {}), ...(o.traffic === false ? { traffic: "0" } : {}), ...Object.fromEntries(knobs) });
    if (!o.json) io.stderr.write(`game day: ${names ? names.length : "every"} scenario(s), each failure held ${o.duration ?? "30s"}, one after another…\n`);
    const r = await callDaemon<Scorecard & { files?: { json: string; html: string }; error?: { code: string; message: string } }>(socket, "POST", `/drills/gameday?${q}`, (names?.length ?? 9) * (durationMs + 5 * 60_000));
    const refused = refusedToAct(io, "drill gameday", r, o.json);
    if (refused !== undefined) return refused;
    if (r.status !== 200) {
      if (o.json) writeJson(io, r.body);
      else io.stderr.write(`llmsup drill gameday: ${r.body.error?.code}: ${r.body.error?.message}\n`);
      return r.status === 404 || r.status === 400 ? EXIT.USAGE : EXIT.UNAVAILABLE;
    }
    if (o.html) await writeFile(o.html, scorecardHtml(r.body));
    if (o.json) writeJson(io, r.body);
    else {
      io.stdout.write(renderScorecard(r.body));
      if (r.body.files) io.stdout.write(`\nkept in ${r.body.files.json} (and .html)\n`);
      if (o.html) io.stdout.write(`written to ${o.html}\n`);
    }
    return r.body.verdict === "pass" ? EXIT.OK : EXIT.FAILURE;
  });
}
