/** The status as Prometheus series (pure): what `llmsup status` shows is what /metrics says, with bounded labels only. */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { DaemonStatus, TierStatus } from "../../src/daemon/status.ts";
import { STATUS_METRICS, statusSeries, type Series, type StatusMetricName, type StatusMetricsInput } from "../../src/daemon/status-metrics.ts";
import { FREE_TEXT, MIB, NOW, smtpChannel, status } from "./status-fixture.ts";

const input = (over: Partial<StatusMetricsInput> = {}): StatusMetricsInput => ({ status, now: NOW, node: "24.11.0", version: "0.1.0", ...over });

/** A metric's series as "label=value,…" → value, for exact comparison. */
function flat(all: ReadonlyMap<StatusMetricName, readonly Series[]>, name: StatusMetricName): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of all.get(name) ?? []) {
    const key = Object.entries(s.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    assert.ok(!(key in out), `${name}: one series per label set (${key})`);
    out[key] = s.value;
  }
  return out;
}

test("daemon: build info and the verdict of `llmsup status` (its exit-code convention)", () => {
  const s = statusSeries(input());
  assert.deepEqual(flat(s, "llmsup_build_info"), { "version=0.1.0,node=24.11.0": 1 });
  assert.deepEqual(flat(s, "llmsup_status_verdict"), { "": 2 });
});

test("routes: on fallback for a fallback tier or none, not on tier 0 nor while settling; fallback_since only off tier 0; settling at boot", () => {
  const s = statusSeries(input());
  assert.deepEqual(flat(s, "llmsup_route_on_fallback"), { "route=llama": 1, "route=qwen": 1, "route=mistral": 0, "route=boot": 0 });
  assert.deepEqual(flat(s, "llmsup_route_fallback_since_timestamp_seconds"), { "route=llama": Date.parse("2026-12-02T06:50:00.000Z") / 1000, "route=qwen": Date.parse("2026-12-02T06:55:30.500Z") / 1000 });
  assert.deepEqual(flat(s, "llmsup_route_settling"), { "route=llama": 0, "route=qwen": 0, "route=mistral": 0, "route=boot": 1 });
});

test("backends: a state set over every supervisor state and remote (zeroes included), budget, held, drained, adopted, group memory in bytes and CPU in cores, health", () => {
  const s = statusSeries(input());
  const states = ["stopped", "starting", "ready", "degraded", "stopping", "exited", "backoff", "blocked", "fatal", "remote"];
  const expected: Record<string, number> = {};
  for (const [name, kind, current] of [["primary", "vllm", "backoff"], ["fallback", "llamacpp", "ready"], ["cloud", "openai", "remote"]] as const) {
    for (const st of states) expected[`backend=${name},kind=${kind},state=${st}`] = st === current ? 1 : 0;
  }
  assert.deepEqual(flat(s, "llmsup_backend_state"), expected);
  assert.deepEqual(flat(s, "llmsup_backend_start_budget_used"), { "backend=primary": 2, "backend=fallback": 0 });
  assert.deepEqual(flat(s, "llmsup_backend_start_budget_limit"), { "backend=primary": 5, "backend=fallback": 5 });
  assert.deepEqual(flat(s, "llmsup_backend_held"), { "backend=primary": 1, "backend=fallback": 0, "backend=cloud": 0 });
  assert.deepEqual(flat(s, "llmsup_backend_drained"), { "backend=primary": 0, "backend=fallback": 1, "backend=cloud": 0 });
  assert.deepEqual(flat(s, "llmsup_backend_adopted"), { "backend=primary": 0, "backend=fallback": 1, "backend=cloud": 0 });
  assert.deepEqual(flat(s, "llmsup_backend_resident_memory_bytes"), { "backend=fallback": 1_500_000_000 }, "no series before a sample, nor for a remote backend");
  assert.deepEqual(flat(s, "llmsup_backend_cpu_usage_ratio"), { "backend=fallback": 1.5 });
  assert.deepEqual(flat(s, "llmsup_backend_health"), { "backend=primary": 2, "backend=fallback": 0, "backend=cloud": 1 });
});

