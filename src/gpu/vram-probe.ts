/**
 * The supervisor's "no restart into held VRAM" check: which processes hold
 * memory on which GPUs, from one `--query-compute-apps` (plus one
 * `--query-gpu=index,uuid` when the GPU numbering is not known yet), each
 * under the runner's deadline. Rejects with the failure's error code when
 * nvidia-smi is missing, fails or hangs: "cannot tell" is never "nobody".
 *
 * Inside containers nvidia-smi reports host pids; the caller compares them.
 */
import { LlmsupError } from "../errors/error.ts";
import type { VramHolder, VramProbe } from "../supervisor/vram.ts";
import { APP_FIELDS, type SelectedField } from "./fields.ts";
import type { GpuIdentity } from "./ledger.ts";
import { parseComputeApps, parseGpuQuery } from "./parse.ts";
import { runQuery, type QueryRunner } from "./probe-fields.ts";
import type { SmiFailure } from "./types.ts";

export interface VramProbeOptions {
  readonly runner: QueryRunner;
  /** What a running monitor already knows about GPU numbering, if anything. */
  readonly gpus?: () => ReadonlyMap<number, GpuIdentity>;
}

const INDEX_UUID: SelectedField<"index" | "uuid">[] = [
  { key: "index", name: "index" },
  { key: "uuid", name: "uuid" },
];

export function failureError(failure: SmiFailure, what: string): LlmsupError {
  return new LlmsupError(failure.code, `${what}: ${failure.message}`, { kind: failure.kind, busId: failure.busId, exitCode: failure.exitCode });
}

export class SmiVramProbe implements VramProbe {
  readonly #runner: QueryRunner;
  readonly #gpus: (() => ReadonlyMap<number, GpuIdentity>) | undefined;

  constructor(options: VramProbeOptions) {
    this.#runner = options.runner;
    this.#gpus = options.gpus;
  }

  async holders(gpus: readonly number[]): Promise<readonly VramHolder[]> {
    const apps = await runQuery(this.#runner, "--query-compute-apps", APP_FIELDS, parseComputeApps);
    if (!apps.ok) throw failureError(apps.failure, "cannot tell which processes hold GPU memory");
    const rows = apps.parsed.rows;
    if (rows.length === 0) return [];
    let indexOf = new Map<string, number>();
    for (const [index, id] of this.#gpus?.() ?? []) if (id.uuid) indexOf.set(id.uuid, index);
    if (rows.some((r) => !indexOf.has(r.gpuUuid))) {
      const q = await runQuery(this.#runner, "--query-gpu", INDEX_UUID, parseGpuQuery);
      if (!q.ok) throw failureError(q.failure, "cannot tell which GPU holds which process");
      indexOf = new Map(q.parsed.rows.filter((s) => s.uuid !== undefined).map((s) => [s.uuid as string, s.index]));
    }
    const wanted = new Set(gpus);
    const out: VramHolder[] = [];
    for (const r of rows) {
      const gpu = indexOf.get(r.gpuUuid);
      if (gpu === undefined || !wanted.has(gpu)) continue;
      out.push(r.processName === undefined ? { pid: r.pid, gpu, usedMemoryMib: r.usedMemoryMib ?? 0 } : { pid: r.pid, gpu, usedMemoryMib: r.usedMemoryMib ?? 0, processName: r.processName });
    }
    return out;
  }
}
