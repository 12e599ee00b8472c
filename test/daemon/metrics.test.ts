/**
 * /metrics of a running daemon (`llmsup run` on simulated backends and a simulated nvidia-smi) says
 * what `llmsup status` says: the serving tier, the fallback and since when, backend states,
 * restarts, GPU readings in base units, XIDs and continued streams; and Prometheus' own linter
 * (`promtool check metrics`) finds nothing wrong with it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Agent } from "undici";
import { canonicalTokens, chatKey } from "../../src/sim/backend/answer.ts";
import { writeWrapper } from "../../src/sim/gpu/cli.ts";
import { defaultGpuState, writeGpuState } from "../../src/sim/gpu/state.ts";
import { SMTP_PASSWORD, SMTP_USER, startSmtp } from "../alerts/helpers.ts";
import { startDaemon, status, waitStatus, writeDaemonConfig, type DaemonFiles } from "../helpers/daemon.ts";
import { journalStandIn } from "../helpers/journal.ts";
import { promtoolCheckMetrics } from "../helpers/tools.ts";

const MIB = 1024 * 1024;

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of a text exposition (what Prometheus reads). */
function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** A scrape: the text, and the value of the one series with exactly these labels (undefined when there is none). */
async function scrape(files: DaemonFiles): Promise<{ text: string; samples: Sample[]; value(name: string, labels?: Record<string, string>): number | undefined; series(name: string): Sample[] }> {
  const agent = new Agent({ connect: { socketPath: files.socket } });
  try {
    const res = await agent.request({ origin: "http://llmsup", path: "/metrics", method: "GET" });
    const text = await res.body.text();
    assert.equal(res.statusCode, 200, text);
    assert.match(String(res.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
    const samples = parseExposition(text);
    const same = (a: Readonly<Record<string, string>>, b: Record<string, string>) => Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);
    return {
      text,
      samples,
      value: (name, labels = {}) => {
        const found = samples.filter((s) => s.name === name && same(s.labels, labels));
        assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)}: one series`);
        return found[0]?.value;
      },
      series: (name) => samples.filter((s) => s.name === name),
    };
  } finally {
    await agent.close();
  }
}

/** Simulated GPUs (GPU 0 at 61 °C) read by the daemon through the simulated nvidia-smi. */
async function withGpus(files: DaemonFiles, kernelLog: "off" | "journal"): Promise<string> {
  const state = path.join(files.dir, "gpus.json");
  const gpus = defaultGpuState(2);
  gpus.gpus[0]!.temperature_gpu = 61;
  await writeGpuState(state, gpus);
  const smi = await writeWrapper(state, path.join(files.dir, "nvidia-smi"));
  writeFileSync(files.config, readFileSync(files.config, "utf8").replace("[gpu]\nenabled = false\n", `[gpu]\nnvidia_smi = "${smi}"\ninterval = "300ms"\ndeadline = "3s"\nkernel_log = "${kernelLog}"\nsustain_samples = 1\nclear_samples = 1\n`));
  return state;
}

type GpuJson = { gpus: { index: number; sampled_at: string | null; memory_used_mib: number | null }[] } | null;

test("a SIGKILLed first tier on /metrics: serving tier 0 → 1, on fallback since the kill, the backend's state set and restarts; GPU readings in celsius and bytes as status shows them; promtool finds no problem; a reload that drops the route and the backend takes their series away", async (t) => {
  const smtp = await startSmtp(t);
  const files = await writeDaemonConfig(
    t,
    [
      // A long restart delay keeps the primary in backoff (and the route on its fallback) while the scrape is read.
      { name: "primary", kind: "llamacpp", extra: "gpus = [0]", args: ["--gpus", "0"], process: `  restart_sec = "60s"\n  restart_max_delay = "60s"\n  start_limit_interval = "10m"\n` },
      { name: "fallback", kind: "llamacpp" },
    ],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`,
    `[alerts]\nenabled = true\nfrom = "llmsup@box.example.com"\nto = ["oncall@example.com"]\n[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "TEST_SMTP_PASSWORD"\ntimeout = "3s"\n`,
  );
  const gpuState = await withGpus(files, "off");
  const d = await startDaemon(t, files, { TEST_SMTP_PASSWORD: SMTP_PASSWORD, LLMSUP_SIM_GPU_STATE: gpuState });
  const ready = await waitStatus(d, "both ready on tier 0, GPUs sampled, the start mailed", (s, code) => {
    const g = (s as unknown as { gpus: GpuJson }).gpus;
    return code === 0 && s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0 && g?.gpus.length === 2 && g.gpus.every((x) => x.sampled_at !== null) && smtp.mails.length >= 1;
  }, 20_000);

  // The GPU sample may refresh between a scrape and a status read: take the pair from one sample (same sampled_at either side).
  let before!: Awaited<ReturnType<typeof scrape>>;
  let shown!: { gpus: GpuJson };
  for (let i = 0; ; i++) {
    const first = (await status(d)).json as unknown as { gpus: GpuJson };
    before = await scrape(files);
    shown = (await status(d)).json as unknown as { gpus: GpuJson };
    if (first.gpus!.gpus[0]!.sampled_at === shown.gpus!.gpus[0]!.sampled_at) break;
    assert.ok(i < 20, "a scrape between two status reads of the same GPU sample");
  }
  assert.equal(before.value("llmsup_route_serving_tier", { route: "llama" }), 0);
  assert.equal(before.value("llmsup_route_on_fallback", { route: "llama" }), 0);
  assert.equal(before.value("llmsup_route_settling", { route: "llama" }), 0);
  assert.deepEqual(before.series("llmsup_route_fallback_since_timestamp_seconds"), [], "no fallback_since while on tier 0");
  assert.equal(before.value("llmsup_status_verdict"), 0);
  assert.equal(before.series("llmsup_build_info").length, 1);
  assert.equal(before.value("llmsup_backend_state", { backend: "primary", kind: "llamacpp", state: "ready" }), 1);
  assert.equal(before.series("llmsup_backend_state").filter((s) => s.labels.backend === "primary").length, 10, "one series per state");
  assert.equal(before.series("llmsup_backend_state").filter((s) => s.labels.backend === "primary" && s.value === 1).length, 1);
  assert.equal(before.value("llmsup_backend_restarts_total", { backend: "primary" }), 0, "a series from the start");
  assert.equal(before.value("llmsup_backend_start_budget_limit", { backend: "primary" }), 5);
  assert.equal(before.value("llmsup_backend_health", { backend: "primary" }), 0);
  // GPU readings in base units, the values status shows.
  assert.equal(before.value("llmsup_gpu_monitor_up"), 1);
  assert.equal(before.value("llmsup_gpu_temperature_celsius", { gpu: "0" }), 61);
  assert.equal(before.value("llmsup_gpu_temperature_celsius", { gpu: "1" }), 35);
  assert.equal(before.value("llmsup_gpu_memory_total_bytes", { gpu: "0" }), 81_559 * MIB);
  const usedMib = shown.gpus!.gpus[0]!.memory_used_mib!;
  assert.ok(usedMib > 4, `the simulated llama-server holds memory on GPU 0 (${usedMib} MiB)`);
  assert.equal(before.value("llmsup_gpu_memory_used_bytes", { gpu: "0" }), usedMib * MIB);
  assert.equal(before.value("llmsup_gpu_condition", { gpu: "0", condition: "ok" }), 1);
  assert.equal(before.value("llmsup_gpu_remediation_state", { gpu: "0", state: "idle" }), 1);
  assert.equal(before.value("llmsup_alerts_delivered_total", { channel: "smtp" }), 1, "the start mail");
  assert.equal(before.value("llmsup_alerts_delivery_failing", { channel: "smtp" }), 0);
  // The client library's standard process metrics, unprefixed.
  assert.ok(before.value("process_cpu_seconds_total") !== undefined && before.value("process_resident_memory_bytes")! > 0 && before.value("process_start_time_seconds")! > 0);
  assert.ok(before.samples.some((s) => s.name.startsWith("nodejs_")));
  assert.ok(!before.samples.some((s) => /^llmsup_(?:process|nodejs)_/.test(s.name)), "no llmsup_ prefix on the Node process metrics");

  const killedAt = Date.now();
  process.kill(ready.json.backends.find((b) => b.name === "primary")!.pid!, "SIGKILL");
  await waitStatus(d, "the primary in backoff, the route on its fallback", (s) => s.backends.find((b) => b.name === "primary")!.state === "backoff" && s.router.routes[0]!.serving_tier === 1, 15_000);

  const after = await scrape(files);
  assert.equal(after.value("llmsup_route_serving_tier", { route: "llama" }), 1);
  assert.equal(after.value("llmsup_route_on_fallback", { route: "llama" }), 1);
  const since = after.value("llmsup_route_fallback_since_timestamp_seconds", { route: "llama" });
  assert.ok(since !== undefined && since >= Math.floor(killedAt / 1000) - 1 && since <= Date.now() / 1000, `fallback since the kill (${since}, killed at ${killedAt / 1000})`);
  assert.equal(after.value("llmsup_backend_state", { backend: "primary", kind: "llamacpp", state: "backoff" }), 1);
  assert.equal(after.value("llmsup_backend_state", { backend: "primary", kind: "llamacpp", state: "ready" }), 0, "a state that is not current keeps its series, at 0");
  assert.equal(after.value("llmsup_backend_state", { backend: "fallback", kind: "llamacpp", state: "ready" }), 1);
  assert.equal(after.value("llmsup_backend_restarts_total", { backend: "primary" }), 1);
  assert.equal(after.value("llmsup_backend_restarts_total", { backend: "fallback" }), 0);
  assert.equal(after.value("llmsup_backend_start_budget_used", { backend: "primary" }), 1);
  assert.equal(after.value("llmsup_status_verdict"), 1, "WARNING: on a fallback tier");
  assert.equal(after.value("llmsup_gpu_temperature_celsius", { gpu: "0" }), 61);

  await t.test("promtool check metrics finds no problem in the scrape", (st) => {
    const r = promtoolCheckMetrics(after.text);
    if ("missing" in r) return st.skip(r.missing);
    assert.equal(r.error, undefined);
    assert.equal(r.findings, "", "promtool's findings");
    assert.equal(r.status, 0);
  });

  // A reload that drops the primary and renames the route: neither is exported any more.
  const text = readFileSync(files.config, "utf8");
  const primaryBlock = text.slice(text.indexOf(`[[backend]]\nname = "primary"`), text.indexOf(`[[backend]]\nname = "fallback"`));
  writeFileSync(files.config, text.replace(primaryBlock, "").replace(/\[\[route\]\]\nmodel = "llama"\n.*\n/, `[[route]]\nmodel = "solo"\ntiers = [{ backend = "fallback", model = "m" }]\n`));
  const reload = await d.cli("reload");
  assert.equal(reload.code, 0, reload.stderr);
  const reloaded = await scrape(files);
  assert.equal(reloaded.value("llmsup_route_serving_tier", { route: "solo" }), 0);
  assert.equal(reloaded.value("llmsup_route_on_fallback", { route: "solo" }), 0);
  assert.equal(reloaded.value("llmsup_backend_state", { backend: "fallback", kind: "llamacpp", state: "ready" }), 1);
  const gauges = reloaded.samples.filter((s) => s.name.startsWith("llmsup_") && !/_total$|_bucket$|_sum$|_count$/.test(s.name));
  assert.deepEqual(gauges.filter((s) => s.labels.route === "llama").map((s) => s.name), [], "the old route's gauges are gone");
  assert.deepEqual(gauges.filter((s) => s.labels.backend === "primary" || s.labels.from === "primary").map((s) => s.name), [], "the dropped backend's gauges are gone");
  assert.equal(reloaded.value("llmsup_backend_restarts_total", { backend: "primary" }), undefined, "and its restart counter");
  assert.equal(reloaded.value("llmsup_gpu_temperature_celsius", { gpu: "0" }), 61, "the GPUs stay");
});

