/**
 * Pure parsers for nvidia-smi's CSV (`--format=csv,noheader,nounits`) and
 * for its whole-command failures. No I/O; nothing here throws on bad input:
 * every line becomes a row, a recognised failure, or a quoted problem.
 *
 * Cells: `[N/A]`, `[Not Supported]`, `[Unknown Error]` (and any other
 * bracketed note) mean "no value"; `[GPU requires reset]` is a fault.
 */
import type { AppFieldKey, GpuFieldKey, RemapFieldKey, SelectedField } from "./fields.ts";
import { APP_FIELDS } from "./fields.ts";
import { normalizeBusId } from "./bus-id.ts";
import type { ClockReasons, ComputeApp, GpuSample, RemappedRows, SmiFailure } from "./types.ts";

export const REQUIRES_RESET = "[GPU requires reset]";

export type Cell = { readonly kind: "value"; readonly text: string } | { readonly kind: "none"; readonly text: string } | { readonly kind: "reset" };

/** One cell: a value, no value ([N/A] and friends), or the requires-reset marker. */
export function readCell(raw: string): Cell {
  const text = raw.trim();
  if (text === REQUIRES_RESET) return { kind: "reset" };
  if (text === "" || text === "N/A" || /^\[[^\]]*\]$/.test(text)) return { kind: "none", text };
  return { kind: "value", text };
}

/**
 * A number, tolerating a unit nvidia-smi added anyway ("81559 MiB", "69.80 W", "87 %").
 * Finite or nothing: 400 digits are no reading (Number() would make them Infinity).
 */
export function parseNumber(text: string): number | undefined {
  const m = /^(-?\d+(?:\.\d+)?)(?:\s*(?:%|[KMG]iB|W|MHz|C))?$/.exec(text);
  const n = m ? Number(m[1]) : undefined;
  return n !== undefined && Number.isFinite(n) ? n : undefined;
}

/** "0x0000000000000044" → 0x44 (the low 32 bits hold every reason NVML defines). */
export function parseMask(text: string): number | undefined {
  if (!/^0x[0-9a-fA-F]{1,16}$/.test(text)) return undefined;
  return Number(BigInt.asUintN(32, BigInt(text)));
}

export function parseActive(text: string): boolean | undefined {
  return text === "Active" ? true : text === "Not Active" ? false : undefined;
}

export function parseYesNo(text: string): boolean | undefined {
  return text === "Yes" ? true : text === "No" ? false : undefined;
}

/**
 * Splits a row into `count` cells. Cells are separated by ", "; a free-text
 * column (a GPU or process name) takes back any extra cells its text produced.
 */
export function splitRow(line: string, fields: readonly SelectedField[]): string[] | undefined {
  const parts = line.split(", ");
  const extra = parts.length - fields.length;
  if (extra === 0) return parts;
  const free = fields.findIndex((f) => f.freeText);
  if (extra < 0 || free < 0) return undefined;
  return [...parts.slice(0, free), parts.slice(free, free + extra + 1).join(", "), ...parts.slice(free + extra + 1)];
}

const FAILURES: readonly { re: RegExp; make: (m: RegExpExecArray, line: string) => Omit<SmiFailure, "exitCode"> }[] = [
  {
    re: /NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver/,
    make: (_m, line) => ({ kind: "driver_not_loaded", code: "LLMSUP_E_GPU_DRIVER_NOT_LOADED", message: line }),
  },
  {
    // Both "GPU 0000:02:00.0:" and "GPU0000:0B:00.0:" occur. The reason runs to the end of the line (no `$`:
    // with a line break inside the text, `.*$` backtracks quadratically over repeated heads).
    re: /Unable to determine the device handle for GPU ?([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}(?:\.[0-7])?): *(.*)/,
    make: (m, line) => {
      const busId = normalizeBusId(m[1] as string);
      return /GPU is lost/i.test(m[2] as string)
        ? { kind: "gpu_lost", code: "LLMSUP_E_GPU_LOST", message: line, busId }
        : { kind: "device_error", code: "LLMSUP_E_GPU_DEVICE_ERROR", message: line, busId };
    },
  },
  {
    re: /Failed to initialize NVML: Driver\/library version mismatch/,
    make: (_m, line) => ({ kind: "nvml_mismatch", code: "LLMSUP_E_GPU_NVML_MISMATCH", message: line }),
  },
  {
    re: /^No devices were found/,
    make: (_m, line) => ({ kind: "no_devices", code: "LLMSUP_E_GPU_NO_DEVICES", message: line }),
  },
  {
    re: /^Field "([^"]+)" is not a valid field to query/,
    make: (m, line) => ({ kind: "invalid_field", code: "LLMSUP_E_GPU_FIELD_UNSUPPORTED", message: line, field: m[1] as string }),
  },
  {
    re: /^Invalid combination of input arguments/,
    make: (_m, line) => ({ kind: "invalid_arguments", code: "LLMSUP_E_GPU_SMI_FAILED", message: line }),
  },
];

