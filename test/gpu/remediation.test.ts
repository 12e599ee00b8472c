/** The remediation ladder's decision: a pure function of the GPU's faults, the time, the configuration and reset outcomes. */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  REMEDIATION_TRANSITIONS,
  holdsBackends,
  initialRemediation,
  ladderRecovery,
  nextRemediation,
  remediationConfig,
  resetOutcome,
  stepRemediation,
  type GpuRemediation,
  type RemediationConfig,
  type RemediationInput,
  type RemediationPhase,
  type RemediationStep,
} from "../../src/gpu/remediation.ts";
import type { GpuFault } from "../../src/gpu/types.ts";

const T0 = Date.UTC(2026, 11, 2, 3, 0, 0);
const DELAY = 120_000;
const WINDOW = 3_600_000;
const VERIFY = 90_000;
const ON: RemediationConfig = { autoReset: true, delayMs: DELAY, windowMs: WINDOW, verifyMs: VERIFY };
const OFF: RemediationConfig = { ...ON, autoReset: false };

function fault(kind: string, extra: Partial<GpuFault> = {}): GpuFault {
  return { id: `${kind}@gpu0`, kind, gpu: 0, severity: "down", reason: `GPU 0: ${kind}`, action: "act", since: T0, lastSeen: T0, count: 1, ...extra };
}

const resetAsked = fault("recovery_action", { value: "Reset", reason: 'GPU 0: the driver asks for recovery action "Reset"' });
const requiresReset = fault("requires_reset", { reason: "GPU 0: nvidia-smi reads [GPU requires reset]" });
const rebootAsked = fault("recovery_action_reboot", { recovery: "reboot", value: "Reboot", reason: 'GPU 0: the driver asks for recovery action "Reboot"' });
const thermal = fault("thermal_slowdown", { severity: "degraded", reason: "GPU 0: clocks slowed down for heat" });

/** Feeds inputs in order, each at its time; every step is kept. */
class Ladder {
  state: GpuRemediation = initialRemediation(0, T0);
  readonly steps: RemediationStep[] = [];
  private cfg: RemediationConfig;
  constructor(cfg: RemediationConfig = ON) {
    this.cfg = cfg;
  }
  feed(at: number, input: RemediationInput, cfg: RemediationConfig = this.cfg): RemediationStep {
    this.cfg = cfg;
    const step = stepRemediation(this.state, input, at, cfg);
    this.state = step.state;
    this.steps.push(step);
    return step;
  }
  get phase(): RemediationPhase {
    return this.state.phase;
  }
}

const types = (s: RemediationStep) => s.actions.map((a) => a.type);

test("a fault asking for a reset, with auto_reset on, waits remediation_delay in quiet, then stops the backends and runs nvidia-smi -r", () => {
  const l = new Ladder();
  const w = l.feed(T0, { type: "raised", fault: resetAsked });
  assert.deepEqual([w.transition?.from, w.transition?.to, w.transition?.tell], ["idle", "waiting", undefined]);
  assert.deepEqual(types(w), [], "nothing is stopped while waiting");
  assert.equal(l.state.due, T0 + DELAY);
  assert.match(l.state.why, /the driver asks for recovery action "Reset": asks for a GPU reset; resetting it after 2m without a new fault/);
  assert.deepEqual(nextRemediation(l.state), { what: "reset GPU 0: stop the backends on it, nvidia-smi -r -i 0, start them again (a new fault on it restarts the wait)", at: T0 + DELAY });

  const early = l.feed(T0 + DELAY - 1, { type: "tick" });
  assert.equal(early.transition, undefined);
  assert.deepEqual(types(early), []);

  const r = l.feed(T0 + DELAY, { type: "tick" });
  assert.deepEqual([r.transition?.from, r.transition?.to, r.transition?.tell], ["waiting", "resetting", "reset_started"]);
  assert.deepEqual(r.actions, [{ type: "hold", reason: "llmsup resets GPU 0" }, { type: "reset" }], "the backends are stopped before the reset");
  assert.deepEqual(l.state.resets, [T0 + DELAY]);
});

