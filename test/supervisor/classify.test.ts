import { test } from "node:test";
import assert from "node:assert/strict";
import { classifyExit, countsAsFailure } from "../../src/supervisor/classify.ts";
import { oomAtLoadLines, oomAtRuntimeLines, vllmFreeMemoryLines } from "../../src/sim/backend/kinds.ts";

const base = { code: 1, signal: null, lastLines: [] as string[] };

test("GPU out-of-memory messages of each server are classified as oom", () => {
  for (const kind of ["vllm", "llamacpp", "ollama"] as const) {
    for (const lines of [oomAtLoadLines(kind, 0, 4000, 100, 81559, "m"), oomAtRuntimeLines(kind, 0, 81559)]) {
      const c = classifyExit({ ...base, lastLines: ["INFO starting", ...lines, "Traceback (most recent call last):"] });
      assert.equal(c.class, "oom", `${kind}: ${lines.join(" | ")}`);
      assert.ok(c.evidence && lines.some((l) => l.trim() === c.evidence), "the evidence is one of the server's own lines");
    }
  }
  assert.equal(classifyExit({ ...base, lastLines: ["ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`"] }).class, "oom");
});

test("vLLM's free-memory refusal means another process holds the GPU, not a crash of ours", () => {
  const c = classifyExit({ ...base, lastLines: vllmFreeMemoryLines(2_000, 81559, 0.9) });
  assert.equal(c.class, "gpu_occupied");
  assert.equal(countsAsFailure(c.class), false);
});

test("SIGKILL from outside: the kernel OOM killer when the host is short of memory, someone else otherwise", () => {
  assert.equal(classifyExit({ code: null, signal: "SIGKILL", lastLines: [], hostMemoryPressure: true }).class, "oom_killed");
  assert.equal(classifyExit({ code: null, signal: "SIGKILL", lastLines: [], hostMemoryPressure: false }).class, "killed");
});

test("requested ends are named after the request; the rest are clean exits or crashes", () => {
  assert.equal(classifyExit({ code: 0, signal: null, lastLines: [], requested: "stop" }).class, "stopped");
  assert.equal(classifyExit({ code: null, signal: "SIGTERM", lastLines: [], requested: "startup_timeout" }).class, "startup_timeout");
  assert.equal(classifyExit({ code: null, signal: "SIGTERM", lastLines: [], requested: "wedged" }).class, "wedged");
  assert.equal(classifyExit({ code: 0, signal: null, lastLines: [] }).class, "clean_exit");
  const crash = classifyExit({ code: null, signal: "SIGSEGV", lastLines: ["Segmentation fault"] });
  assert.deepEqual([crash.class, crash.reason, crash.evidence], ["crash", "crashed (signal SIGSEGV)", "Segmentation fault"]);
  assert.equal(countsAsFailure("stopped"), false);
  assert.equal(countsAsFailure("crash"), true);
});
