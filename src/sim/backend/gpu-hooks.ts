/** The simulated backends' side of the simulated GPU state file. */
import { freeMemoryMib, readGpuState, registerProcess, unregisterProcess, withoutDeadProcesses } from "../gpu/state.ts";

/** GPU-side hooks: registering the process's memory, checking room to load. */
export interface SimGpuHooks {
  /** Checks room for `mib` on each GPU; returns the failing GPU's figures, or undefined when there is room. */
  checkRoom(mib: number): Promise<{ gpu: number; freeMib: number; totalMib: number } | undefined>;
  /** Lists this process as holding `mib` per GPU (0 removes it). */
  hold(mib: number): Promise<void>;
  /** Total memory of the first GPU, for messages. */
  totalMib(): Promise<number>;
}

/** Hooks for a process holding memory on `gpus` of the state in `file`; without a file, GPUs are not simulated. */
export function gpuHooks(file: string | undefined, gpus: readonly number[], processName: string, pid = process.pid): SimGpuHooks | undefined {
  if (!file || gpus.length === 0) return undefined;
  return {
    async checkRoom(mib) {
      const state = withoutDeadProcesses(await readGpuState(file));
      for (const index of gpus) {
        const gpu = state.gpus.find((g) => g.index === index);
        if (!gpu) continue;
        const free = freeMemoryMib(state, gpu);
        if (free < mib) return { gpu: index, freeMib: free, totalMib: gpu.memory_total_mib };
      }
      return undefined;
    },
    async hold(mib) {
      if (mib <= 0) await unregisterProcess(file, pid);
      else await registerProcess(file, pid, gpus, mib, processName);
    },
    async totalMib() {
      const state = await readGpuState(file);
      return state.gpus.find((g) => g.index === gpus[0])?.memory_total_mib ?? 81559;
    },
  };
}
