/**
 * The simulated nvidia-smi without I/O: parse its command line, and render one
 * sample of a state snapshot exactly as the real tool prints it.
 *
 * Facts reproduced (see docs of the real tool and REFERENCE.md):
 * - everything, errors included, goes to stdout;
 * - cells are joined by ", ", one line per GPU / per process / per GPU for remapped rows;
 * - the CSV header carries units in brackets even with `nounits`; values carry
 *   them unless `nounits`; absent values read `[N/A]` without a unit;
 * - an unknown field rejects the whole query: `Field "x" is not a valid field to query.` + blank line, exit 2;
 * - return codes: 2 bad argument, 6 object not found, 9 driver not loaded,
 *   15 GPU inaccessible, 18 NVML driver/library mismatch, 255 other error.
 */
import type { SimComputeProcess, SimGpu, SimGpuState } from "../gpu/state.ts";
import { COMPUTE_APP_FIELDS, GPU_FIELDS, REMAPPED_ROW_FIELDS, resolveField } from "./fields.ts";
import type { Field } from "./fields.ts";

export interface SmiResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

export type QueryKind = "gpu" | "compute-apps" | "remapped-rows";

export interface SmiArgs {
  /** What to print: a CSV query, or the `-L` GPU list. */
  readonly query: { readonly kind: QueryKind; readonly fields: readonly string[] } | { readonly kind: "list" };
  readonly header: boolean;
  readonly units: boolean;
  /** Sample period in loop mode (`-l`, `-lms`), or null for one sample. */
  readonly loopMs: number | null;
  /** `-i`/`--id`: GPUs selected by index, UUID or PCI bus id; null for all. */
  readonly ids: readonly string[] | null;
}

export const EXIT_SMI = { OK: 0, INVALID_ARGUMENT: 2, NOT_FOUND: 6, DRIVER_NOT_LOADED: 9, GPU_LOST: 15, LIB_RM_VERSION_MISMATCH: 18, UNKNOWN: 255 } as const;

const ok = (stdout: string): SmiResult => ({ stdout, stderr: "", exitCode: EXIT_SMI.OK });
const fail = (stdout: string, exitCode: number): SmiResult => ({ stdout, stderr: "", exitCode });

export const INVALID_ARGUMENTS = fail("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n\n", EXIT_SMI.INVALID_ARGUMENT);
export const DRIVER_NOT_LOADED = fail(
  "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n\n",
  EXIT_SMI.DRIVER_NOT_LOADED,
);
export const NO_DEVICES = fail("No devices were found\n", EXIT_SMI.NOT_FOUND);

const QUERY_OPTIONS: Record<string, QueryKind> = {
  "--query-gpu": "gpu",
  "--query-compute-apps": "compute-apps",
  "--query-remapped-rows": "remapped-rows",
};

/** Parses the real tool's options used by monitors; anything else is an invalid combination (exit 2). */
export function parseSmiArgs(argv: readonly string[]): { ok: true; args: SmiArgs } | { ok: false; result: SmiResult } {
  let query: SmiArgs["query"] | undefined;
  let format: string | undefined;
  let loopMs: number | null = null;
  let ids: string[] | null = null;
  const bad = { ok: false as const, result: INVALID_ARGUMENTS };

  let i = 0;
  while (i < argv.length) {
    const arg = argv[i++] as string;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const value = eq >= 0 ? arg.slice(eq + 1) : undefined;
    const takeValue = (): string | undefined => value ?? argv[i++];
    if (name in QUERY_OPTIONS) {
      const list = takeValue();
      if (!list || query) return bad;
      query = { kind: QUERY_OPTIONS[name] as QueryKind, fields: list.split(",").map((f) => f.trim()) };
    } else if (name === "-L" || name === "--list-gpus") {
      if (query) return bad;
      query = { kind: "list" };
    } else if (name === "--format") {
      format = takeValue();
    } else if (name === "-i" || name === "--id") {
      const v = takeValue();
      if (!v) return bad;
      ids = v.split(",").map((s) => s.trim());
    } else if (name === "-lms" || name === "--loop-ms") {
      const ms = Number(takeValue());
      if (!Number.isInteger(ms) || ms <= 0) return bad;
      loopMs = ms;
    } else if (name === "-l" || name === "--loop") {
      // The interval in seconds is optional (default 5).
      let seconds = 5;
      if (value !== undefined) seconds = Number(value);
      else if (/^\d+$/.test(argv[i] ?? "")) seconds = Number(argv[i++]);
      if (!Number.isInteger(seconds) || seconds <= 0) return bad;
      loopMs = seconds * 1000;
    } else {
      return bad;
    }
  }
  if (!query) return bad;
  let header = true;
  let units = true;
  if (query.kind !== "list") {
    const opts = (format ?? "").split(",").map((s) => s.trim());
    if (!opts.includes("csv") || opts.some((o) => !["csv", "noheader", "nounits"].includes(o))) return bad;
    header = !opts.includes("noheader");
    units = !opts.includes("nounits");
  }
  return { ok: true, args: { query, header, units, loopMs, ids } };
}

/** nvidia-smi names a device by the 4-digit-domain bus id in device-handle errors: "0000:3B:00.0". */
export function shortBusId(busId: string): string {
  return busId.replace(/^0{4}([0-9a-fA-F]{4}:)/, "$1");
}

