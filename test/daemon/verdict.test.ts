import { test } from "node:test";
import assert from "node:assert/strict";
import { verdict, type VerdictInput } from "../../src/daemon/verdict.ts";

const onTier0: VerdictInput["routes"][number] = { model: "llama", serving_tier: 0, serving_backend: "vllm", tiers: [{ index: 0, backend: "vllm", why: null }, { index: 1, backend: "ollama", why: null }] };
const healthy = (name: string) => ({ name, state: "ready", health: "healthy", health_reason: "all checks pass" });
const coolGpu = { index: 0, condition: "ok", clock_event_reasons: ["gpu_idle"], faults: [] };
const all: VerdictInput = { routes: [onTier0], backends: [healthy("vllm"), healthy("ollama")], gpus: [coolGpu], alerts: { enabled: true, pending: 0, last_error: null, channels: [] } };

const cases: { name: string; input: Partial<VerdictInput>; code: 0 | 1 | 2; text: RegExp }[] = [
  { name: "everything healthy", input: {}, code: 0, text: /^OK: llama on vllm$/ },
  { name: "a remote backend with no report yet is no problem", input: { backends: [healthy("vllm"), { ...healthy("cloud"), state: "remote" }] }, code: 0, text: /^OK/ },
  { name: "SW power cap under load is normal", input: { gpus: [{ ...coolGpu, clock_event_reasons: ["sw_power_cap"] }] }, code: 0, text: /^OK/ },
  { name: "a route on a fallback tier, with why", input: { routes: [{ ...onTier0, serving_tier: 1, serving_backend: "ollama", tiers: [{ index: 0, backend: "vllm", why: "breaker open for 20s more (ttft_timeout)" }, onTier0.tiers[1]!] }] }, code: 1, text: /^WARNING: llama on fallback tier 1 \(ollama\): tier 0 vllm breaker open for 20s more \(ttft_timeout\)$/ },
  { name: "a fallback backend stopped by hand", input: { backends: [healthy("vllm"), { name: "ollama", state: "stopped", health: "down", health_reason: "process stopped: asked to stop" }] }, code: 1, text: /^WARNING: ollama is down: process stopped: asked to stop$/ },
  { name: "a GPU at 96 °C slowing down, before any fault is raised", input: { gpus: [{ ...coolGpu, clock_event_reasons: ["hw_thermal_slowdown"] }] }, code: 1, text: /^WARNING: GPU 0 is throttling \(hw_thermal_slowdown\): check cooling and power$/ },
  { name: "a GPU fault with its action", input: { gpus: [{ ...coolGpu, condition: "degraded", faults: [{ reason: "GPU 0: uncorrected ECC errors rising (0 → 3)", action: "drain and reset the GPU when idle" }] }] }, code: 1, text: /^WARNING: GPU 0: uncorrected ECC errors rising \(0 → 3\): drain and reset the GPU when idle$/ },
  { name: "a backend drained for maintenance, healthy, the route on its fallback", input: { routes: [{ ...onTier0, serving_tier: 1, serving_backend: "ollama", tiers: [{ index: 0, backend: "vllm", why: "drained by alice since 2025-01-02T03:04:05Z" }, onTier0.tiers[1]!] }], backends: [{ ...healthy("vllm"), drained: { by: "alice", since: "2025-01-02T03:04:05.000Z" } }, healthy("ollama")] }, code: 1, text: /^WARNING: llama on fallback tier 1 \(ollama\): tier 0 vllm drained by alice since 2025-01-02T03:04:05Z \(\+1 more\)$/ },
  { name: "a drained backend no route uses first", input: { backends: [healthy("vllm"), { ...healthy("ollama"), drained: { by: "alice", since: "2025-01-02T03:04:05.000Z" } }] }, code: 1, text: /^WARNING: ollama is drained by alice since 2025-01-02T03:04:05Z: `llmsup undrain ollama` puts it back in rotation$/ },
  { name: "a tier DEGRADED by its rate of bad answers while still serving", input: { routes: [{ ...onTier0, tiers: [{ index: 0, backend: "vllm", model: "llama-3", why: null, quality: { state: "degraded", detections: 3, window_s: 300 } }, onTier0.tiers[1]!] }] }, code: 1, text: /^WARNING: llama tier 0 \(vllm\/llama-3\) is DEGRADED: 3 bad answers \(loops, empty, garbage or refusals\) in 5 min; `llmsup events --kind quality`/ },
  { name: "a tier with bad answers below the count that degrades it is no problem", input: { routes: [{ ...onTier0, tiers: [{ index: 0, backend: "vllm", why: null, quality: { state: "ok", detections: 2, window_s: 300 } }, onTier0.tiers[1]!] }] }, code: 0, text: /^OK/ },
  { name: "alert mails not going out", input: { alerts: { enabled: true, pending: 3, last_error: "ECONNREFUSED", channels: [{ channel: "smtp", pending: 3, failing: true, last_error_code: "LLMSUP_E_SMTP_UNREACHABLE", last_error: "ECONNREFUSED" }] } }, code: 1, text: /^WARNING: alert mails are not going out \(3 waiting\): ECONNREFUSED; check \[alerts\.smtp\] with `llmsup test-alert`$/ },
  {
    name: "Alertmanager unreachable while mail goes out: the failing channel is named, with its error and where to look",
    input: { alerts: { enabled: true, pending: 2, last_error: "alertmanager: LLMSUP_E_ALERT_RECEIVER_UNREACHABLE: ECONNREFUSED", channels: [{ channel: "smtp", pending: 0, failing: false, last_error_code: null, last_error: null }, { channel: "alertmanager", pending: 2, failing: true, last_error_code: "LLMSUP_E_ALERT_RECEIVER_UNREACHABLE", last_error: "LLMSUP_E_ALERT_RECEIVER_UNREACHABLE: ECONNREFUSED" }] } },
    code: 1,
    text: /^WARNING: alerts are not reaching Alertmanager \(2 waiting\): LLMSUP_E_ALERT_RECEIVER_UNREACHABLE: ECONNREFUSED; check \[alerts\.alertmanager\] url with `llmsup test-alert`$/,
  },
  {
    name: "a webhook failing with no words for its error: its code is given",
    input: { alerts: { enabled: true, pending: 1, last_error: "ECONNREFUSED", channels: [{ channel: "smtp", pending: 0, failing: true, last_error_code: "LLMSUP_E_SMTP_UNREACHABLE", last_error: "ECONNREFUSED" }, { channel: "pager", pending: 1, failing: true, last_error_code: "LLMSUP_E_ALERT_RECEIVER_REJECTED", last_error: null }] } },
    code: 1,
    text: /^WARNING: alerts are not reaching webhook pager \(1 waiting\): LLMSUP_E_ALERT_RECEIVER_REJECTED; check its \[\[alerts\.webhook\]\] url with `llmsup test-alert`$/,
  },
  { name: "an old delivery error with nothing waiting is no problem", input: { alerts: { enabled: true, pending: 0, last_error: "ECONNREFUSED", channels: [{ channel: "smtp", pending: 0, failing: true, last_error_code: "LLMSUP_E_SMTP_UNREACHABLE", last_error: "ECONNREFUSED" }] } }, code: 0, text: /^OK/ },
  { name: "a fatal backend, even while the route is fine", input: { backends: [healthy("vllm"), { name: "ollama", state: "fatal", health: "down", health_reason: "process fatal: …" }] }, code: 2, text: /^CRITICAL: ollama is fatal \(restart budget spent\): fix the cause, then `llmsup reset ollama`$/ },
  { name: "a route with no serving tier", input: { routes: [{ ...onTier0, serving_tier: -1, serving_backend: null, tiers: [{ index: 0, backend: "vllm", why: "backend down: GPU lost" }] }] }, code: 2, text: /^CRITICAL: llama has no serving tier \(tier 0: backend down: GPU lost\)/ },
];

for (const c of cases) {
  test(`status verdict: ${c.name} → ${["OK", "WARNING", "CRITICAL"][c.code]}`, () => {
    const v = verdict({ ...all, ...c.input });
    assert.equal(v.code, c.code);
    assert.match(v.text, c.text);
  });
}

test("status verdict: the headline is the worst problem, and says how many more there are; every problem is listed worst first", () => {
  const v = verdict({
    ...all,
    routes: [{ ...onTier0, serving_tier: 1, serving_backend: "ollama" }],
    backends: [{ name: "vllm", state: "fatal", health: "down", health_reason: "x" }, healthy("ollama")],
    gpus: [{ ...coolGpu, clock_event_reasons: ["hw_slowdown"] }],
  });
  assert.equal(v.code, 2);
  assert.match(v.text, /^CRITICAL: vllm is fatal .* \(\+2 more\)$/);
  assert.deepEqual(v.problems.map((p) => p.level), ["critical", "warning", "warning"]);
});
