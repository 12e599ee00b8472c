/**
 * What a kernel-log GPU event means for the faults, with the noise rules:
 *
 * - XID 13/31/43 (application errors) are logged; three on one GPU within
 *   five minutes make a `degraded` fault (the app keeps crashing the GPU).
 * - XID 45 (preemptive cleanup) comes after other errors and floods during
 *   normal teardown: it is noise when another XID came on that GPU within
 *   30 s before it, or when more 45s follow; only a 45 that stays alone for
 *   30 s (nothing before, nothing after) becomes a `degraded` fault.
 * - 92 (single-bit ECC rate) and XIDs outside the table are logged only.
 * - Every other class in the table is a fault of its table severity.
 * - One fault per (GPU, class): repeats refresh it silently. Each carries
 *   its class's recovery (NVIDIA's catalog bucket), which says how it ends
 *   (evidence.ts): application-caused ones `event_hold` after their last
 *   occurrence, transient ones when the GPU reads healthy again, the rest
 *   only on evidence of a reset.
 */
import { clearsByTime } from "./evidence.ts";
import type { FaultConfig } from "./faults.ts";
import { gpuLabel, indexOfBus, type GpuIdentity, type Ledger } from "./ledger.ts";
import { xidClassInfo, xidInfo, type KernelGpuEvent, type XidInfo } from "./xid.ts";
import { formatDuration } from "../config/units.ts";

export const APP_REPEAT_COUNT = 3;
export const APP_REPEAT_WINDOW_MS = 5 * 60_000;
export const CLEANUP_WINDOW_MS = 30_000;
/** Recent XIDs kept for the noise rules, at most. */
const MAX_SEEN = 500;

export interface SeenXid {
  readonly at: number;
  /** GPU index as "gpuN", or the bus id when the index is unknown. */
  readonly scope: string;
  readonly xid: number;
}

/** A lone XID 45 waiting to see whether anything else comes. */
export interface PendingLone {
  readonly scope: string;
  readonly gpu: number | null;
  readonly busId: string;
  readonly due: number;
  readonly detail: string;
}

export type XidDisposition = "fault" | "log" | "noise";

export interface XidOutcome {
  readonly event: KernelGpuEvent;
  readonly gpu: number | null;
  readonly info: XidInfo;
  readonly disposition: XidDisposition;
  /** Why it was taken so, for the log. */
  readonly note: string;
}

interface PolicyState {
  readonly gpus: ReadonlyMap<number, GpuIdentity>;
  readonly xids: readonly SeenXid[];
  readonly lone: readonly PendingLone[];
}

export function applyKernelEvent(
  ledger: Ledger,
  state: PolicyState,
  event: KernelGpuEvent,
): { xids: SeenXid[]; lone: PendingLone[]; outcome: XidOutcome } {
  const now = ledger.now;
  const gpu = indexOfBus(state.gpus, event.busId);
  const scope = gpu !== null ? `gpu${gpu}` : event.busId;
  const number = event.type === "xid" ? event.xid : 79;
  const info = event.type === "xid" ? xidInfo(event.xid) : xidClassInfo("fallen_off_bus");
  const before = state.xids.filter((x) => x.scope === scope && now - x.at <= APP_REPEAT_WINDOW_MS);
  const xids = [...state.xids, { at: now, scope, xid: number }].slice(-MAX_SEEN);
  // Anything on this GPU, a further 45 included, means an earlier 45 was not alone.
  let lone = state.lone.filter((p) => p.scope !== scope);
  const done = (disposition: XidDisposition, note: string) => ({ xids, lone, outcome: { event, gpu, info, disposition, note } });
  const who = event.type === "xid" && (event.pid !== undefined || event.processName) ? ` (pid ${event.pid ?? "?"}, ${event.processName ?? "?"})` : "";
  const what = event.type === "xid" ? `XID ${event.xid}` : "kernel";

  const fault = (severity: "degraded" | "down", reason: string) =>
    ledger.raise({
      kind: `xid_${info.class}`,
      gpu,
      busId: event.busId,
      severity,
      reason: `${gpuLabel(gpu, event.busId)}: ${reason}`,
      action: info.action,
      xid: number,
      recovery: info.recovery,
    });

  switch (info.class) {
    case "app_error": {
      const n = before.filter((x) => xidInfo(x.xid).class === "app_error").length + 1;
      if (n < APP_REPEAT_COUNT) return done("log", `${what}: ${info.meaning}${who}; ${n} in ${formatDuration(APP_REPEAT_WINDOW_MS)}`);
      fault("degraded", `${what} ×${n} in ${formatDuration(APP_REPEAT_WINDOW_MS)}: repeated ${info.meaning}${who}`);
      return done("fault", `repeated (${n} in ${formatDuration(APP_REPEAT_WINDOW_MS)})`);
    }
    case "cleanup": {
      const recent = before.filter((x) => now - x.at <= CLEANUP_WINDOW_MS);
      if (recent.length > 0) return done("noise", recent.some((x) => x.xid !== 45) ? "cleanup after an earlier XID" : "part of a flood of XID 45 (teardown)");
      if (state.lone.some((p) => p.scope === scope)) return done("noise", "part of a flood of XID 45 (teardown)");
      lone = [...lone, { scope, gpu, busId: event.busId, due: now + CLEANUP_WINDOW_MS, detail: `${what}${who}` }];
      return done("log", `waiting ${formatDuration(CLEANUP_WINDOW_MS)} to see whether it comes alone`);
    }
    default:
      if (info.severity === "log") return done("log", `${what}: ${info.meaning}${who}`);
      fault(info.severity, `${what}: ${info.meaning}${who}`);
      return done("fault", info.severity);
  }
}

/** Time passes: lone 45s become faults, application-caused XID faults clear `event_hold` after their last occurrence, old XIDs are forgotten. */
export function expireEvents(ledger: Ledger, state: { xids: readonly SeenXid[]; lone: readonly PendingLone[] }, config: FaultConfig): { xids: SeenXid[]; lone: PendingLone[] } {
  const now = ledger.now;
  const lone: PendingLone[] = [];
  for (const p of state.lone) {
    if (p.due > now) {
      lone.push(p);
      continue;
    }
    const info = xidClassInfo("cleanup");
    ledger.raise(
      {
        kind: "xid_cleanup",
        gpu: p.gpu,
        busId: p.busId,
        severity: "degraded",
        reason: `${gpuLabel(p.gpu, p.busId)}: ${p.detail}: preemptive cleanup with no other error around it`,
        action: info.action,
        xid: 45,
        recovery: info.recovery,
      },
      p.due - CLEANUP_WINDOW_MS,
    );
  }
  for (const f of [...ledger.active.values()]) {
    if (clearsByTime(f) && now - f.lastSeen >= config.eventHoldMs) {
      ledger.clear(f.id, `no repeat for ${formatDuration(now - f.lastSeen)}`);
    }
  }
  const xids = state.xids.filter((x) => now - x.at <= APP_REPEAT_WINDOW_MS);
  return { xids, lone };
}
