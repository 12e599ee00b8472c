/**
 * Simulated GPUs: one JSON file describes the GPUs of a simulated box and the
 * compute processes holding their memory. Simulated backends register their
 * pid and memory when they finish loading and remove it on a clean exit only;
 * the simulated nvidia-smi reads it. A process that died without cleaning up
 * stays listed until its pid is really gone — exactly the orphan case real
 * drivers show.
 *
 * Read-modify-write goes through a lock file and an atomic rename, so several
 * processes can share one state file.
 */
import { readFileSync } from "node:fs";
import { open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/** Whole-command failures the simulated nvidia-smi reproduces. */
export const SIM_SMI_FAILURES = ["driver_not_loaded", "gpu_lost", "nvml_mismatch", "no_devices", "unknown_error", "hang"] as const;
export type SimSmiFailure = (typeof SIM_SMI_FAILURES)[number];

/** What gpu_recovery_action reads (NVML's GPU recovery actions). */
export const SIM_RECOVERY_ACTIONS = ["None", "Reset", "Reboot", "Drain P2P", "Drain and Reset"] as const;

export interface SimRemappedRows {
  correctable: number;
  uncorrectable: number;
  pending: boolean;
  failure: boolean;
}

export interface SimGpu {
  index: number;
  uuid: string;
  name: string;
  /** nvidia-smi form: "00000000:3B:00.0". */
  pci_bus_id: string;
  memory_total_mib: number;
  /** Memory in use by no listed process (driver, context overhead). */
  memory_reserved_mib: number;
  temperature_gpu: number;
  /** null: the GPU has no memory sensor ([N/A]). */
  temperature_memory: number | null;
  utilization_gpu: number;
  power_draw_w: number;
  power_limit_w: number;
  pstate: string;
  /** clocks_event_reasons bitmask (GpuIdle 0x1, SwPowerCap 0x4, HwSlowdown 0x8, SwThermal 0x20, HwThermal 0x40, HwPowerBrake 0x80). */
  clocks_event_reasons: number;
  /** null: ECC is not supported or disabled ([N/A]). */
  ecc_uncorrected_volatile: number | null;
  ecc_corrected_volatile: number | null;
  retired_pages_pending: boolean | null;
  /** null: the GPU does not support row remapping (pre-Ampere). */
  remapped_rows: SimRemappedRows | null;
  /** gpu_recovery_action: "None", "Reset", "Reboot", "Drain P2P", "Drain and Reset". */
  recovery_action: string;
  /** Every cell of this GPU reads "[GPU requires reset]". */
  requires_reset: boolean;
  /** Raw cell overrides by field name, e.g. { "power.draw": "[Unknown Error]" }. */
  cells: Record<string, string>;
}

export interface SimComputeProcess {
  pid: number;
  gpu_uuid: string;
  used_memory_mib: number;
  process_name: string;
}

export interface SimGpuState {
  driver_version: string;
  /** Impersonate an older driver that only knows clocks_throttle_reasons.* and not gpu_recovery_action. */
  old_driver: boolean;
  /** A whole-command failure, or null for a working driver. */
  failure: SimSmiFailure | null;
  /** Bus id named by the gpu_lost / unknown_error failures. */
  failure_bus_id: string;
  gpus: SimGpu[];
  processes: SimComputeProcess[];
}

function uuidFor(index: number): string {
  const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");
  return `GPU-${hex(0x5ca1ab1e + index, 8)}-${hex(0x1000 + index, 4)}-${hex(0x4000 + index, 4)}-${hex(0x8000 + index, 4)}-${hex(0xdeadbeef0000 + index, 12)}`;
}

/** A healthy box of `count` H100-like GPUs. */
export function defaultGpuState(count = 2): SimGpuState {
  const buses = ["1B", "3B", "5D", "61", "9B", "BB", "DB", "E1"];
  return {
    driver_version: "550.54.15",
    old_driver: false,
    failure: null,
    failure_bus_id: `00000000:${buses[0]}:00.0`,
    gpus: Array.from({ length: count }, (_, index) => ({
      index,
      uuid: uuidFor(index),
      name: "NVIDIA H100 80GB HBM3",
      pci_bus_id: `00000000:${buses[index % buses.length]}:00.0`,
      memory_total_mib: 81559,
      memory_reserved_mib: 4,
      temperature_gpu: 34 + index,
      temperature_memory: 41 + index,
      utilization_gpu: 0,
      power_draw_w: 69.8 + index,
      power_limit_w: 700,
      pstate: "P0",
      clocks_event_reasons: 0x1,
      ecc_uncorrected_volatile: 0,
      ecc_corrected_volatile: 0,
      retired_pages_pending: false,
      remapped_rows: { correctable: 0, uncorrectable: 0, pending: false, failure: false },
      recovery_action: "None",
      requires_reset: false,
      cells: {},
    })),
    processes: [],
  };
}

/** Memory in use on a GPU: reserved plus every listed process. */
export function usedMemoryMib(state: SimGpuState, gpu: SimGpu): number {
  return gpu.memory_reserved_mib + state.processes.filter((p) => p.gpu_uuid === gpu.uuid).reduce((a, p) => a + p.used_memory_mib, 0);
}

export function freeMemoryMib(state: SimGpuState, gpu: SimGpu): number {
  return Math.max(0, gpu.memory_total_mib - usedMemoryMib(state, gpu));
}

/**
 * Whether a pid names a live process. A zombie (dead, not yet reaped) counts as
 * gone: the driver frees a process's memory when it exits, not when its parent
 * reaps it — and an orphan's zombie may never be reaped where PID 1 does not.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Drops processes whose pid is gone: the driver frees memory only when the process is really dead. */
export function withoutDeadProcesses(state: SimGpuState, alive: (pid: number) => boolean = pidAlive): SimGpuState {
  const processes = state.processes.filter((p) => alive(p.pid));
  return processes.length === state.processes.length ? state : { ...state, processes };
}

export async function readGpuState(file: string): Promise<SimGpuState> {
  return JSON.parse(await readFile(file, "utf8")) as SimGpuState;
}

async function atomicWrite(file: string, state: SimGpuState): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`);
  await rename(tmp, file);
}

export async function writeGpuState(file: string, state: SimGpuState): Promise<void> {
  await withLock(file, () => atomicWrite(file, state));
}

async function withLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`;
  const deadline = Date.now() + 5_000;
  for (;;) {
    try {
      const fh = await open(lock, "wx");
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      // A lock older than 2 s belongs to a process that died holding it.
      const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > 2_000) await rm(lock, { force: true });
      if (Date.now() > deadline) throw new Error(`simulated GPU state ${file} stayed locked for 5s`);
      await sleep(5 + Math.random() * 10);
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
}

/** Locked read-modify-write; `change` edits the state in place or returns a new one. */
export async function updateGpuState(file: string, change: (state: SimGpuState) => SimGpuState | void): Promise<SimGpuState> {
  return withLock(file, async () => {
    const current = await readGpuState(file);
    const next = change(current) ?? current;
    await atomicWrite(file, next);
    return next;
  });
}

/** Lists `pid` as holding `usedMemoryMib` on each GPU whose index is in `gpuIndexes`. */
export async function registerProcess(file: string, pid: number, gpuIndexes: readonly number[], usedMemoryMib: number, processName: string): Promise<void> {
  await updateGpuState(file, (s) => {
    s.processes = s.processes.filter((p) => p.pid !== pid);
    for (const g of s.gpus.filter((x) => gpuIndexes.includes(x.index))) {
      s.processes.push({ pid, gpu_uuid: g.uuid, used_memory_mib: usedMemoryMib, process_name: processName });
    }
  });
}

export async function unregisterProcess(file: string, pid: number): Promise<void> {
  await updateGpuState(file, (s) => {
    s.processes = s.processes.filter((p) => p.pid !== pid);
  });
}
