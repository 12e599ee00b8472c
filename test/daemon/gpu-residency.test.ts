/** Whether a GPU tier runs on its GPUs, judged without I/O from a compute-apps reading and the process groups of its pids. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { validateConfigText } from "../../src/config/load.ts";
import { gpuHealthOf } from "../../src/daemon/gpu-health.ts";
import { HealthFeed } from "../../src/daemon/health-feed.ts";
import { HealthRegistry } from "../../src/health/registry.ts";
import { ManualClock } from "../helpers/clock.ts";
import { judgeResidency, type ResidencyFacts } from "../../src/daemon/gpu-residency.ts";
import type { GpuFault } from "../../src/gpu/types.ts";

const NOW = 1_000_000;
const VLLM = { kind: "vllm" as const, gpus: [0], managed: true };
/** vLLM pid 4242 (its engine child 4250 in its group holds the memory), serving for a minute; a stranger 777 on the GPU. */
function facts(over: Partial<ResidencyFacts> = {}): ResidencyFacts {
  return {
    backend: VLLM,
    serving: { pid: 4242, since: NOW - 60_000 },
    reading: { apps: [{ pid: 4250, pgrp: 4242 }, { pid: 777, pgrp: 777 }], at: NOW - 500 },
    now: NOW,
    settleMs: 15_000,
    freshMs: 10_000,
    ...over,
  };
}

test("a process group holding GPU memory is on its GPU; a fresh reading without it means it answers from the CPU, and says which pid and GPU", () => {
  assert.deepEqual(judgeResidency(facts()), { kind: "on_gpu" });
  const off = judgeResidency(facts({ reading: { apps: [{ pid: 777, pgrp: 777 }], at: NOW - 500 } }));
  assert.deepEqual(off, { kind: "off_gpu", reason: "pid 4242 is not on GPU 0 (nvidia-smi lists no memory of its process group): it is answering from the CPU, slowly" });
  const tp = judgeResidency(facts({ backend: { kind: "llamacpp", gpus: [0, 1], managed: true }, reading: { apps: [], at: NOW } }));
  assert.equal(tp.kind === "off_gpu" && tp.reason, "pid 4242 is not on GPUs 0, 1 (nvidia-smi lists no memory of its process group): it is answering from the CPU, slowly");
});

test("an absence in a reading of unknown age, or an old one, is never a finding: it asks for a fresh reading", () => {
  assert.deepEqual(judgeResidency(facts({ reading: { apps: [{ pid: 777, pgrp: 777 }] } })), { kind: "unconfirmed" });
  assert.deepEqual(judgeResidency(facts({ reading: { apps: [], at: NOW - 10_001 } })), { kind: "unconfirmed" });
  assert.deepEqual(judgeResidency(facts({ reading: { apps: [{ pid: 4250, pgrp: 4242 }] } })), { kind: "on_gpu" }, "a presence is a presence, however old");
});

test("no finding for what is not a GPU tier llmsup runs, for a process not serving or serving for less than the settle time, nor when a listed pid's group is unknown", () => {
  const unjudged = (f: ResidencyFacts) => judgeResidency({ ...f, reading: { apps: [], at: NOW } }).kind;
  assert.equal(unjudged(facts({ backend: { kind: "ollama", gpus: [0], managed: true } })), "unjudged", "Ollama tells through /api/ps");
  assert.equal(unjudged(facts({ backend: { kind: "llamacpp", gpus: [], managed: true } })), "unjudged", "a CPU tier");
  assert.equal(unjudged(facts({ backend: { kind: "vllm", gpus: [0], managed: false } })), "unjudged", "a remote backend");
  assert.equal(unjudged(facts({ serving: undefined })), "unjudged");
  assert.equal(unjudged(facts({ serving: { pid: 4242, since: NOW - 14_999 } })), "unjudged", "it may not have taken its memory yet");
  assert.equal(unjudged(facts({ serving: { pid: 4242, since: NOW - 15_000 } })), "off_gpu");
  const r = judgeResidency(facts({ reading: { apps: [{ pid: 98765 }], at: NOW } }));
  assert.deepEqual(r, { kind: "unjudged", why: "cannot tell whose pid 98765 is (gone, or of another pid namespace)" });
});