test("GPUs: identity, condition and ladder state sets, readings in base units (celsius, watts, bytes, ratios), the age of the readings, throttle reasons, ECC, remapped rows, stale fields, faults by GPU or all", () => {
  const s = statusSeries(input());
  assert.deepEqual(flat(s, "llmsup_gpu_monitor_up"), { "": 1 });
  assert.deepEqual(flat(s, "llmsup_gpu_info"), {
    "gpu=0,uuid=GPU-5ca1ab1e-1000-4000-8000-deadbeef0000,name=NVIDIA H100 80GB HBM3,bus_id=00000000:1B:00.0": 1,
    "gpu=1,uuid=GPU-5ca1ab1e-1001-4001-8001-deadbeef0001,name=NVIDIA H100 80GB HBM3,bus_id=00000000:3B:00.0": 1,
  });
  assert.deepEqual(flat(s, "llmsup_gpu_condition"), {
    "gpu=0,condition=ok": 0,
    "gpu=0,condition=degraded": 0,
    "gpu=0,condition=down": 1,
    "gpu=0,condition=unknown": 0,
    // GPU 1 is unsampled, but the fault about every GPU concerns it too.
    "gpu=1,condition=ok": 0,
    "gpu=1,condition=degraded": 0,
    "gpu=1,condition=down": 1,
    "gpu=1,condition=unknown": 0,
  });
  const ladder = (gpu: number, current: string) => Object.fromEntries(["idle", "waiting", "resetting", "verifying", "recovered", "reset_needed", "reboot_required"].map((st) => [`gpu=${gpu},state=${st}`, st === current ? 1 : 0]));
  assert.deepEqual(flat(s, "llmsup_gpu_remediation_state"), { ...ladder(0, "reboot_required"), ...ladder(1, "idle") });
  // Readings of the sampled GPU only: GPU 1 has none, not zeroes.
  assert.deepEqual(flat(s, "llmsup_gpu_readings_age_seconds"), { "gpu=0": 2.5 });
  assert.deepEqual(flat(s, "llmsup_gpu_temperature_celsius"), { "gpu=0": 71 });
  assert.deepEqual(flat(s, "llmsup_gpu_memory_temperature_celsius"), { "gpu=0": 80 });
  assert.deepEqual(flat(s, "llmsup_gpu_power_watts"), { "gpu=0": 650.5 });
  assert.deepEqual(flat(s, "llmsup_gpu_power_limit_watts"), { "gpu=0": 700 });
  assert.deepEqual(flat(s, "llmsup_gpu_utilization_ratio"), { "gpu=0": 0.97 });
  assert.deepEqual(flat(s, "llmsup_gpu_memory_used_bytes"), { "gpu=0": 40_960 * MIB });
  assert.deepEqual(flat(s, "llmsup_gpu_memory_total_bytes"), { "gpu=0": 81_559 * MIB });
  assert.deepEqual(flat(s, "llmsup_gpu_clock_event_reason"), {
    "gpu=0,reason=gpu_idle": 0,
    "gpu=0,reason=applications_clocks_setting": 0,
    "gpu=0,reason=sw_power_cap": 1,
    "gpu=0,reason=hw_slowdown": 0,
    "gpu=0,reason=sync_boost": 0,
    "gpu=0,reason=sw_thermal_slowdown": 0,
    "gpu=0,reason=hw_thermal_slowdown": 1,
    "gpu=0,reason=hw_power_brake_slowdown": 0,
  });
  assert.deepEqual(flat(s, "llmsup_gpu_ecc_errors"), { "gpu=0,type=corrected": 17, "gpu=0,type=uncorrected": 2 });
  assert.deepEqual(flat(s, "llmsup_gpu_retired_pages_pending"), { "gpu=0": 1 });
  assert.deepEqual(flat(s, "llmsup_gpu_remapped_rows"), { "gpu=0,kind=correctable": 3, "gpu=0,kind=uncorrectable": 1, "gpu=0,kind=pending": 1, "gpu=0,kind=failure": 0 });
  assert.deepEqual(flat(s, "llmsup_gpu_requires_reset"), { "gpu=0": 0, "gpu=1": 0 });
  assert.deepEqual(flat(s, "llmsup_gpu_reading_stale"), { "gpu=0,field=power_draw_w": 1 });
  assert.deepEqual(flat(s, "llmsup_gpu_faults"), { "gpu=0,kind=xid_fallen_off_bus,severity=down": 1, "gpu=0,kind=temperature,severity=degraded": 1, "gpu=all,kind=driver_unresponsive,severity=down": 1 });
});

test("GPUs not watched: not one llmsup_gpu_* series (not even the monitor's up gauge)", () => {
  const s = statusSeries(input({ status: { ...status, gpus: null, gpu_monitor: null, remediation: null } }));
  const gpu = STATUS_METRICS.filter((m) => m.name.startsWith("llmsup_gpu_")).map((m) => m.name);
  assert.ok(gpu.length >= 19);
  for (const name of gpu) assert.deepEqual(s.get(name), [], name);
});

test("nvidia-smi failing: the monitor is down (0) while the last readings stay, with their age", () => {
  const s = statusSeries(input({ status: { ...status, gpu_monitor: { ...status.gpu_monitor!, state: "failing" } }, now: NOW + 60_000 }));
  assert.deepEqual(flat(s, "llmsup_gpu_monitor_up"), { "": 0 });
  assert.deepEqual(flat(s, "llmsup_gpu_readings_age_seconds"), { "gpu=0": 62.5 });
});

