/** Alert events as the daemon will raise them, one builder per kind. */
import type { AlertEvent, BackendFatalEvent, BackendRecoveredEvent, FailoverEvent, RecoveryEvent } from "../../src/alerts/events.ts";

export const ROUTE = "llama-3.1-8b";
/** 2025-06-01 14:02:03 UTC. */
export const T0 = Date.UTC(2025, 5, 1, 14, 2, 3);
export const MIN = 60_000;

export function failover(at: number, route = ROUTE, to = 1): FailoverEvent {
  return {
    kind: "failover",
    at,
    route,
    from: { index: 0, backend: "vllm-gpu0", model: "meta-llama/Meta-Llama-3.1-8B-Instruct" },
    to: { index: to, backend: to === 1 ? "gpu2" : "ollama" },
    reasonClass: "connect",
    error: "connect ECONNREFUSED 127.0.0.1:8000",
    gpus: [0],
    lastLines: ["INFO:     Started server process [4242]", "ERROR 06-01 14:02:01 engine.py:1 EngineCore encountered an issue. See stack trace (above) for the root cause."],
  };
}

export function recovery(at: number, route = ROUTE): RecoveryEvent {
  return { kind: "recovery", at, route, tier: { index: 0, backend: "vllm-gpu0" } };
}

export function fatal(at: number, backend = "vllm-gpu0"): BackendFatalEvent {
  return { kind: "backend_fatal", at, backend, exitClass: "oom", reason: "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", budget: { used: 5, burst: 5 }, gpus: [0] };
}

export function backendRecovered(at: number, backend = "vllm-gpu0"): BackendRecoveredEvent {
  return { kind: "backend_recovered", at, backend };
}

/** One event of every kind, for rendering checks. */
export function everyKind(at: number): AlertEvent[] {
  return [
    failover(at),
    recovery(at),
    { kind: "all_tiers_down", at, route: ROUTE, tiers: [{ tier: { index: 0, backend: "vllm-gpu0" }, reason: "process exited (oom)" }, { tier: { index: 1, backend: "gpu2" }, reason: "connect ECONNREFUSED" }], retryAfterMs: 10_000 },
    { kind: "cache_serving", at, route: ROUTE, served: 3 },
    { kind: "backend_fatal", at, backend: "vllm-gpu0", exitClass: "oom", reason: "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", budget: { used: 5, burst: 5 }, gpus: [0], lastLines: ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"] },
    { kind: "backend_restarting", at, backend: "vllm-gpu0", restarts: 3, windowMs: 15 * MIN, exitClass: "wedged", reason: "deep probe timed out twice", wedged: true },
    { kind: "backend_recovered", at, backend: "vllm-gpu0" },
    { kind: "gpu_fault", at, gpu: 0, busId: "00000000:3B:00.0", fault: "thermal", effect: "down", reason: "94 C, above the 87 C limit, hardware thermal slowdown", recommended: "check GPU 0 cooling" },
    { kind: "gpu_fault_cleared", at, gpu: 0, fault: "thermal", reason: "below 87 C for 3 samples" },
    {
      kind: "backend_blocked",
      at,
      backend: "llama-gpu0",
      reason: "oom: pid 31337 (python3) holds 79000 MiB on GPU 0; waiting for it to go (restart budget untouched)",
      holder: { pid: 31337, gpu: 0, usedMemoryMib: 79_000, processName: "python3" },
      exitClass: "oom",
      gpus: [0],
    },
    { kind: "gpu_reset", at, stage: "started", gpu: 0, busId: "00000000:3B:00.0", faults: ['GPU 0: the driver asks for recovery action "Reset"; cure: a GPU reset'], backends: ["vllm-gpu0"] },
    { kind: "gpu_reset", at, stage: "done", gpu: 0, busId: "00000000:3B:00.0", faults: ['GPU 0: the driver asks for recovery action "Reset"; cure: a GPU reset'], backends: ["vllm-gpu0"], detail: "GPU 00000000:3B:00.0 was successfully reset." },
    { kind: "gpu_reset_needed", at, gpu: 0, faults: ["GPU 0: XID 48: double-bit, uncontained or unrecovered ECC error (XID 48); cure: a GPU reset"], backends: ["vllm-gpu0"] },
    {
      kind: "gpu_reboot_required",
      at,
      gpu: 0,
      busId: "00000000:3B:00.0",
      cause: "reboot_fault",
      why: "GPU 0: XID 79: GPU has fallen off the bus: only a reboot recovers this GPU",
      faults: ["GPU 0 (00000000:3B:00.0): XID 79: GPU has fallen off the bus (XID 79); cure: a reboot"],
      readings: ["temperature 61 °C, memory 71000 of 81559 MiB"],
      backends: ["vllm-gpu0"],
    },
    { kind: "gpu_recovered", at, gpu: 0, reason: "the faults that asked for a reboot cleared", backends: ["vllm-gpu0"] },
    { kind: "reload_refused", at, error: "2 problems in /etc/llmsup/supervisor.toml", problems: ["router.listen: expected host:port"], config: "/etc/llmsup/supervisor.toml" },
    { kind: "disk_low", at, path: "/var/lib/llmsup", freeBytes: 1.5 * 1024 ** 3, minFreeBytes: 5 * 1024 ** 3 },
    { kind: "disk_ok", at, path: "/var/lib/llmsup", freeBytes: 9 * 1024 ** 3 },
    { kind: "tier_degraded", at, backend: "vllm-gpu0", model: "llama-3.1-8b", detections: 3, windowMs: 5 * 60_000, routes: ["llama-3.1-8b"] },
    { kind: "tier_quality_ok", at, backend: "vllm-gpu0", model: "llama-3.1-8b", detections: 2, windowMs: 5 * 60_000 },
    { kind: "daemon_started", at, version: "0.1.0", pid: 4242, config: "/etc/llmsup/supervisor.toml" },
    { kind: "daemon_stopping", at, reason: "SIGTERM" },
  ];
}