const question = "What does llmsup do when a GPU falls off the bus?";

test("an XID 79 under a stream on /metrics: the XID counted for its GPU, the GPU fault active, and the stream counted as continued from gpu0 on cpu", async (t) => {
  const files = await writeDaemonConfig(
    t,
    [
      { name: "gpu0", kind: "llamacpp", args: ["--model", "big", "--token-rate", 4, "--gpus", "0"], extra: "gpus = [0]" },
      { name: "cpu", kind: "llamacpp", args: ["--model", "small"] },
    ],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "gpu0", model = "big" }, { backend = "cpu", model = "small" }]\n`,
  );
  const gpuState = await withGpus(files, "journal");
  writeFileSync(files.config, readFileSync(files.config, "utf8").replace(`listen = ""\n`, `listen = ""\nhedge_after = "off"\n`));
  const kernelLog = path.join(files.dir, "kern.log");
  writeFileSync(kernelLog, "");
  const bin = journalStandIn(files.dir, kernelLog);
  const d = await startDaemon(t, files, { PATH: `${bin}${path.delimiter}${process.env.PATH ?? ""}`, LLMSUP_SIM_GPU_STATE: gpuState });
  await waitStatus(d, "both ready on tier 0, GPUs sampled, the kernel log followed", (s) => {
    const x = s as unknown as { gpus: GpuJson; gpu_monitor: { kernel_log: { source: string } | null } | null };
    return s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0 && x.gpus?.gpus.length === 2 && x.gpu_monitor?.kernel_log?.source === "journal";
  });
  const before = await scrape(files);
  assert.deepEqual(before.series("llmsup_gpu_xid_errors_total"), []);
  assert.deepEqual(before.series("llmsup_stream_continuations_total"), []);

  const agent = new Agent({ connect: { socketPath: files.socket } });
  t.after(() => agent.close());
  const res = await agent.request({ origin: "http://llmsup", path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "llama", stream: true, messages: [{ role: "user", content: question }] }) });
  assert.equal(res.statusCode, 200);
  let body = "";
  res.body.setEncoding("utf8");
  const read = (async () => {
    for await (const chunk of res.body) body += String(chunk);
  })();
  const deadline = Date.now() + 15_000;
  while ((body.match(/^data: \{/gm)?.length ?? 0) < 2) {
    assert.ok(Date.now() < deadline, `the stream's first tokens on gpu0; got:\n${body}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  appendFileSync(kernelLog, "[ 8123.456789] NVRM: Xid (PCI:0000:1b:00): 79, pid=4242, name=llama-server, GPU has fallen off the bus.\n");
  await read;
  assert.match(body, /^: llmsup: the answer continues on tier 1 \(cpu\)/m, "the stream moved to the next tier");
  assert.equal(body.match(/^data: \[DONE\]$/gm)?.length, 1);
  const text = [...body.matchAll(/^data: (\{.*\})$/gm)].map((m) => (JSON.parse(m[1]!) as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta?.content ?? "").join("");
  assert.equal(text, canonicalTokens(chatKey([{ role: "user", content: question }])).join(""), "one complete answer");

  await waitStatus(d, "gpu0 down for its GPU", (s) => s.backends.some((b) => b.name === "gpu0" && b.health === "down"));
  const after = await scrape(files);
  assert.equal(after.value("llmsup_gpu_xid_errors_total", { gpu: "0", xid: "79" }), 1);
  assert.equal(after.value("llmsup_stream_continuations_total", { route: "llama", from: "gpu0", to: "cpu", outcome: "continued" }), 1);
  assert.equal(after.value("llmsup_stream_continuations_total", { route: "llama", from: "gpu0", to: "cpu", outcome: "failed" }), undefined);
  const faults = after.series("llmsup_gpu_faults").filter((s) => s.labels.gpu === "0");
  assert.ok(faults.some((s) => s.labels.kind!.startsWith("xid_") && s.labels.severity === "down" && s.value === 1), JSON.stringify(faults));
  assert.equal(after.value("llmsup_gpu_condition", { gpu: "0", condition: "down" }), 1);
  assert.equal(after.value("llmsup_backend_health", { backend: "gpu0" }), 2);
});