test("alerts: each channel as status lists it (failing while the last attempt failed), none while alerts are off", () => {
  const s = statusSeries(input());
  assert.deepEqual(flat(s, "llmsup_alerts_pending"), { "channel=smtp": 2 });
  assert.deepEqual(flat(s, "llmsup_alerts_delivered_total"), { "channel=smtp": 7 });
  assert.deepEqual(flat(s, "llmsup_alerts_failed_attempts_total"), { "channel=smtp": 3 });
  assert.deepEqual(flat(s, "llmsup_alerts_rejected_total"), { "channel=smtp": 1 });
  assert.deepEqual(flat(s, "llmsup_alerts_dropped"), { "channel=smtp": 4 });
  assert.deepEqual(flat(s, "llmsup_alerts_delivery_failing"), { "channel=smtp": 1 });
  assert.deepEqual(flat(s, "llmsup_alerts_last_delivery_timestamp_seconds"), { "channel=smtp": Date.parse("2026-12-02T06:30:00.000Z") / 1000 });

  const ok = statusSeries(input({ status: { ...status, alerts: { ...status.alerts!, channels: [{ ...smtpChannel, failing: false, last_delivered_at: null }] } } }));
  assert.deepEqual(flat(ok, "llmsup_alerts_delivery_failing"), { "channel=smtp": 0 }, "0 once one got through");
  assert.deepEqual(flat(ok, "llmsup_alerts_last_delivery_timestamp_seconds"), {}, "no series before the first delivery");

  const channels = [
    { channel: "smtp", pending: 0, delivered: 4, failed_attempts: 0, rejected: 0, dropped: 0, failing: false, last_error_code: null, last_error: null, last_delivered_at: "2026-12-02T06:40:00.000Z" },
    { channel: "alertmanager", pending: 5, delivered: 10, failed_attempts: 6, rejected: 0, dropped: 1, failing: true, last_error_code: "LLMSUP_E_ALERT_RECEIVER_UNREACHABLE", last_error: "LLMSUP_E_ALERT_RECEIVER_UNREACHABLE: connect ECONNREFUSED 127.0.0.1:9093", last_delivered_at: null },
  ];
  const many = statusSeries(input({ status: { ...status, alerts: { ...status.alerts!, channels } as DaemonStatus["alerts"] } }));
  assert.deepEqual(flat(many, "llmsup_alerts_pending"), { "channel=smtp": 0, "channel=alertmanager": 5 });
  assert.deepEqual(flat(many, "llmsup_alerts_failed_attempts_total"), { "channel=smtp": 0, "channel=alertmanager": 6 });
  assert.deepEqual(flat(many, "llmsup_alerts_delivery_failing"), { "channel=smtp": 0, "channel=alertmanager": 1 });
  assert.deepEqual(flat(many, "llmsup_alerts_last_delivery_timestamp_seconds"), { "channel=smtp": Date.parse("2026-12-02T06:40:00.000Z") / 1000 });

  const off = statusSeries(input({ status: { ...status, alerts: { enabled: false, pending: 0, delivered: 0, last_error: null, channels: [] } } }));
  assert.deepEqual(flat(off, "llmsup_alerts_pending"), {}, "alerts off: no channel");
});

test("no status to be had: the verdict is unknown (3), build info stays, nothing else is made up", () => {
  const s = statusSeries(input({ status: undefined }));
  assert.deepEqual(flat(s, "llmsup_status_verdict"), { "": 3 });
  assert.equal(flat(s, "llmsup_build_info")["version=0.1.0,node=24.11.0"], 1);
  for (const m of STATUS_METRICS) if (m.name !== "llmsup_status_verdict" && m.name !== "llmsup_build_info") assert.deepEqual(s.get(m.name), [], m.name);
});

test("labels: each series carries exactly its metric's label names, and no free text of the status (reasons, errors, who drained) becomes a label value", () => {
  const s = statusSeries(input());
  let series = 0;
  for (const m of STATUS_METRICS) {
    for (const x of s.get(m.name) ?? []) {
      series++;
      assert.deepEqual(Object.keys(x.labels).sort(), [...m.labels].sort(), m.name);
      for (const v of Object.values(x.labels)) {
        for (const text of FREE_TEXT) assert.ok(!v.includes(text), `${m.name}: label value ${JSON.stringify(v)} is free text`);
        assert.ok(v.length < 64, `${m.name}: ${v}`);
      }
      assert.ok(Number.isFinite(x.value), m.name);
    }
  }
  assert.ok(series > 100, `${series} series`);
  for (const m of STATUS_METRICS) {
    assert.match(m.name, /^llmsup_[a-z_]+$/);
    assert.equal(m.type === "counter", m.name.endsWith("_total"), `${m.name}: counters and only counters end _total`);
  }
});

test("tiers: one DEGRADED by its rate of bad answers reads 1, the others 0", () => {
  const base = input().status!;
  const tier = (index: number, backend: string, quality: TierStatus["quality"]): TierStatus => ({ index, backend, model: "m", available: true, why: null, code: null, out_since: null, out_until: null, breaker: "closed", context: null, quality });
  const routes = [{ ...base.router.routes[2]!, tiers: [tier(0, "primary", { state: "degraded", detections: 3, window_s: 300, since: null }), tier(1, "fallback", { state: "ok", detections: 1, window_s: 300, since: null })] }];
  const s = statusSeries(input({ status: { ...base, router: { ...base.router, routes } } }));
  assert.deepEqual(flat(s, "llmsup_tier_degraded"), { "route=mistral,tier=0,backend=primary": 1, "route=mistral,tier=1,backend=fallback": 0 });
});