test("a new fault on the GPU during the wait restarts it: another reset fault, any other fault, or a repeated XID", () => {
  const l = new Ladder();
  l.feed(T0, { type: "raised", fault: resetAsked });
  l.feed(T0 + 60_000, { type: "raised", fault: requiresReset });
  assert.equal(l.state.due, T0 + 60_000 + DELAY);
  assert.equal(l.state.evidence.length, 2);
  l.feed(T0 + 100_000, { type: "raised", fault: thermal });
  assert.equal(l.state.due, T0 + 100_000 + DELAY);
  assert.equal(l.state.evidence.length, 2, "a fault the ladder does not cure is no evidence, but it is not quiet either");
  l.feed(T0 + 150_000, { type: "repeat", what: "XID 48" });
  assert.equal(l.state.due, T0 + 150_000 + DELAY);
  assert.equal(l.feed(T0 + 150_000 + DELAY - 1, { type: "tick" }).transition, undefined, "still not quiet long enough");
  assert.equal(l.feed(T0 + 150_000 + DELAY, { type: "tick" }).transition?.to, "resetting");
  assert.equal(l.steps.filter((s) => s.transition).length, 2, "restarting the wait is no change of phase");
});

test("a successful reset tells the evaluator at once, then starts the backends again when the faults have cleared", () => {
  const l = new Ladder();
  l.feed(T0, { type: "raised", fault: resetAsked });
  l.feed(T0 + DELAY, { type: "tick" });
  const done = l.feed(T0 + DELAY + 5_000, { type: "reset_result", outcome: "done", detail: "GPU 00000000:1B:00.0 was successfully reset. All done." });
  assert.deepEqual([done.transition?.from, done.transition?.to, done.transition?.tell], ["resetting", "verifying", undefined]);
  assert.deepEqual(done.actions, [{ type: "mark_reset", reason: "nvidia-smi -r -i 0 succeeded" }]);
  assert.equal(l.state.due, T0 + DELAY + 5_000 + VERIFY);
  assert.equal(l.state.resetDetail, "GPU 00000000:1B:00.0 was successfully reset. All done.");
  assert.ok(holdsBackends(l.phase), "the backends stay stopped while the reset is verified");

  const back = l.feed(T0 + DELAY + 8_000, { type: "cleared", fault: resetAsked });
  assert.deepEqual([back.transition?.from, back.transition?.to, back.transition?.tell], ["verifying", "recovered", "reset_done"]);
  assert.deepEqual(back.actions, [{ type: "release", reason: "GPU 0 was reset by llmsup and its faults cleared" }]);
  assert.equal(nextRemediation(l.state), null);
});

test("a reset that succeeds when the faults are already gone starts the backends again at once", () => {
  const l = new Ladder();
  l.feed(T0, { type: "raised", fault: resetAsked });
  l.feed(T0 + DELAY, { type: "tick" });
  l.feed(T0 + DELAY + 1, { type: "cleared", fault: resetAsked });
  assert.equal(l.phase, "resetting", "a reset under way finishes");
  const done = l.feed(T0 + DELAY + 2, { type: "reset_result", outcome: "done", detail: "All done." });
  assert.deepEqual([done.transition?.to, done.transition?.tell], ["recovered", "reset_done"]);
  assert.deepEqual(types(done), ["mark_reset", "release"]);
});

test("a GPU is reset at most once per reset_window: a second need inside it is reboot required; after the window it is reset again", () => {
  const l = new Ladder();
  l.feed(T0, { type: "raised", fault: resetAsked });
  l.feed(T0 + DELAY, { type: "tick" });
  l.feed(T0 + DELAY + 1_000, { type: "reset_result", outcome: "done", detail: "ok" });
  l.feed(T0 + DELAY + 2_000, { type: "cleared", fault: resetAsked });
  assert.equal(l.phase, "recovered");

  const again = l.feed(T0 + 30 * 60_000, { type: "raised", fault: requiresReset });
  assert.deepEqual([again.transition?.from, again.transition?.to, again.transition?.tell], ["recovered", "reboot_required", "reboot_required"]);
  assert.equal(l.state.cause, "reset_again");
  assert.deepEqual(again.actions, [{ type: "hold", reason: "GPU 0 needs a reboot" }]);
  assert.match(l.state.why, /a second reset within reset_window \(1h\) of the one at 2026-12-02T03:02:00\.000Z; a reboot is required/);
  // Held until the fault clears; nothing in between restarts the backends.
  for (const input of [{ type: "tick" }, { type: "repeat", what: "XID 79" }, { type: "raised", fault: resetAsked }] as const) {
    const s = l.feed(T0 + 40 * 60_000, input);
    assert.deepEqual(types(s), [], `${input.type} changes nothing while a reboot is required`);
  }
  l.feed(T0 + 41 * 60_000, { type: "cleared", fault: resetAsked });
  const clear = l.feed(T0 + 42 * 60_000, { type: "cleared", fault: requiresReset });
  assert.deepEqual([clear.transition?.to, clear.transition?.tell], ["recovered", "recovered"]);
  assert.deepEqual(clear.actions, [{ type: "release", reason: "GPU 0 no longer needs a reboot" }]);

  // The window of the first reset has passed: a new need is reset again.
  const later = l.feed(T0 + DELAY + WINDOW, { type: "raised", fault: resetAsked });
  assert.equal(later.transition?.to, "waiting");
  assert.deepEqual(l.state.resets, [], "the old reset fell out of the window");
});