/** The failure one line of nvidia-smi output reports, if it is one we know. */
export function failureFromLine(line: string, exitCode?: number | null): SmiFailure | undefined {
  const text = line.trim();
  for (const f of FAILURES) {
    const m = f.re.exec(text);
    if (m) return exitCode === undefined ? f.make(m, text) : { ...f.make(m, text), exitCode };
  }
  return undefined;
}

/** Why a command that exited `exitCode` with `output` gave no usable answer. Never undefined: unknown failures are "failed". */
export function classifyFailure(output: string, exitCode: number | null): SmiFailure {
  const lines = output.split("\n").map((l) => l.trim()).filter(Boolean);
  for (const line of lines) {
    const known = failureFromLine(line, exitCode);
    if (known) return known;
  }
  const said = lines.slice(0, 3).join(" / ");
  return {
    kind: "failed",
    code: "LLMSUP_E_GPU_SMI_FAILED",
    message: `nvidia-smi exited with status ${exitCode ?? "(signal)"}${said ? `: ${said}` : " and printed nothing"}`,
    exitCode,
  };
}

/**
 * Why a loop-mode nvidia-smi ended, from what it left unread: the failure
 * line it printed (which ended its sample stream) whatever its exit status;
 * else its status; a loop that exits 0 by itself has still failed.
 */
export function loopExitFailure(leftover: string, exitCode: number | null): SmiFailure {
  const said = classifyFailure(leftover, exitCode);
  if (said.kind !== "failed" || exitCode !== 0) return said;
  return { kind: "failed", code: "LLMSUP_E_GPU_SMI_FAILED", message: "the nvidia-smi loop ended on its own", exitCode: 0 };
}

/** A line that is neither a row nor a known failure. */
export interface Problem {
  readonly line: string;
  readonly message: string;
}

export interface Parsed<T> {
  readonly rows: T[];
  /** Device-handle and other failure lines among the rows. */
  readonly failures: SmiFailure[];
  readonly problems: Problem[];
}

function parseLines<K extends string, T>(
  output: string,
  fields: readonly SelectedField<K>[],
  build: (cells: Cells<K>, position: number, problems: Problem[], line: string) => T | undefined,
): Parsed<T> {
  const result: Parsed<T> = { rows: [], failures: [], problems: [] };
  let position = 0;
  for (const raw of output.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (line.trim() === "") continue;
    const failure = failureFromLine(line);
    if (failure) {
      result.failures.push(failure);
      position++;
      continue;
    }
    const cells = splitRow(line, fields);
    if (!cells) {
      result.problems.push({ line, message: `expected ${fields.length} comma-separated values, got ${line.split(", ").length}: "${line}"` });
      continue;
    }
    const map: Cells<K> = new Map(fields.map((f, i) => [f.key, { name: f.name, cell: readCell(cells[i] as string) }]));
    const row = build(map, position++, result.problems, line);
    if (row !== undefined) result.rows.push(row);
  }
  return result;
}

type Cells<K extends string> = ReadonlyMap<K, { readonly name: string; readonly cell: Cell }>;

/** Typed reads of one row's cells, recording cells that do not read as their type. */
function reader<K extends string>(cells: Cells<K>, problems: Problem[], line: string) {
  const value = <T>(key: K, convert: (text: string) => T | undefined): T | undefined => {
    const entry = cells.get(key);
    if (!entry || entry.cell.kind !== "value") return undefined;
    const v = convert(entry.cell.text);
    if (v === undefined) problems.push({ line, message: `${entry.name}: unexpected value "${entry.cell.text}"` });
    return v;
  };
  return {
    value,
    text: (key: K) => value(key, (t) => t),
    number: (key: K) => value(key, parseNumber),
    reset: () => [...cells.values()].some((c) => c.cell.kind === "reset"),
  };
}

