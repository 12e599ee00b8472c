/**
 * The slow half of sampling: row remapping and the processes holding GPU
 * memory change rarely, and nvidia-smi has no loop mode that mixes them with
 * `--query-gpu`, so they are one-shot queries every ~30 s, one at a time and
 * never while an nvidia-smi is stuck. Remapped-row fields are probed once.
 */
import type { Logger } from "../log/logger.ts";
import { APP_FIELDS, REMAP_CANDIDATES, type RemapFieldKey, type SelectedField } from "./fields.ts";
import { parseComputeApps, parseRemappedRows } from "./parse.ts";
import { probeFields, runQuery } from "./probe-fields.ts";
import type { SmiRunner } from "./runner.ts";
import type { ComputeApp, RemappedRows } from "./types.ts";

export interface SlowPollOptions {
  readonly runner: SmiRunner;
  readonly logger: Logger;
  /** False once the owner has stopped: answers that arrive later are dropped. */
  active(): boolean;
  remapped(rows: RemappedRows[]): void;
  apps(apps: ComputeApp[]): void;
}

export class SlowPoll {
  readonly #o: SlowPollOptions;
  /** undefined: not probed yet; null: this nvidia-smi cannot report row remapping. */
  #remapFields: SelectedField<RemapFieldKey>[] | null | undefined;
  #running = false;

  constructor(options: SlowPollOptions) {
    this.#o = options;
  }

  /** Whether row remapping is reported (undefined until probed). */
  get remappedRows(): boolean | undefined {
    return this.#remapFields === undefined ? undefined : this.#remapFields !== null;
  }

  async run(): Promise<void> {
    const { runner, logger } = this.#o;
    if (this.#running || !this.#o.active() || runner.stuck()) return;
    this.#running = true;
    try {
      if (this.#remapFields === undefined) {
        const probe = await probeFields(runner, "--query-remapped-rows", REMAP_CANDIDATES, parseRemappedRows);
        if (probe.ok) {
          this.#remapFields = probe.fields;
          if (this.#o.active()) this.#o.remapped(probe.parsed.rows);
        } else if (probe.failure.kind === "invalid_field" || probe.failure.kind === "invalid_arguments") {
          this.#remapFields = null;
          logger.info({ event: "gpu.nvidia_smi.fields", remapped_rows: false, reason: probe.failure.message }, "this nvidia-smi cannot report row remapping");
        }
      } else if (this.#remapFields !== null) {
        const r = await runQuery(runner, "--query-remapped-rows", this.#remapFields, parseRemappedRows);
        if (r.ok && this.#o.active()) this.#o.remapped(r.parsed.rows);
      }
      if (!this.#o.active()) return;
      const apps = await runQuery(runner, "--query-compute-apps", APP_FIELDS, parseComputeApps);
      if (apps.ok) {
        if (this.#o.active()) this.#o.apps(apps.parsed.rows);
      } else logger.debug({ event: "gpu.nvidia_smi.failed", code: apps.failure.code, message: apps.failure.message, query: "compute-apps" });
    } finally {
      this.#running = false;
    }
  }
}