test("auto_reset off: the operator is told once that the GPU needs a reset; nothing is reset, stopped or restarted; the faults clearing is the all-clear", () => {
  const l = new Ladder(OFF);
  const told = l.feed(T0, { type: "raised", fault: requiresReset });
  assert.deepEqual([told.transition?.to, told.transition?.tell], ["reset_needed", "reset_needed"]);
  assert.deepEqual(types(told), []);
  assert.match(l.state.why, /auto_reset is off: the GPU needs a reset by an operator \(stop its apps, then nvidia-smi -r -i 0\)/);
  const more = [l.feed(T0 + 1_000, { type: "raised", fault: resetAsked }), l.feed(T0 + DELAY * 5, { type: "tick" }), l.feed(T0 + DELAY * 6, { type: "repeat", what: "XID 48" })];
  assert.ok(more.every((s) => s.transition === undefined && s.actions.length === 0), "told once, no loop of any kind");
  l.feed(T0 + DELAY * 7, { type: "cleared", fault: requiresReset });
  const clear = l.feed(T0 + DELAY * 8, { type: "cleared", fault: resetAsked });
  assert.deepEqual([clear.transition?.to, clear.transition?.tell], ["recovered", "recovered"]);
  assert.deepEqual(types(clear), [], "nothing was held, nothing is released");
});

test("a fault only a reboot cures is reboot required at once: the backends are stopped and held, and no input restarts them until the fault clears", () => {
  for (const cfg of [ON, OFF]) {
    const l = new Ladder(cfg);
    const r = l.feed(T0, { type: "raised", fault: rebootAsked });
    assert.deepEqual([r.transition?.to, r.transition?.tell, l.state.cause], ["reboot_required", "reboot_required", "reboot_fault"]);
    assert.deepEqual(types(r), ["hold"]);
    assert.match(l.state.why, /the driver asks for recovery action "Reboot": only a reboot recovers this GPU/);
    const inputs: RemediationInput[] = [{ type: "tick" }, { type: "raised", fault: resetAsked }, { type: "repeat", what: "XID 79" }, { type: "reset_result", outcome: "done", detail: "x" }, { type: "cleared", fault: resetAsked }];
    for (const [i, input] of inputs.entries()) assert.deepEqual(types(l.feed(T0 + (i + 1) * DELAY, input)), [], `${input.type}: still held`);
    assert.equal(l.phase, "reboot_required");
    assert.deepEqual(nextRemediation(l.state), { what: "keep the backends on GPU 0 stopped until the faults clear (reboot the machine)", at: null });
    const clear = l.feed(T0 + 10 * DELAY, { type: "cleared", fault: rebootAsked });
    assert.deepEqual(types(clear), ["release"]);
  }
});

test("a reset refused because processes hold the GPU is reboot required, quoting nvidia-smi; the backends stay held", () => {
  const l = new Ladder();
  l.feed(T0, { type: "raised", fault: resetAsked });
  l.feed(T0 + DELAY, { type: "tick" });
  const words = "GPU 00000000:1B:00.0 is currently in use by another process. 1 device is currently being used by one or more other processes";
  const r = l.feed(T0 + DELAY + 1_000, { type: "reset_result", outcome: "refused", detail: words });
  assert.deepEqual([r.transition?.from, r.transition?.to, r.transition?.tell, l.state.cause], ["resetting", "reboot_required", "reboot_required", "reset_refused"]);
  assert.deepEqual(types(r), [], "already stopped: no second stop, and no start");
  assert.ok(l.state.why.includes(words));
  assert.match(l.state.why, /was refused \(processes still hold the GPU\)/);
  assert.equal(l.state.resetDetail, words);
});