function config() {
  const v = validateConfigText(`[[backend]]\nname = "vllm-gpu0"\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\ngpus = [0]\n  [backend.process]\n  command = ["/opt/vllm/bin/python"]\n[[route]]\nmodel = "m"\ntiers = [{ backend = "vllm-gpu0", model = "m" }]\n`, { hostname: "box" });
  if (!v.ok) assert.fail(v.problems.map((p) => p.message).join("\n"));
  return v.config;
}

test("GPU health: answering from the CPU is degraded; a fault on its GPU outranks it", () => {
  const b = config().backends[0]!;
  const cpu = "pid 4242 is not on GPU 0 (nvidia-smi lists no memory of its process group): it is answering from the CPU, slowly";
  const busIds = new Map([[0, "00000000:3B:00.0"]]);
  assert.deepEqual(gpuHealthOf(b, [], busIds), { state: "healthy", reason: "" });
  assert.deepEqual(gpuHealthOf(b, [], busIds, cpu), { state: "degraded", reason: cpu });
  const lost: GpuFault = { id: "fallen_off_bus@0", kind: "fallen_off_bus", gpu: 0, severity: "down", reason: "GPU 0: fallen off the bus", action: "reboot", since: NOW, lastSeen: NOW, count: 1 };
  assert.deepEqual(gpuHealthOf(b, [lost], busIds, cpu), { state: "down", reason: "GPU 0: fallen off the bus" });
});

test("the CPU finding lives with its process: applied while it serves, gone when it stops serving, and a late finding about it is dropped", () => {
  const c = config();
  const clock = new ManualClock(NOW);
  const health = new HealthRegistry(c, clock);
  const feed = new HealthFeed(health);
  const busIds = new Map([[0, "00000000:3B:00.0"]]);
  const cpu = "pid 4242 is not on GPU 0 (nvidia-smi lists no memory of its process group): it is answering from the CPU, slowly";
  feed.process("vllm-gpu0", "starting", "started", NOW);
  assert.equal(feed.servingSince("vllm-gpu0"), undefined);
  feed.process("vllm-gpu0", "ready", "readiness passed", NOW + 1_000);
  feed.process("vllm-gpu0", "degraded", "slow", NOW + 2_000);
  assert.equal(feed.servingSince("vllm-gpu0"), NOW + 1_000, "serving since it first became ready, degraded or not");
  feed.residency("vllm-gpu0", cpu);
  feed.applyGpu(c, busIds);
  feed.process("vllm-gpu0", "ready", "probes pass", NOW + 3_000);
  assert.deepEqual([health.get("vllm-gpu0").state, health.get("vllm-gpu0").reason], ["degraded", cpu]);
  feed.process("vllm-gpu0", "exited", "crashed", NOW + 4_000);
  feed.process("vllm-gpu0", "starting", "restart", NOW + 5_000);
  feed.process("vllm-gpu0", "ready", "readiness passed", NOW + 6_000);
  assert.deepEqual([health.get("vllm-gpu0").state, feed.servingSince("vllm-gpu0")], ["healthy", NOW + 6_000], "the new process starts with a clean slate");
  feed.process("vllm-gpu0", "exited", "crashed", NOW + 7_000);
  feed.residency("vllm-gpu0", cpu);
  feed.applyGpu(c, busIds);
  feed.process("vllm-gpu0", "starting", "restart", NOW + 8_000);
  feed.process("vllm-gpu0", "ready", "readiness passed", NOW + 9_000);
  assert.equal(health.get("vllm-gpu0").state, "healthy", "a finding that came in after its process stopped serving was dropped");
});
