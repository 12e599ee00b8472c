/**
 * What the supervisor needs from the GPU side before a restart: which
 * processes hold memory on the GPUs a backend uses. The GPU monitor supplies
 * the real implementation (nvidia-smi --query-compute-apps); tests may supply
 * their own.
 */

export interface VramHolder {
  readonly pid: number;
  /** GPU index as nvidia-smi numbers it. */
  readonly gpu: number;
  readonly usedMemoryMib: number;
  readonly processName?: string;
}

export interface VramProbe {
  /** Processes holding memory on any of `gpus`; rejects when the GPU side cannot tell (nvidia-smi failed or hung). */
  holders(gpus: readonly number[]): Promise<readonly VramHolder[]>;
}