test("a reset that fails or times out is reboot required the same way", () => {
  for (const outcome of ["failed", "timed_out"] as const) {
    const l = new Ladder();
    l.feed(T0, { type: "raised", fault: resetAsked });
    l.feed(T0 + DELAY, { type: "tick" });
    const r = l.feed(T0 + DELAY + 1_000, { type: "reset_result", outcome, detail: "Unable to reset GPU" });
    assert.deepEqual([r.transition?.to, l.state.cause, types(r).length], ["reboot_required", "reset_failed", 0]);
    assert.match(l.state.why, outcome === "failed" ? /nvidia-smi -r -i 0 failed: Unable to reset GPU/ : /nvidia-smi -r -i 0 did not finish in time/);
  }
});

test("a reset that does not clear the faults within the verification time is reboot required", () => {
  const l = new Ladder();
  l.feed(T0, { type: "raised", fault: resetAsked });
  l.feed(T0 + DELAY, { type: "tick" });
  l.feed(T0 + DELAY + 1_000, { type: "reset_result", outcome: "done", detail: "ok" });
  assert.equal(l.feed(T0 + DELAY + 1_000 + VERIFY - 1, { type: "tick" }).transition, undefined);
  const r = l.feed(T0 + DELAY + 1_000 + VERIFY, { type: "tick" });
  assert.deepEqual([r.transition?.from, r.transition?.to, l.state.cause, types(r).length], ["verifying", "reboot_required", "reset_ineffective", 0]);
  assert.match(l.state.why, /the reset did not clear GPU 0: the driver asks for recovery action "Reset" within 1m30s; a reboot is required/);
});

test("faults that clear by themselves during the wait call the reset off, without telling anyone", () => {
  const l = new Ladder();
  l.feed(T0, { type: "raised", fault: resetAsked });
  const off = l.feed(T0 + 10_000, { type: "cleared", fault: resetAsked });
  assert.deepEqual([off.transition?.to, off.transition?.tell, types(off).length], ["recovered", undefined, 0]);
  assert.deepEqual(types(l.feed(T0 + DELAY, { type: "tick" })), [], "no reset comes due");
  assert.deepEqual(l.state.resets, []);
});

test("a reload that turns auto_reset off during the wait hands the GPU to the operator; turning it on again schedules the reset", () => {
  const l = new Ladder();
  l.feed(T0, { type: "raised", fault: resetAsked });
  const off = l.feed(T0 + 1_000, { type: "tick" }, OFF);
  assert.deepEqual([off.transition?.to, off.transition?.tell], ["reset_needed", "reset_needed"]);
  const on = l.feed(T0 + 2_000, { type: "tick" }, ON);
  assert.deepEqual([on.transition?.from, on.transition?.to], ["reset_needed", "waiting"]);
  assert.equal(l.state.due, T0 + 2_000 + DELAY);
});

test("a reboot fault outranks a reset: during the wait it holds at once; during the reset the outcome is awaited, then reboot required", () => {
  const waiting = new Ladder();
  waiting.feed(T0, { type: "raised", fault: resetAsked });
  const r = waiting.feed(T0 + 1_000, { type: "raised", fault: rebootAsked });
  assert.deepEqual([r.transition?.to, types(r)], ["reboot_required", ["hold"]]);

  const resetting = new Ladder();
  resetting.feed(T0, { type: "raised", fault: resetAsked });
  resetting.feed(T0 + DELAY, { type: "tick" });
  assert.equal(resetting.feed(T0 + DELAY + 1, { type: "raised", fault: rebootAsked }).transition, undefined);
  const done = resetting.feed(T0 + DELAY + 2, { type: "reset_result", outcome: "done", detail: "ok" });
  assert.deepEqual([done.transition?.to, resetting.state.cause, types(done)], ["reboot_required", "reboot_fault", ["mark_reset"]], "the evaluator still hears of the reset; the backends stay held");

  const verifying = new Ladder();
  verifying.feed(T0, { type: "raised", fault: resetAsked });
  verifying.feed(T0 + DELAY, { type: "tick" });
  verifying.feed(T0 + DELAY + 1, { type: "reset_result", outcome: "done", detail: "ok" });
  const v = verifying.feed(T0 + DELAY + 2, { type: "raised", fault: rebootAsked });
  assert.deepEqual([v.transition?.from, v.transition?.to, types(v)], ["verifying", "reboot_required", []]);
});

