/**
 * `nvidia-smi -r` / `--gpu-reset` of the simulated nvidia-smi, without I/O:
 * parse the command line, and decide the reset on a state snapshot as the
 * real tool does.
 *
 * Facts reproduced:
 * - `-i`/`--id` picks the GPUs (index, UUID or PCI bus id, comma-separated);
 *   without it every GPU is reset;
 * - a GPU that a live compute process holds is not reset: the tool names it
 *   ("GPU 00000000:3B:00.0 is currently in use by another process."), says
 *   how many devices are in use and to kill their processes first, resets
 *   nothing and exits non-zero (255, "other error");
 * - otherwise each GPU is reset ("GPU 00000000:3B:00.0 was successfully
 *   reset."), then "All done.", exit 0; a reset clears what only a reset
 *   clears: the recovery action asked for, "[GPU requires reset]", the
 *   volatile ECC counters, pending row remaps and pending page retirements;
 * - a driver failure (not loaded, lost GPU, hang) answers as it does for
 *   every other command; an id that names no GPU: "No devices were found".
 */
import type { SimGpu, SimGpuState } from "../gpu/state.ts";
import { EXIT_SMI, INVALID_ARGUMENTS, NO_DEVICES, failureResult, shortBusId, type SmiResult } from "./format.ts";

export interface ResetArgs {
  /** GPUs selected by index, UUID or PCI bus id; null for all. */
  readonly ids: readonly string[] | null;
}

/** Whether the command line asks for a GPU reset. */
export function isResetCommand(argv: readonly string[]): boolean {
  return argv.some((a) => a === "-r" || a === "--gpu-reset");
}

/** Parses `-r [-i IDS]`; anything else beside it is an invalid combination (exit 2). */
export function parseResetArgs(argv: readonly string[]): { ok: true; args: ResetArgs } | { ok: false; result: SmiResult } {
  let ids: string[] | null = null;
  let reset = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    if (name === "-r" || name === "--gpu-reset") {
      if (reset || eq >= 0) return { ok: false, result: INVALID_ARGUMENTS };
      reset = true;
    } else if (name === "-i" || name === "--id") {
      const v = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
      if (!v || ids) return { ok: false, result: INVALID_ARGUMENTS };
      ids = v.split(",").map((s) => s.trim());
    } else {
      return { ok: false, result: INVALID_ARGUMENTS };
    }
  }
  return reset ? { ok: true, args: { ids } } : { ok: false, result: INVALID_ARGUMENTS };
}

function pick(state: SimGpuState, ids: readonly string[] | null): SimGpu[] | null {
  const gpus = [...state.gpus].sort((a, b) => a.index - b.index);
  if (ids === null) return gpus;
  const picked: SimGpu[] = [];
  for (const id of ids) {
    const gpu = gpus.find((g) => String(g.index) === id || g.uuid === id || shortBusId(g.pci_bus_id).toUpperCase() === shortBusId(id).toUpperCase());
    if (!gpu) return null;
    if (!picked.includes(gpu)) picked.push(gpu);
  }
  return picked.sort((a, b) => a.index - b.index);
}

/** A GPU as the reset leaves it: nothing a reset cures is pending any more. */
function afterReset(g: SimGpu): SimGpu {
  return {
    ...g,
    recovery_action: "None",
    requires_reset: false,
    ecc_uncorrected_volatile: g.ecc_uncorrected_volatile === null ? null : 0,
    ecc_corrected_volatile: g.ecc_corrected_volatile === null ? null : 0,
    retired_pages_pending: g.retired_pages_pending === null ? null : false,
    remapped_rows: g.remapped_rows === null ? null : { ...g.remapped_rows, pending: false },
  };
}

/**
 * The reset of the selected GPUs on `state`: what nvidia-smi prints, and the
 * state after it (undefined when nothing changed). `alive` says whether a
 * listed compute process still runs (a dead one holds nothing).
 */
export function resetGpus(state: SimGpuState, args: ResetArgs, alive: (pid: number) => boolean): { result: SmiResult | "hang"; state?: SimGpuState } {
  const failure = failureResult(state);
  if (failure !== null) return { result: failure };
  if (state.gpus.length === 0) return { result: NO_DEVICES };
  const gpus = pick(state, args.ids);
  if (gpus === null) return { result: NO_DEVICES };
  const busy = gpus.filter((g) => state.processes.some((p) => p.gpu_uuid === g.uuid && alive(p.pid)));
  if (busy.length > 0) {
    const n = busy.length;
    const stdout =
      busy.map((g) => `GPU ${g.pci_bus_id} is currently in use by another process.\n`).join("") +
      `\n${n} ${n === 1 ? "device is" : "devices are"} currently being used by one or more other processes (e.g., Fabric Manager, CUDA application, graphics application such as an X server, or a monitoring application such as another instance of nvidia-smi). Please first kill all processes using ${n === 1 ? "this device" : "these devices"} and all compute applications running in the system.\n`;
    return { result: { stdout, stderr: "", exitCode: EXIT_SMI.UNKNOWN } };
  }
  const chosen = new Set(gpus.map((g) => g.index));
  const next: SimGpuState = { ...state, gpus: state.gpus.map((g) => (chosen.has(g.index) ? afterReset(g) : g)) };
  const stdout = `${gpus.map((g) => `GPU ${g.pci_bus_id} was successfully reset.\n`).join("")}All done.\n`;
  return { result: { stdout, stderr: "", exitCode: EXIT_SMI.OK }, state: next };
}