/** `--query-gpu` output → one sample per GPU (plus device-handle failures and problems). */
export function parseGpuQuery(output: string, fields: readonly SelectedField<GpuFieldKey>[]): Parsed<GpuSample> {
  return parseLines(output, fields, (cells, position, problems, line) => {
    const r = reader(cells, problems, line);
    // A 400-digit "index" is no index: the row keeps its position.
    const int = (t: string) => (/^\d+$/.test(t) && Number.isSafeInteger(Number(t)) ? Number(t) : undefined);
    const reasons: ClockReasons = {
      mask: r.value("reasonsActive", parseMask),
      hwSlowdown: r.value("hwSlowdown", parseActive),
      hwThermalSlowdown: r.value("hwThermalSlowdown", parseActive),
      swThermalSlowdown: r.value("swThermalSlowdown", parseActive),
      hwPowerBrakeSlowdown: r.value("hwPowerBrakeSlowdown", parseActive),
      swPowerCap: r.value("swPowerCap", parseActive),
    };
    const bus = r.text("busId");
    return {
      index: r.value("index", int) ?? position,
      uuid: r.text("uuid"),
      name: r.text("name"),
      busId: bus === undefined ? undefined : (normalizeBusId(bus) ?? bus),
      temperatureC: r.number("temperature"),
      memoryTemperatureC: r.number("memoryTemperature"),
      utilizationPct: r.number("utilization"),
      memoryUsedMib: r.number("memoryUsed"),
      memoryTotalMib: r.number("memoryTotal"),
      powerDrawW: r.number("powerDraw"),
      powerLimitW: r.number("powerLimit"),
      pstate: r.text("pstate"),
      reasons,
      eccUncorrected: r.number("eccUncorrected"),
      eccCorrected: r.number("eccCorrected"),
      retiredPagesPending: r.value("retiredPagesPending", parseYesNo),
      recoveryAction: r.text("recoveryAction"),
      requiresReset: r.reset(),
    };
  });
}

/** `--query-compute-apps` output → processes holding GPU memory. A row without a pid or uuid is a problem. */
export function parseComputeApps(output: string, fields: readonly SelectedField<AppFieldKey>[] = APP_FIELDS): Parsed<ComputeApp> {
  return parseLines(output, fields, (cells, _position, problems, line) => {
    const r = reader(cells, problems, line);
    const pid = r.value("pid", (t) => (/^\d+$/.test(t) && Number.isSafeInteger(Number(t)) ? Number(t) : undefined));
    const gpuUuid = r.text("uuid");
    if (pid === undefined || gpuUuid === undefined) {
      problems.push({ line, message: `a compute process without a readable pid and GPU uuid: "${line}"` });
      return undefined;
    }
    return { pid, gpuUuid, usedMemoryMib: r.number("usedMemory"), processName: r.text("processName") };
  });
}

/** `--query-remapped-rows` output → per-GPU row remapping state ([N/A] everywhere on GPUs without it). */
export function parseRemappedRows(output: string, fields: readonly SelectedField<RemapFieldKey>[]): Parsed<RemappedRows> {
  return parseLines(output, fields, (cells, _position, problems, line) => {
    const r = reader(cells, problems, line);
    const gpuUuid = r.text("uuid");
    if (gpuUuid === undefined) {
      problems.push({ line, message: `remapped rows without a readable GPU uuid: "${line}"` });
      return undefined;
    }
    const bus = r.text("busId");
    return {
      gpuUuid,
      busId: bus === undefined ? undefined : (normalizeBusId(bus) ?? bus),
      correctable: r.number("correctable"),
      uncorrectable: r.number("uncorrectable"),
      pending: r.value("pending", parseYesNo),
      failure: r.value("failure", parseYesNo),
    };
  });
}

/**
 * The outcome of one finished query: rows when nvidia-smi exited 0 and said
 * something readable, otherwise the failure (device-handle errors first, as
 * they name the GPU).
 */
export function interpret<T>(parsed: Parsed<T>, output: string, exitCode: number | null): { ok: true; parsed: Parsed<T> } | { ok: false; failure: SmiFailure } {
  if (exitCode === 0) {
    if (parsed.rows.length > 0 || parsed.failures.length > 0) return { ok: true, parsed };
    const first = parsed.problems[0];
    if (first) return { ok: false, failure: { kind: "bad_output", code: "LLMSUP_E_GPU_SMI_OUTPUT", message: `nvidia-smi printed something unexpected: ${first.message}`, exitCode } };
    return { ok: true, parsed };
  }
  const failure = parsed.failures[0];
  if (failure && parsed.rows.length > 0) return { ok: true, parsed };
  return { ok: false, failure: failure ? { ...failure, exitCode } : classifyFailure(output, exitCode) };
}