test("faults the ladder does not cure start nothing: app errors (restart_app), conditions that pass, faults on no recovery", () => {
  const l = new Ladder();
  const appXid = fault("xid_app_error", { xid: 13, severity: "degraded" });
  const noneFault = fault("ecc_uncorrected", { recovery: "none" });
  for (const f of [appXid, thermal, noneFault, fault("recovery_action", { value: "Drain P2P", severity: "degraded" })]) {
    const s = l.feed(T0, { type: "raised", fault: f });
    assert.deepEqual([s.transition, types(s)], [undefined, []], f.kind);
  }
  assert.equal(l.phase, "idle");
});

test("what cures a fault: its own recovery first, else the driver's recovery action, the reset flag, a lost GPU, or the XID's catalog class", () => {
  assert.equal(ladderRecovery(fault("recovery_action", { value: "Reset", recovery: "reboot" })), "reboot");
  assert.equal(ladderRecovery(fault("xid_ecc_uncontained", { xid: 48, recovery: "restart_app" })), undefined);
  assert.equal(ladderRecovery(fault("recovery_action", { value: "Reset" })), "reset_gpu");
  assert.equal(ladderRecovery(fault("recovery_action", { value: "Drain and Reset" })), "reset_gpu");
  assert.equal(ladderRecovery(fault("recovery_action", { value: "Reboot" })), "reboot");
  assert.equal(ladderRecovery(fault("recovery_action", { value: "Drain P2P" })), undefined);
  assert.equal(ladderRecovery(fault("requires_reset")), "reset_gpu");
  assert.equal(ladderRecovery(fault("row_remap_pending")), "reset_gpu");
  assert.equal(ladderRecovery(fault("gpu_lost")), "reboot");
  assert.equal(ladderRecovery(fault("xid_fallen_off_bus", { xid: 79 })), "reboot");
  assert.equal(ladderRecovery(fault("xid_ecc_uncontained", { xid: 48 })), "reset_gpu");
  assert.equal(ladderRecovery(fault("xid_driver_timeout", { xid: 119 })), "reset_gpu");
  assert.equal(ladderRecovery(fault("xid_contained_memory", { xid: 94 })), undefined);
  assert.equal(ladderRecovery(fault("thermal_slowdown")), undefined);
});

test("how nvidia-smi -r ended: exit 0 done, 'in use' refused, any other failure failed, a missed deadline timed out", () => {
  assert.deepEqual(resetOutcome({ exitCode: 0, output: "GPU 00000000:1B:00.0 was successfully reset.\nAll done.\n" }), { outcome: "done", detail: "GPU 00000000:1B:00.0 was successfully reset. All done." });
  assert.equal(resetOutcome({ exitCode: 255, output: "GPU 00000000:1B:00.0 is currently in use by another process.\n\n1 device is currently being used by one or more other processes\n" }).outcome, "refused");
  assert.deepEqual(resetOutcome({ exitCode: 3, output: "Resetting GPU 00000000:1B:00.0 is not supported.\n" }), { outcome: "failed", detail: "Resetting GPU 00000000:1B:00.0 is not supported. (exit status 3)" });
  assert.deepEqual(resetOutcome({ exitCode: 4, output: "" }), { outcome: "failed", detail: "exit status 4, no output (exit status 4)" });
  assert.deepEqual(resetOutcome({ error: { code: "LLMSUP_E_GPU_UNRESPONSIVE", message: "nvidia-smi did not answer within 1m" } }), { outcome: "timed_out", detail: "nvidia-smi did not answer within 1m" });
  assert.equal(resetOutcome({ error: { code: "LLMSUP_E_GPU_SMI_MISSING", message: "cannot run nvidia-smi" } }).outcome, "failed");
});

