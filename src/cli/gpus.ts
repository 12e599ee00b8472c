/**
 * `llmsup gpus [--json] [--config PATH] [--nvidia-smi PATH]`: every GPU with its condition and processes, without the daemon.
 *
 * A one-shot program of its own, so its own composition root: it builds the real
 * dependencies it needs (the wall clock, the program spawner) here, as
 * daemon/wire.ts does for the daemon.
 */
import { DEFAULT_CONFIG_PATH, loadConfigFile } from "../config/load.ts";
import { gpuSchema } from "../config/schema.ts";
import type { ConfigProblem, GpuConfig } from "../config/types.ts";
import { isLlmsupError, LlmsupError } from "../errors/error.ts";
import { EXIT, ERRORS } from "../errors/registry.ts";
import { clockReasonNames, reportJson, type GpuReport } from "../gpu/report.ts";
import { SmiRunner } from "../gpu/runner.ts";
import { takeSnapshot } from "../gpu/snapshot.ts";
import { spawnChild } from "../gpu/spawn.ts";
import { realClock } from "../platform/clock.ts";
import type { GpuFault } from "../gpu/types.ts";
import { READING_FIELDS, READING_JSON_NAME, type ReadingField } from "../gpu/plausible.ts";
import { colourWanted, style, writeJson, type Io, type Style } from "./output.ts";
import { formatProblem } from "./check-config.ts";

export interface GpusOptions {
  readonly json?: boolean;
  readonly config?: string;
  readonly nvidiaSmi?: string;
}

/** [gpu] of the configuration: an explicit file (or $LLMSUP_CONFIG) must load; the default one may be absent. */
export async function gpuConfigFor(opts: GpusOptions, env: NodeJS.ProcessEnv): Promise<GpuConfig> {
  const explicit = opts.config ?? (env.LLMSUP_CONFIG || undefined);
  try {
    return (await loadConfigFile(explicit ?? DEFAULT_CONFIG_PATH)).gpu;
  } catch (e) {
    if (explicit === undefined && isLlmsupError(e) && e.code === "LLMSUP_E_CONFIG_UNREADABLE" && e.details.errno === "ENOENT") return gpuSchema.parse({});
    throw e;
  }
}

export async function gpusCommand(opts: GpusOptions, io: Io): Promise<number> {
  let config: GpuConfig;
  try {
    config = await gpuConfigFor(opts, io.env);
  } catch (e) {
    if (!isLlmsupError(e)) throw e;
    return fail(io, opts, e, (e.details.problems as ConfigProblem[] | undefined) ?? []);
  }
  const path = opts.nvidiaSmi ?? config.nvidia_smi;
  const runner = new SmiRunner({ path, deadlineMs: config.deadline, spawn: spawnChild, clock: realClock });
  const shot = await takeSnapshot(runner, config, realClock);
  if (!shot.ok) {
    const f = shot.failure;
    return fail(io, opts, new LlmsupError(f.code, f.message, { kind: f.kind, busId: f.busId, exitCode: f.exitCode, path }));
  }
  if (opts.json) {
    writeJson(io, { nvidia_smi: path, ...reportJson(shot.report), dropped_fields: shot.dropped, warnings: shot.warnings });
  } else {
    const s = style(colourWanted(io.stdout, io.env));
    io.stdout.write(renderReport(shot.report, s));
    const w = style(colourWanted(io.stderr, io.env));
    for (const warning of shot.warnings) io.stderr.write(`${w.yellow("warning")} ${warning}\n`);
  }
  return EXIT.OK;
}

function fail(io: Io, opts: GpusOptions, e: LlmsupError, problems: readonly ConfigProblem[] = []): number {
  if (opts.json) {
    writeJson(io, { error: { code: e.code, message: e.message, kind: e.details.kind ?? null, bus_id: e.details.busId ?? null, problems } });
  } else {
    const s = style(colourWanted(io.stderr, io.env));
    io.stderr.write(`llmsup gpus: ${s.red("error")} ${e.code}: ${e.message}\n`);
    for (const p of problems) io.stderr.write(`  ${formatProblem(p, s.bold)}\n`);
    if (problems.length === 0 && e.code in ERRORS) io.stderr.write(`  ${ERRORS[e.code].message}\n`);
  }
  return e.exitCode;
}