/** The whole-command failure the state asks for; "hang" means never answer. */
export function failureResult(state: SimGpuState): SmiResult | "hang" | null {
  const bus = shortBusId(state.failure_bus_id);
  switch (state.failure) {
    case null:
      return null;
    case "hang":
      return "hang";
    case "driver_not_loaded":
      return DRIVER_NOT_LOADED;
    case "no_devices":
      return NO_DEVICES;
    case "nvml_mismatch":
      return fail(
        `Failed to initialize NVML: Driver/library version mismatch\nNVML library version: ${state.driver_version.split(".").slice(0, 2).join(".")}\n`,
        EXIT_SMI.LIB_RM_VERSION_MISMATCH,
      );
    case "gpu_lost":
      return fail(`Unable to determine the device handle for GPU ${bus}: GPU is lost. Reboot the system to recover this GPU\n`, EXIT_SMI.GPU_LOST);
    case "unknown_error":
      return fail(`Unable to determine the device handle for GPU${bus}: Unknown Error\n`, EXIT_SMI.UNKNOWN);
  }
}

function sameBus(a: string, b: string): boolean {
  return shortBusId(a).toUpperCase() === shortBusId(b).toUpperCase();
}

/** The GPUs `-i` selects, in index order; null when an id matches none. */
function selectGpus(state: SimGpuState, ids: readonly string[] | null): SimGpu[] | null {
  const gpus = [...state.gpus].sort((a, b) => a.index - b.index);
  if (ids === null) return gpus;
  const picked: SimGpu[] = [];
  for (const id of ids) {
    const gpu = gpus.find((g) => String(g.index) === id || g.uuid === id || sameBus(g.pci_bus_id, id));
    if (!gpu) return null;
    if (!picked.includes(gpu)) picked.push(gpu);
  }
  return picked.sort((a, b) => a.index - b.index);
}

interface Column<Row> {
  readonly queried: string;
  readonly field: Field<Row>;
}

function columns<Row>(table: readonly Field<Row>[], names: readonly string[], oldDriver: boolean): Column<Row>[] | SmiResult {
  const out: Column<Row>[] = [];
  for (const queried of names) {
    const field = resolveField(table, queried, oldDriver);
    if (!field) return fail(`Field "${queried}" is not a valid field to query.\n\n`, EXIT_SMI.INVALID_ARGUMENT);
    out.push({ queried, field });
  }
  return out;
}

function headerLine(cols: readonly Column<unknown>[]): string {
  return `${cols.map(({ field }) => (field.unit ? `${field.name} [${field.unit}]` : field.name)).join(", ")}\n`;
}

function cell<Row>(col: Column<Row>, row: Row, units: boolean, gpu: SimGpu | undefined): string {
  if (gpu?.requires_reset) return "[GPU requires reset]";
  const override = gpu?.cells[col.field.name] ?? gpu?.cells[col.queried];
  if (override !== undefined) return override;
  const value = col.field.read(row);
  if (value === null) return "[N/A]";
  return units && col.field.unit ? `${value} ${col.field.unit}` : value;
}

function table<Row>(cols: readonly Column<Row>[], rows: readonly { row: Row; gpu: SimGpu | undefined }[], args: SmiArgs, header: boolean): string {
  const lines = rows.map(({ row, gpu }) => `${cols.map((c) => cell(c, row, args.units, gpu)).join(", ")}\n`);
  return (header ? headerLine(cols as Column<unknown>[]) : "") + lines.join("");
}

/** Compute processes of the selected GPUs, GPU by GPU in index order. */
function processesOf(state: SimGpuState, gpus: readonly SimGpu[]): { process: SimComputeProcess; gpu: SimGpu }[] {
  return gpus.flatMap((gpu) => state.processes.filter((p) => p.gpu_uuid === gpu.uuid).map((process) => ({ process, gpu })));
}

/**
 * One sample. `header` says whether to print the CSV header (the first
 * sample of a loop only). Fields are checked before the driver is touched, as
 * the real tool parses its arguments before initialising NVML.
 */
export function renderSample(args: SmiArgs, state: SimGpuState, options: { header: boolean; now?: Date }): SmiResult | "hang" {
  const now = options.now ?? new Date();
  const header = options.header && args.header;
  const query = args.query;
  const oldDriver = state.old_driver;

  let render: (gpus: SimGpu[]) => string;
  if (query.kind === "list") {
    render = (gpus) => gpus.map((g) => `GPU ${g.index}: ${g.name} (UUID: ${g.uuid})\n`).join("");
  } else if (query.kind === "compute-apps") {
    const cols = columns(COMPUTE_APP_FIELDS, query.fields, oldDriver);
    if (!Array.isArray(cols)) return cols;
    render = (gpus) => table(cols, processesOf(state, gpus).map(({ process, gpu }) => ({ row: { process, gpu, now }, gpu: undefined })), args, header);
  } else {
    const cols = columns(query.kind === "gpu" ? GPU_FIELDS : REMAPPED_ROW_FIELDS, query.fields, oldDriver);
    if (!Array.isArray(cols)) return cols;
    render = (gpus) => table(cols, gpus.map((gpu) => ({ row: { gpu, state, now }, gpu })), args, header);
  }

  const failure = failureResult(state);
  if (failure !== null) return failure;
  if (state.gpus.length === 0) return NO_DEVICES;
  const gpus = selectGpus(state, args.ids);
  if (gpus === null) return NO_DEVICES;
  return ok(render(gpus));
}
