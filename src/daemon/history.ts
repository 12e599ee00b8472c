/** Which events the operator's history keeps ("Recent events" in `llmsup status`, the digest), and how each reads. Pure. */
import { formatDuration } from "../config/units.ts";
import type { GpuFault } from "../gpu/types.ts";
import { faultLine } from "../gpu/report.ts";
import type { RouterEvent } from "../router/router.ts";
import type { SupervisorEvent } from "../supervisor/states.ts";
import type { RemediationEvent } from "./remediation-desk.ts";
import type { HistoryEntry } from "./state-store.ts";

export function historyOfSupervisor(e: SupervisorEvent): HistoryEntry | undefined {
  if (e.event === "backend.unkillable") return { at: e.at, kind: "unkillable", summary: `${e.backend}: pid ${e.pid} survives SIGKILL (state ${e.processState})`, backend: e.backend };
  const important = e.to === "exited" || e.to === "fatal" || e.to === "blocked" || (e.to === "ready" && e.generation > 1) || e.to === "degraded";
  if (!important) return undefined;
  const kind = e.to === "fatal" ? "fatal" : e.to === "exited" ? "exit" : e.to === "ready" ? "restart" : e.to;
  return { at: e.at, kind, summary: `${e.backend}: ${e.from} → ${e.to}: ${e.reason}`, backend: e.backend };
}

export function historyOfRouter(e: RouterEvent): HistoryEntry | undefined {
  switch (e.event) {
    case "router.route.fallback":
      return { at: e.at, kind: "failover", route: e.route, summary: `${e.route}: now served by tier ${e.to.index} (${e.to.backend}): ${e.reason}` };
    case "router.route.recovered":
      return { at: e.at, kind: "recovery", route: e.route, summary: `${e.route}: back on tier 0 (${e.to.backend}) after ${formatDuration(e.outageMs)}` };
    case "router.route.down":
      return { at: e.at, kind: "all_down", route: e.route, summary: `${e.route}: every tier is down` };
    case "router.breaker":
      return { at: e.at, kind: "breaker", backend: e.backend, summary: `breaker ${e.backend}/${e.model}: ${e.from} → ${e.to} (${e.reason.slice(0, 160)})` };
    case "router.misconfigured":
      return { at: e.at, kind: "misconfigured", backend: e.backend, summary: `${e.backend} refuses ${e.model}: HTTP ${e.status}` };
    case "router.evacuated":
      return { at: e.at, kind: "evacuated", route: e.route, backend: e.backend, summary: `${e.route}: ${e.requests} request${e.requests === 1 ? "" : "s"} in flight moved off ${e.backend} to the next tier: ${e.reason}` };
    case "router.tier.quality":
      return {
        at: e.at,
        kind: "quality",
        backend: e.backend,
        summary: e.degraded
          ? `${e.backend}/${e.model} DEGRADED: ${e.detections} bad answers (loop, empty, garbage or refusal) within ${formatDuration(e.windowMs)}`
          : `${e.backend}/${e.model} no longer degraded (${e.detections} bad answers within ${formatDuration(e.windowMs)})`,
      };
    default:
      return undefined;
  }
}

export function historyOfGpuFault(f: GpuFault, raised: boolean, at: number): HistoryEntry {
  const line = faultLine(f);
  return { at, kind: raised ? "gpu_fault" : "gpu_clear", gpu: f.gpu ?? undefined, summary: raised ? line : line.replace(/^([^:]+): /, "$1: cleared: ") };
}

/** Every step of the GPU remediation ladder: "GPU 0: waiting → resetting: …". */
export function historyOfRemediation(e: RemediationEvent): HistoryEntry {
  return { at: e.at, kind: "gpu_remediation", gpu: e.gpu, summary: `GPU ${e.gpu}: ${e.from} → ${e.to}: ${e.why}` };
}
