/**
 * A one-shot look at every GPU without the daemon (`llmsup gpus`): probe the
 * fields (the answer is the sample), read remapped rows and compute apps,
 * and judge the conditions as they stand now (no hysteresis: one sample is
 * all there is, so a slowdown shows as soon as it is active). Implausible
 * readings are left out (shown as stale, with a warning).
 */
import type { Clock } from "../platform/clock.ts";
import { evaluate, faultConfig, initialFaultState, type FaultState, type FaultThresholds } from "./faults.ts";
import { APP_FIELDS, GPU_CANDIDATES, REMAP_CANDIDATES } from "./fields.ts";
import { parseComputeApps, parseGpuQuery, parseRemappedRows } from "./parse.ts";
import { probeFields, runQuery, type QueryRunner } from "./probe-fields.ts";
import { carryForward, READING_JSON_NAME, type Reading } from "./plausible.ts";
import { buildReport, type GpuReport } from "./report.ts";
import type { ComputeApp, RemappedRows, SmiFailure } from "./types.ts";

export type OneShotConfig = FaultThresholds;

export type OneShot =
  | {
      readonly ok: true;
      readonly report: GpuReport;
      /** Fields this driver did not know, and other things worth saying. */
      readonly dropped: readonly string[];
      readonly warnings: readonly string[];
    }
  | { readonly ok: false; readonly failure: SmiFailure };

export async function takeSnapshot(runner: QueryRunner, config: OneShotConfig, clock: Clock): Promise<OneShot> {
  const probe = await probeFields(runner, "--query-gpu", GPU_CANDIDATES, parseGpuQuery);
  if (!probe.ok) return { ok: false, failure: probe.failure };
  const at = clock.now();
  const warnings = probe.parsed.problems.map((p) => `nvidia-smi: ${p.message}`);

  let remapped: RemappedRows[] = [];
  const remap = await probeFields(runner, "--query-remapped-rows", REMAP_CANDIDATES, parseRemappedRows);
  if (remap.ok) remapped = remap.parsed.rows;
  else if (remap.failure.kind !== "invalid_field" && remap.failure.kind !== "invalid_arguments") warnings.push(`remapped rows unknown: ${remap.failure.message}`);

  let apps: ComputeApp[] = [];
  const a = await runQuery(runner, "--query-compute-apps", APP_FIELDS, parseComputeApps);
  if (a.ok) apps = a.parsed.rows;
  else warnings.push(`processes unknown: ${a.failure.message}`);

  const fc = { ...faultConfig(config), sustainSamples: 1 };
  let state: FaultState = initialFaultState();
  const sampled = evaluate(state, { type: "sample", gpus: probe.parsed.rows, failures: probe.parsed.failures }, at, fc);
  state = sampled.state;
  if (remapped.length > 0) state = evaluate(state, { type: "remapped", rows: remapped }, at, fc).state;
  const readings = new Map<number, Reading>();
  for (const o of sampled.observed ?? []) {
    for (const x of o.screened.rejected) warnings.push(`GPU ${o.index}: ${READING_JSON_NAME[x.field]} reads ${x.value}, ${x.why}: ignored`);
    const reading = carryForward(undefined, o.screened, at);
    if (reading) readings.set(o.index, reading);
  }

  const report = buildReport({
    at,
    samples: readings,
    identities: state.gpus,
    remapped,
    apps,
    faults: [...state.active.values()],
  });
  return { ok: true, report, dropped: probe.dropped, warnings };
}
