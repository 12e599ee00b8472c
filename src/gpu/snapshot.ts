/**
 * A one-shot look at every GPU without the daemon (`llmsup gpus`): probe the
 * fields (the answer is the sample), read remapped rows and compute apps,
 * and judge the conditions as they stand now (no hysteresis: one sample is
 * all there is, so a slowdown shows as soon as it is active).
 */
import type { GpuConfig } from "../config/types.ts";
import type { Clock } from "../platform/clock.ts";
import { evaluate, faultConfig, initialFaultState, type FaultState } from "./faults.ts";
import { APP_FIELDS, GPU_CANDIDATES, REMAP_CANDIDATES } from "./fields.ts";
import { parseComputeApps, parseGpuQuery, parseRemappedRows } from "./parse.ts";
import { probeFields, runQuery, type QueryRunner } from "./probe-fields.ts";
import { buildReport, type GpuReport } from "./report.ts";
import type { ComputeApp, RemappedRows, SmiFailure } from "./types.ts";

export type OneShotConfig = Pick<GpuConfig, "temperature_limit" | "memory_full" | "sustain_samples" | "clear_samples" | "event_hold">;

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
  state = evaluate(state, { type: "sample", gpus: probe.parsed.rows, failures: probe.parsed.failures }, at, fc).state;
  if (remapped.length > 0) state = evaluate(state, { type: "remapped", rows: remapped }, at, fc).state;

  const report = buildReport({
    at,
    samples: new Map(probe.parsed.rows.map((s) => [s.index, { sample: s, at }])),
    identities: state.gpus,
    remapped,
    apps,
    faults: [...state.active.values()],
  });
  return { ok: true, report, dropped: probe.dropped, warnings };
}
