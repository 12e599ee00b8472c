/**
 * Field probing: find the fields this driver knows before sampling, so one
 * unknown field cannot blind the monitor. nvidia-smi rejects a whole query
 * for one unknown field but names it (`Field "x" is not a valid field to
 * query.`), so the probe asks for everything, and on a rejection moves that
 * field (and its family) to its older name or drops it, and asks again: a
 * handful of queries at most, never one process per field. The successful
 * answer is a real sample.
 */
import { isLlmsupError } from "../errors/error.ts";
import { afterRejection, CSV_FORMAT, initialSelection, queryArgument, type CandidateField, type SelectedField } from "./fields.ts";
import { interpret, type Parsed } from "./parse.ts";
import { classifyFailure } from "./parse.ts";
import type { SmiRun } from "./runner.ts";
import type { SmiFailure } from "./types.ts";

export interface QueryRunner {
  query(args: readonly string[]): Promise<SmiRun>;
}

export type QueryOption = "--query-gpu" | "--query-remapped-rows" | "--query-compute-apps";

export type ProbeResult<K extends string, T> =
  | {
      readonly ok: true;
      readonly fields: SelectedField<K>[];
      /** The answer to the query that succeeded. */
      readonly parsed: Parsed<T>;
      /** Field names given up on, and names replaced by older ones. */
      readonly dropped: readonly string[];
      readonly replaced: readonly string[];
      readonly attempts: number;
    }
  | { readonly ok: false; readonly failure: SmiFailure; readonly dropped: readonly string[]; readonly attempts: number };

/** A runner's rejection as a failure; anything that is not a GPU error is rethrown. */
export function failureFromError(e: unknown): SmiFailure {
  if (isLlmsupError(e)) {
    if (e.code === "LLMSUP_E_GPU_SMI_MISSING") return { kind: "missing", code: e.code, message: e.message };
    if (e.code === "LLMSUP_E_GPU_UNRESPONSIVE") return { kind: "unresponsive", code: e.code, message: e.message };
  }
  throw e;
}

/** Runs one query and reads it; failures (a rejecting runner included) come back as values. */
export async function runQuery<K extends string, T>(
  runner: QueryRunner,
  option: QueryOption,
  fields: readonly SelectedField<K>[],
  parse: (output: string, fields: readonly SelectedField<K>[]) => Parsed<T>,
  extraArgs: readonly string[] = [],
): Promise<{ ok: true; parsed: Parsed<T>; run: SmiRun } | { ok: false; failure: SmiFailure }> {
  let run: SmiRun;
  try {
    run = await runner.query([queryArgument(option, fields), CSV_FORMAT, ...extraArgs]);
  } catch (e) {
    return { ok: false, failure: failureFromError(e) };
  }
  const outcome = interpret(parse(run.output, fields), run.output, run.exitCode);
  return outcome.ok ? { ok: true, parsed: outcome.parsed, run } : { ok: false, failure: outcome.failure };
}

export async function probeFields<K extends string, T>(
  runner: QueryRunner,
  option: QueryOption,
  candidates: readonly CandidateField<K>[],
  parse: (output: string, fields: readonly SelectedField<K>[]) => Parsed<T>,
): Promise<ProbeResult<K, T>> {
  let selection = initialSelection(candidates);
  const dropped: string[] = [];
  const replaced: string[] = [];
  const maxAttempts = candidates.reduce((n, c) => n + c.names.length, 1);
  for (let attempts = 1; attempts <= maxAttempts; attempts++) {
    const r = await runQuery(runner, option, selection, parse);
    if (r.ok) return { ok: true, fields: selection, parsed: r.parsed, dropped, replaced, attempts };
    if (r.failure.kind !== "invalid_field" || r.failure.field === undefined) return { ok: false, failure: r.failure, dropped, attempts };
    const next = afterRejection(candidates, selection, r.failure.field);
    if (!next.ok) return { ok: false, failure: { ...r.failure, message: `${r.failure.message} (${next.reason})` }, dropped, attempts };
    selection = next.selection;
    dropped.push(...next.dropped);
    replaced.push(...next.replaced);
  }
  return { ok: false, failure: classifyFailure("nvidia-smi kept rejecting fields", 2), dropped, attempts: maxAttempts };
}
