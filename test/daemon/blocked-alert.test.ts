/** A backend blocked by another process's hold on its GPU memory is mailed once, naming the holder; its ready is the all-clear. */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { AlertEvent } from "../../src/alerts/events.ts";
import { decide, initialPolicyState, type PlannedMail, type PolicyConfig } from "../../src/alerts/policy.ts";
import { renderMail } from "../../src/alerts/render.ts";
import { QUOTE_MAX } from "../../src/alerts/text.ts";
import type { BackendState, StateEvent } from "../../src/supervisor/states.ts";
import { gpuBoxBridge } from "../alerts/helpers.ts";

const T0 = Date.UTC(2025, 5, 1, 14, 2, 3);
const CFG: PolicyConfig = { coalesceWindowMs: 600_000, maxPerHour: 30 };
const HOLDER = { pid: 31337, gpu: 0, usedMemoryMib: 80_000, processName: "python3 someone-elses-job.py" };
const REASON = `oom: pid 31337 (python3 someone-elses-job.py) holds 80000 MiB on GPU 0; waiting for it to go (restart budget untouched)`;
const OOM_LINE = "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 4700.00 MiB on device 0: cudaMalloc failed: out of memory";

let at = T0;
function state(from: BackendState, to: BackendState, extra: Partial<StateEvent> = {}): StateEvent {
  at += 1_000;
  return { event: "backend.state", backend: "llama-gpu0", generation: 1, from, to, reason: `${from} → ${to}`, at, ...extra };
}

const blockedEntry = () =>
  state("exited", "blocked", {
    reason: REASON,
    holder: HOLDER,
    exit: { at, generation: 1, pid: 4242, code: 1, signal: null, class: "oom", reason: "GPU out of memory (exit status 1)", evidence: OOM_LINE, lastLines: [OOM_LINE, "main: exiting due to model loading error"] },
  });

/** The mails the policy sends for `events`, in order. */
function mails(events: readonly AlertEvent[]): PlannedMail[] {
  let s = initialPolicyState();
  const out: PlannedMail[] = [];
  for (const e of events) {
    const d = decide(s, e, e.at, CFG);
    s = d.state;
    out.push(...d.mails);
  }
  return out;
}

test("entering blocked raises backend_blocked once with the holder; staying blocked says nothing more; ready is the all-clear", () => {
  at = T0;
  const b = gpuBoxBridge();
  const entry = blockedEntry();
  const raised = b.translate(entry);
  assert.deepEqual(raised, [
    { kind: "backend_blocked", at: entry.at, backend: "llama-gpu0", reason: REASON, holder: HOLDER, exitClass: "oom", lastLines: [OOM_LINE, "main: exiting due to model loading error"], gpus: [0] },
  ]);
  assert.deepEqual(b.translate(state("blocked", "blocked", { reason: "GPU memory still held by pid 99 of an earlier generation" })), [], "not again while it waits");
  assert.deepEqual(b.translate(state("blocked", "starting", { reason: "GPU memory released by pid 31337" })), []);
  const ready = state("starting", "ready");
  assert.deepEqual(b.translate(ready), [{ kind: "backend_recovered", at: ready.at, backend: "llama-gpu0" }]);
  assert.deepEqual(b.translate(state("ready", "ready")), [], "the all-clear is said once");
});

test("the blocked mail says who holds what on which GPU and that llmsup starts the backend as soon as the memory is freed; the recovery pairs with it", () => {
  at = T0;
  const b = gpuBoxBridge();
  const events = [...b.translate(blockedEntry()), ...b.translate(state("blocked", "starting")), ...b.translate(state("starting", "ready"))];
  const [blocked, recovered] = mails(events);
  assert.equal(blocked?.severity, "warning");
  const r = renderMail(blocked!, { host: "gpu-box-1", timeZone: "UTC" });
  assert.equal(r.subject, "[llmsup] gpu-box-1: llama-gpu0 blocked: pid 31337 (python3 someone-elses-j…) holds 80000 MiB on GPU 0");
  const text = r.text.replace(/\n {2,8}/g, " ");
  assert.match(text, /What: {3}llama-gpu0 cannot start: pid 31337 \(python3 someone-elses-job\.py\), a process llmsup did not start, holds 80000 MiB on GPU 0, memory llama-gpu0 needs\. llmsup starts llama-gpu0 as soon as that memory is freed; its restart budget is untouched meanwhile\./);
  assert.match(text, /Where: {2}host gpu-box-1 backend llama-gpu0 GPU 0/);
  assert.match(text, /Why: {4}oom oom: pid 31337/);
  assert.match(text, /Action: If llama-gpu0 should have GPU 0, stop pid 31337 \(`nvidia-smi` lists what runs on the GPU\); llmsup then starts llama-gpu0 by itself\. `llmsup stop llama-gpu0` ends the wait\./);
  assert.match(r.text, /Last log lines \(llama-gpu0\):\n {2}ggml_backend_cuda_buffer_type_alloc_buffer: allocating 4700\.00 MiB/);
  for (const line of r.text.split("\n")) assert.ok(line.length <= QUOTE_MAX, line);
  const ok = renderMail(recovered!, { host: "gpu-box-1", timeZone: "UTC" });
  assert.equal(ok.subject, "[llmsup] gpu-box-1: llama-gpu0 ready again after 2s");
  assert.match(ok.text, /began: llama-gpu0 blocked: pid 31337/);
});

test("blocked by something that is not a GPU process (its port): the mail says what it waits for", () => {
  at = T0;
  const [e] = gpuBoxBridge().translate(state("stopped", "blocked", { reason: "port 8080 is held by pid 555 (nginx), not by llama-gpu0; waiting for it to go" }));
  assert.equal(e?.kind, "backend_blocked");
  const [m] = mails([e!]);
  const r = renderMail(m!, { host: "gpu-box-1", timeZone: "UTC" });
  assert.equal(r.subject, "[llmsup] gpu-box-1: llama-gpu0 blocked: cannot start");
  assert.match(r.text.replace(/\n {2,8}/g, " "), /What: {3}llama-gpu0 cannot start: port 8080 is held by pid 555 \(nginx\), not by llama-gpu0; waiting for it to go\. llmsup starts it as soon as that is released/);
});
