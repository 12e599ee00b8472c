/**
 * What becomes of the process an earlier llmsup recorded for a backend: it
 * is adopted when it is still that process and this configuration starts it
 * the same way; it is stopped (its process group: SIGTERM, stop_timeout,
 * SIGKILL) when it was started from another configuration, or when adopting
 * is off (live_restore = false: an orphan of a killed llmsup is ours to end,
 * not a stranger holding the port); otherwise there is nothing to take over.
 */
import type { BackendConfig } from "../config/types.ts";
import type { Clock } from "../platform/clock.ts";
import { procStartTime } from "../platform/procfs.ts";
import { adoptionVerdict, launchHash, type LaunchRecord } from "./launch.ts";
import { adoptedProcess, type Spawned } from "./spawn.ts";
import { stopGroup } from "./stop.ts";

export type TakeOver = { readonly kind: "adopt"; readonly process: Spawned } | { readonly kind: "replaced"; readonly reason: string } | { readonly kind: "none"; readonly reason: string };

export async function takeOver(record: LaunchRecord, backend: BackendConfig, d: { readonly clock: Clock; readonly stopTimeoutMs: number; readonly mayAdopt: boolean }): Promise<TakeOver> {
  const v = adoptionVerdict(record, await procStartTime(record.pid), launchHash(backend));
  if (v.kind === "none") return v;
  const process = adoptedProcess(record.pid, record.startTime, d.clock);
  if (v.kind === "adopt" && d.mayAdopt) return { kind: "adopt", process };
  const reason = v.kind === "replace" ? v.reason : `pid ${record.pid} was left running by an earlier llmsup and live_restore is off`;
  await stopGroup({ ...process, hasExited: () => false }, d.stopTimeoutMs, d.clock, () => undefined);
  return { kind: "replaced", reason };
}
