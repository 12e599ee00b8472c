/** What follows an exit, decided without I/O: stopped, a restart now, backoff, fatal, blocked, or exited by policy. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { decideAfterExit, recordExit, type AfterExitInput, type ExitFactsIn } from "../../src/supervisor/after-exit.ts";
import { EMPTY_BUDGET } from "../../src/supervisor/budget.ts";
import type { ExitRecord } from "../../src/supervisor/states.ts";

const NOW = 1_000_000;
const facts: ExitFactsIn = { at: NOW, generation: 3, pid: 4242, code: 1, signal: null, lastLines: ["loading", "Traceback (most recent call last):", "RuntimeError: boom"], hostMemoryPressure: false };
const crash = recordExit(facts);

function input(over: Partial<AfterExitInput> = {}): AfterExitInput {
  return {
    backend: "vllm-gpu0",
    exit: crash,
    restart: "always",
    backoff: { restartSec: 10_000, maxDelay: 120_000, steps: 5 },
    budgetPolicy: { interval: 15 * 60_000, burst: 5 },
    budget: EMPTY_BUDGET,
    consecutiveFailures: 0,
    now: NOW,
    jitter: 0,
    ...over,
  };
}

test("a crash with budget left backs off by restart_sec (plus jitter) and counts one failure", () => {
  const d = decideAfterExit(input({ jitter: 0.5 }));
  assert.equal(d.kind, "backoff");
  if (d.kind !== "backoff") return;
  assert.equal(d.delayMs, 10_500, "10s plus half of the 10% jitter");
  assert.equal(d.reason, "restarting in 11s after: crashed (exit status 1)");
  assert.equal(d.startReason, "restart after backoff (crash)");
  assert.deepEqual(d.budget, { failures: [NOW] });
  assert.equal(d.consecutiveFailures, 1);
});

test("the delay grows with the consecutive failures, up to restart_max_delay", () => {
  const delays = [0, 1, 2, 5, 9].map((n) => {
    const d = decideAfterExit(input({ consecutiveFailures: n }));
    return d.kind === "backoff" ? d.delayMs : -1;
  });
  assert.deepEqual(delays, [10_000, 16_438, 27_019, 120_000, 120_000]);
});

test("the failure past start_limit_burst inside the window is fatal, with what to do", () => {
  const budget = { failures: [NOW - 5_000, NOW - 4_000, NOW - 3_000, NOW - 2_000, NOW - 1_000] };
  const d = decideAfterExit(input({ budget, consecutiveFailures: 5 }));
  assert.equal(d.kind, "fatal");
  assert.match(d.reason, /^restart budget spent: 6 failed starts within 15m \(start_limit_burst 5\); last: crashed \(exit status 1\)\. Fix the cause, then run `llmsup reset vllm-gpu0`$/);
  assert.equal(d.budget.failures.length, 6);
  // Failures that left the window do not count.
  const old = { failures: budget.failures.map((t) => t - 20 * 60_000) };
  assert.equal(decideAfterExit(input({ budget: old })).kind, "backoff");
});

test("what llmsup was asked decides first: a stop stays stopped, an operator's restart starts at once, neither counts", () => {
  const stopped = recordExit({ ...facts, code: null, signal: "SIGTERM", requested: "stop", requestDetail: "llmsup is stopping" });
  const s = decideAfterExit(input({ exit: stopped, requested: "stop", requestDetail: "llmsup is stopping" }));
  assert.deepEqual(s, { kind: "stopped", reason: "llmsup is stopping", budget: EMPTY_BUDGET, consecutiveFailures: 0 });
  const restarted = recordExit({ ...facts, code: null, signal: "SIGTERM", requested: "restart", requestDetail: "restarted on request" });
  assert.equal(restarted.class, "stopped");
  const r = decideAfterExit(input({ exit: restarted, requested: "restart", requestDetail: "restarted on request", restart: "never" }));
  assert.deepEqual(r, { kind: "start", reason: "restarted on request", budget: EMPTY_BUDGET, consecutiveFailures: 0 });
});

test("restart = never leaves it exited; on-failure restarts everything but a clean exit", () => {
  const never = decideAfterExit(input({ restart: "never" }));
  assert.equal(never.kind, "exited");
  assert.equal(never.reason, 'crashed (exit status 1); restart = "never"');
  assert.equal(never.budget.failures.length, 1, "still a failed start");
  const clean = recordExit({ ...facts, code: 0 });
  assert.equal(decideAfterExit(input({ exit: clean, restart: "on-failure" })).kind, "exited");
  assert.equal(decideAfterExit(input({ restart: "on-failure" })).kind, "backoff");
  assert.equal(decideAfterExit(input({ exit: clean, restart: "always" })).kind, "backoff");
});

test("another process holding the GPU memory blocks the backend without touching the budget; unnamed, it backs off", () => {
  const occupied = recordExit({ ...facts, lastLines: ["ValueError: Free memory on device (2.1/79.1 GiB) on startup is less than desired GPU memory utilization (0.9, 71.2 GiB)."] });
  assert.equal(occupied.class, "gpu_occupied");
  const holder = { pid: 777, gpu: 0, usedMemoryMib: 70_000, processName: "python3 train.py" };
  const b = decideAfterExit(input({ exit: occupied, foreignHolder: holder }));
  assert.equal(b.kind, "blocked");
  assert.equal(b.reason, "gpu_occupied: pid 777 (python3 train.py) holds 70000 MiB on GPU 0; waiting for it to go (restart budget untouched)");
  assert.deepEqual(b.budget, EMPTY_BUDGET);
  const unnamed = decideAfterExit(input({ exit: occupied }));
  assert.equal(unnamed.kind, "backoff");
  assert.deepEqual(unnamed.budget, EMPTY_BUDGET);
});

test("a drill's exit is restarted whatever the policy says, with the first delay, and the budget untouched", () => {
  const drill = recordExit({ ...facts, code: null, signal: "SIGKILL", drill: { cause: { id: "d1", scenario: "backend-crash" }, active: true, requestedDuring: false } });
  assert.equal(drill.class, "drill");
  const d = decideAfterExit(input({ exit: drill, restart: "never", consecutiveFailures: 3 }));
  assert.equal(d.kind, "backoff");
  if (d.kind !== "backoff") return;
  assert.equal(d.startReason, "restart after drill d1 (backend-crash)");
  assert.deepEqual(d.budget, EMPTY_BUDGET);
  assert.equal(d.consecutiveFailures, 3);
});

test("the exit record: the drill owns what it caused or what llmsup asked during it, never an operator's stop", () => {
  const cause = { id: "d4", scenario: "backend-hang" };
  const byDrill = (over: Partial<ExitFactsIn>, drill: { active: boolean; requestedDuring: boolean }): ExitRecord => recordExit({ ...facts, code: null, signal: "SIGKILL", ...over, drill: { cause, ...drill } });
  const killed = byDrill({}, { active: true, requestedDuring: false });
  assert.equal(killed.reason, "caused by drill d4 (backend-hang): killed by SIGKILL (the drill's); restart budget untouched");
  assert.deepEqual(killed.drill, cause);
  const wedged = byDrill({ signal: "SIGTERM", requested: "wedged", requestDetail: "wedged: 2 consecutive 1-token completions failed" }, { active: false, requestedDuring: true });
  assert.equal(wedged.class, "drill");
  assert.match(wedged.reason, /^caused by drill d4 \(backend-hang\): liveness probes failed while \/health answered; restarted \(signal SIGTERM\): wedged: 2 consecutive/);
  assert.equal(byDrill({ signal: "SIGTERM", requested: "stop" }, { active: true, requestedDuring: true }).class, "stopped");
  assert.equal(byDrill({}, { active: false, requestedDuring: false }).class, "killed", "after the drill, a stranger's SIGKILL is a real failure");
  const timeout = recordExit({ ...facts, code: null, signal: "SIGTERM", requested: "startup_timeout", requestDetail: "not ready after 15m" });
  assert.equal(timeout.reason, "not ready within startup_timeout; stopped (signal SIGTERM): not ready after 15m");
  assert.deepEqual(timeout.lastLines, facts.lastLines);
});

test("short of GPU memory at start with another process holding it: blocked for every kind's way of saying so, the budget untouched", () => {
  const holder = { pid: 777, gpu: 0, usedMemoryMib: 70_000, processName: "python3 train.py" };
  const llamacpp = recordExit({ ...facts, lastLines: ["ggml_backend_cuda_buffer_type_alloc_buffer: allocating 4700.00 MiB on device 0: cudaMalloc failed: out of memory", "main: exiting due to model loading error"] });
  assert.equal(llamacpp.class, "oom");
  const ollama = recordExit({
    ...facts,
    code: 0,
    requested: "start_failed",
    requestDetail: 'warm-up of llama3.1:8b failed with 500: {"error":"llama runner process has terminated: cudaMalloc failed: out of memory"}',
  });
  assert.equal(ollama.class, "start_failed");
  const ollamaHost = recordExit({ ...facts, code: 0, requested: "start_failed", requestDetail: 'warm-up of llama3.1:70b failed with 500: {"error":"model requires more system memory (41.2 GiB) than is available (12.0 GiB)"}' });
  for (const [exit, label] of [
    [llamacpp, "oom"],
    [ollama, "start_failed"],
    [ollamaHost, "start_failed"],
  ] as const) {
    const d = decideAfterExit(input({ exit, duringStart: true, foreignHolder: holder, budget: { failures: [NOW - 1_000] }, consecutiveFailures: 1 }));
    assert.equal(d.kind, "blocked", exit.reason);
    assert.equal(d.reason, `${label}: pid 777 (python3 train.py) holds 70000 MiB on GPU 0; waiting for it to go (restart budget untouched)`);
    assert.deepEqual(d.budget, { failures: [NOW - 1_000] }, "not counted");
    assert.equal(d.consecutiveFailures, 1);
  }
});

test("a foreign holder does not block what memory did not stop: an OOM after serving, a readiness failure about something else, a crash", () => {
  const holder = { pid: 777, gpu: 0, usedMemoryMib: 70_000 };
  const runtimeOom = recordExit({ ...facts, code: null, signal: "SIGABRT", lastLines: ["CUDA error: out of memory", "ggml-cuda.cu:75: CUDA error"] });
  assert.equal(runtimeOom.class, "oom");
  const served = decideAfterExit(input({ exit: runtimeOom, duringStart: false, foreignHolder: holder }));
  assert.equal(served.kind, "backoff", "a process that had served ran out of memory by itself: counted, restarted");
  assert.equal(served.budget.failures.length, 1);
  const notInstalled = recordExit({ ...facts, code: 0, requested: "start_failed", requestDetail: "model m is not installed in Ollama (pull it first)" });
  assert.equal(decideAfterExit(input({ exit: notInstalled, duringStart: true, foreignHolder: holder })).kind, "backoff");
  assert.equal(decideAfterExit(input({ exit: crash, duringStart: true, foreignHolder: holder })).kind, "backoff");
});