const num = (n: number | undefined, digits = 0) => (n === undefined ? "-" : n.toFixed(digits));

function table(rows: readonly string[][], right: ReadonlySet<number> = new Set()): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd(),
  );
}

/** The human layout: a GPU table (a stale reading marked `*`), stale readings explained, then faults with their actions, then processes. */
export function renderReport(r: GpuReport, s: Style): string {
  const paint = (condition: string, text: string) => (condition === "ok" ? s.green(text) : condition === "down" ? s.red(text) : condition === "degraded" ? s.yellow(text) : s.dim(text));
  const out: string[] = [];
  if (r.gpus.length === 0) out.push("no GPUs reported");
  else {
    const rows = [["GPU", "NAME", "BUS ID", "TEMP", "UTIL", "MEMORY MiB", "POWER W", "SLOWDOWN", "CONDITION"]];
    for (const g of r.gpus) {
      const x = g.sample;
      const reasons = x ? clockReasonNames(x.reasons).filter((n) => n !== "gpu_idle") : [];
      const mark = (f: ReadingField) => (g.staleFields.has(f) ? "*" : "");
      rows.push([
        String(g.index),
        g.name ?? "-",
        g.busId ?? "-",
        `${x?.temperatureC === undefined ? "-" : `${x.temperatureC}°C`}${mark("temperatureC")}`,
        `${x?.utilizationPct === undefined ? "-" : `${x.utilizationPct}%`}${mark("utilizationPct")}`,
        `${num(x?.memoryUsedMib)}${mark("memoryUsedMib")} / ${num(x?.memoryTotalMib)}${mark("memoryTotalMib")}`,
        `${num(x?.powerDrawW)}${mark("powerDrawW")} / ${num(x?.powerLimitW)}${mark("powerLimitW")}`,
        reasons.join(",") || "-",
        g.condition,
      ]);
    }
    const lines = table(rows, new Set([3, 4, 5, 6]));
    out.push(s.bold(lines[0]!));
    lines.slice(1).forEach((line, i) => {
      const c = r.gpus[i]!.condition;
      out.push(line.slice(0, line.length - c.length) + paint(c, c));
    });
  }
  const stale = staleLines(r);
  if (stale.length > 0) out.push("", s.bold("STALE READINGS"), ...stale);
  out.push("");
  if (r.faults.length === 0) out.push("faults: none");
  else {
    out.push(s.bold("FAULTS"));
    for (const f of r.faults) out.push(...faultLines(f, paint));
  }
  out.push("");
  if (r.processes.length === 0) out.push("processes: none hold GPU memory");
  else {
    out.push(
      ...table([["GPU", "PID", "MEMORY MiB", "NAME"], ...r.processes.map((p) => [p.gpu === undefined ? "?" : String(p.gpu), String(p.pid), num(p.usedMemoryMib), p.processName ?? "-"])], new Set([1, 2])).map(
        (l, i) => (i === 0 ? s.bold(l) : l),
      ),
    );
  }
  return `${out.join("\n")}\n`;
}

/** Readings older than the sample: a GPU with no plausible sample lately, and each implausible field (shown with its last good value, `*` in the table). */
function staleLines(r: GpuReport): string[] {
  const out: string[] = [];
  const when = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
  for (const g of r.gpus) {
    if (g.staleSince !== undefined) out.push(`GPU ${g.index}  no plausible sample since ${when(g.staleSince)}; the readings shown are from ${g.sampledAt === undefined ? "-" : when(g.sampledAt)}`);
    for (const f of READING_FIELDS) {
      const x = g.staleFields.get(f);
      if (x) out.push(`GPU ${g.index}  ${READING_JSON_NAME[f]} read ${x.rejected}, ${x.why}: ignored since ${when(x.since)}; the last good value is shown`);
    }
  }
  return out;
}

function faultLines(f: GpuFault, paint: (c: string, t: string) => string): string[] {
  const where = f.gpu !== null ? `GPU ${f.gpu}` : f.busId ? `GPU ${f.busId}` : "all GPUs";
  return [`${where}  ${paint(f.severity, f.severity.padEnd(8))}  ${f.kind}: ${f.reason}`, `    → ${f.action}`];
}
