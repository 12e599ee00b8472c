/** A status as `llmsup status --json` gives it, with every part metrics read: routes on and off their first tier, backends in several states, sampled and unsampled GPUs with faults, the remediation ladder, a failing mail channel. */
import { buildReport, reportJson } from "../../src/gpu/report.ts";
import type { GpuFault, GpuSample } from "../../src/gpu/types.ts";
import type { AlertChannelStatus, BackendStatus, DaemonStatus, RemediationStatus, RouteStatus } from "../../src/daemon/status.ts";

export const NOW = Date.parse("2026-12-02T07:00:00.000Z");
const iso = (ms: number) => new Date(ms).toISOString();
export const MIB = 1024 * 1024;

const route = (model: string, over: Partial<RouteStatus>): RouteStatus => ({ model, serving_tier: 0, serving_backend: "primary", phase: "settled", serving_since: iso(NOW - 60_000), degraded_since: null, tiers: [], ...over });

const backend = (name: string, over: Partial<BackendStatus>): BackendStatus => ({
  name,
  kind: "vllm",
  managed: true,
  state: "ready",
  since: iso(NOW - 60_000),
  state_reason: "ready: /health answered",
  health: "healthy",
  health_reason: "",
  pid: 4242,
  cpu_pct: null,
  rss_bytes: null,
  processes: null,
  generation: 1,
  process_started_at: iso(NOW - 60_000),
  adopted: false,
  restarts: "0/5",
  start_budget: { used: 0, burst: 5 },
  last_failure: null,
  progress: null,
  gpus: [],
  url: "http://127.0.0.1:8000",
  drained: null,
  inflight: 0,
  held: null,
  ...over,
});

/** Free text the status carries: none of it may become a label value. */
export const FREE_TEXT = [
  "exit code 137 (SIGKILL) from outside llmsup",
  "GPU 0: XID 79: GPU has fallen off the bus",
  "reboot the machine",
  "power.draw 9999 W is past the physical bound",
  "535 5.7.8 authentication failed",
  "alice@ops",
  "needs a reboot: XID 79",
];

const sample: GpuSample = {
  index: 0,
  uuid: "GPU-5ca1ab1e-1000-4000-8000-deadbeef0000",
  name: "NVIDIA H100 80GB HBM3",
  busId: "00000000:1B:00.0",
  temperatureC: 71,
  memoryTemperatureC: 80,
  utilizationPct: 97,
  memoryUsedMib: 40_960,
  memoryTotalMib: 81_559,
  powerDrawW: 650.5,
  powerLimitW: 700,
  pstate: "P0",
  reasons: { mask: 0x4 | 0x40 },
  eccUncorrected: 2,
  eccCorrected: 17,
  retiredPagesPending: true,
  recoveryAction: "Reboot",
  requiresReset: false,
};

const fault = (over: Partial<GpuFault>): GpuFault => ({ id: "x", kind: "xid_fallen_off_bus", gpu: 0, severity: "down", reason: FREE_TEXT[1]!, action: FREE_TEXT[2]!, since: NOW - 30_000, lastSeen: NOW - 30_000, count: 1, ...over });

const gpuFaults = [
  fault({ id: "xid_fallen_off_bus@gpu0" }),
  fault({ id: "temperature@gpu0", kind: "temperature", severity: "degraded", reason: "GPU 0 at 92 °C" }),
  fault({ id: "driver_unresponsive@all", kind: "driver_unresponsive", gpu: null, reason: "nvidia-smi hangs" }),
];

const gpus = reportJson(
  buildReport({
    at: NOW - 2_000,
    samples: new Map([[0, { sample, at: NOW - 2_500, stale: new Map([["powerDrawW", { since: NOW - 10_000, why: FREE_TEXT[3]!, rejected: 9999 }]]) }]]),
    identities: new Map([[1, { uuid: "GPU-5ca1ab1e-1001-4001-8001-deadbeef0001", busId: "00000000:3B:00.0", name: "NVIDIA H100 80GB HBM3" }]]),
    remapped: [{ gpuUuid: sample.uuid!, correctable: 3, uncorrectable: 1, pending: true, failure: false }],
    faults: gpuFaults,
  }),
);

const remediation: RemediationStatus[] = [
  { gpu: 0, state: "reboot_required", since: iso(NOW - 20_000), why: FREE_TEXT[6]!, cause: "reboot_fault", next: null, next_at: null, faults: [], resets_in_window: [], backends: ["primary"], backends_held: true, auto_reset: true },
];

/** Mail failing to log in: 2 waiting, 7 delivered, the last at 06:30. */
export const smtpChannel: AlertChannelStatus = {
  channel: "smtp",
  pending: 2,
  delivered: 7,
  failed_attempts: 3,
  rejected: 1,
  dropped: 4,
  failing: true,
  last_error_code: "LLMSUP_E_SMTP_AUTH",
  last_error: `EAUTH: ${FREE_TEXT[4]}`,
  last_delivered_at: "2026-12-02T06:30:00.000Z",
};

export const status: DaemonStatus = {
  daemon: { version: "0.1.0", pid: 100, started_at: iso(NOW - 3_600_000), uptime_s: 3600, config: "/etc/llmsup/supervisor.toml", hostname: "box" },
  router: {
    socket: "/run/llmsup/api.sock",
    tcp: null,
    requests_per_s: 3,
    fallback_share_5m: 0.5,
    routes: [
      route("llama", { serving_tier: 1, serving_backend: "fallback", degraded_since: "2026-12-02T06:50:00.000Z" }),
      route("qwen", { serving_tier: -1, serving_backend: null, degraded_since: "2026-12-02T06:55:30.500Z" }),
      route("mistral", {}),
      route("boot", { phase: "settling", serving_tier: -1, serving_backend: null }),
    ],
  },
  backends: [
    backend("primary", { state: "backoff", health: "down", health_reason: FREE_TEXT[0]!, last_failure: FREE_TEXT[0]!, start_budget: { used: 2, burst: 5 }, restarts: "2/5", held: FREE_TEXT[6]!, gpus: [0] }),
    backend("fallback", { kind: "llamacpp", rss_bytes: 1_500_000_000, cpu_pct: 150, drained: { by: FREE_TEXT[5]!, since: iso(NOW - 5_000) }, adopted: true }),
    backend("cloud", { kind: "openai", managed: false, state: "remote", health: "degraded", health_reason: "slow: 900 ms", pid: null, generation: null, restarts: null, start_budget: null, process_started_at: null, since: null }),
  ],
  gpus,
  gpu_monitor: { state: "sampling", nvidia_smi: "/usr/bin/nvidia-smi", kernel_log: null, last_sample_at: iso(NOW - 2_500) },
  remediation,
  host: null,
  alerts: { enabled: true, pending: 2, delivered: 7, last_error: `EAUTH: ${FREE_TEXT[4]}`, channels: [smtpChannel] },
  cache: null,
  events: [],
  reload: null,
  summary: { code: 2, state: "critical", text: "CRITICAL: qwen has no serving tier", problems: [] },
};