test("the settings come from [gpu]; verification outlasts the samples (and slow polls) that see the faults clear", () => {
  const c = remediationConfig({ auto_reset: true, remediation_delay: 120_000, reset_window: 3_600_000, interval: 5_000, deadline: 15_000, clear_samples: 3 });
  assert.deepEqual(c, { autoReset: true, delayMs: 120_000, windowMs: 3_600_000, verifyMs: 120_000 });
  assert.equal(remediationConfig({ auto_reset: false, remediation_delay: 0, reset_window: 1, interval: 60_000, deadline: 15_000, clear_samples: 3 }).verifyMs, 15_000 + 5 * 60_000);
});

/**
 * Every sequence of inputs (up to a depth) from a fresh GPU, with auto_reset
 * on and off: the ladder never leaves its table, reaches every row of it,
 * and stops or starts backends exactly when it enters or leaves a phase that
 * holds them — never starting them while a reboot fault stands, never
 * resetting twice in the window.
 */
test("exploring every input sequence: only the table's changes, all of them reached, holds and releases exactly at its edges", () => {
  const alphabet: { input: RemediationInput; dt: number }[] = [
    { input: { type: "raised", fault: resetAsked }, dt: 1_000 },
    { input: { type: "raised", fault: rebootAsked }, dt: 1_000 },
    { input: { type: "raised", fault: thermal }, dt: 1_000 },
    { input: { type: "cleared", fault: resetAsked }, dt: 1_000 },
    { input: { type: "cleared", fault: rebootAsked }, dt: 1_000 },
    { input: { type: "repeat", what: "XID 48" }, dt: 1_000 },
    { input: { type: "tick" }, dt: Math.max(DELAY, VERIFY) },
    ...(["done", "refused", "failed", "timed_out"] as const).map((outcome) => ({ input: { type: "reset_result", outcome, detail: outcome } as RemediationInput, dt: 1_000 })),
  ];
  const seen = new Set<string>();
  const key = (s: GpuRemediation, cfg: RemediationConfig) => `${cfg.autoReset}|${s.phase}|${s.evidence.map((e) => e.id).sort().join(",")}|${s.resets.length}|${s.cause ?? ""}`;
  const visited = new Set<string>();
  let frontier: { s: GpuRemediation; now: number }[] = [{ s: initialRemediation(0, T0), now: T0 }];
  let explored = 0;
  for (let depth = 0; depth < 9; depth++) {
    const next: { s: GpuRemediation; now: number }[] = [];
    for (const { s, now } of frontier) {
      for (const cfg of [ON, OFF]) {
        for (const { input, dt } of alphabet) {
          const at = now + dt;
          const step = stepRemediation(s, input, at, cfg);
          explored++;
          const t = step.transition;
          const from = s.phase;
          const to = step.state.phase;
          if (t) {
            assert.ok(REMEDIATION_TRANSITIONS[from].includes(to), `${from} → ${to}`);
            seen.add(`${from}>${to}`);
          } else assert.equal(to, from, "no phase change without a transition");
          const acts = step.actions.map((a) => a.type);
          const holds = acts.filter((a) => a === "hold").length;
          const releases = acts.filter((a) => a === "release").length;
          assert.equal(holds, !holdsBackends(from) && holdsBackends(to) ? 1 : 0, `hold on ${from} → ${to}`);
          assert.equal(releases, holdsBackends(from) && !holdsBackends(to) ? 1 : 0, `release on ${from} → ${to}`);
          if (releases) assert.ok(!step.state.evidence.some((e) => e.recovery === "reboot"), "never started while a reboot fault stands");
          assert.equal(acts.includes("reset"), to === "resetting" && from !== "resetting", "a reset only on entering resetting");
          assert.ok(step.state.resets.length <= 1, "at most one reset in the window");
          const k = key(step.state, cfg);
          if (!visited.has(k)) {
            visited.add(k);
            next.push({ s: step.state, now: at });
          }
        }
      }
    }
    frontier = next;
  }
  const table = new Set(Object.entries(REMEDIATION_TRANSITIONS).flatMap(([from, tos]) => tos.map((to) => `${from}>${to}`)));
  assert.deepEqual([...seen].sort(), [...table].sort(), `every row of the table is reached (${explored} steps explored)`);
});
