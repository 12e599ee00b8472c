/**
 * The remediation ladder in a running daemon, with a simulated GPU box and
 * backends: a GPU asking for a reset is reset by llmsup (backends stopped,
 * `nvidia-smi -r`, backends started again); a GPU asking for a reboot has its
 * backend stopped and held — not restarted in a loop — until it no longer does.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { readFileSync, writeFileSync } from "node:fs";
import type { TestContext } from "node:test";
import { writeWrapper } from "../../src/sim/gpu/cli.ts";
import { defaultGpuState, readGpuState, updateGpuState, writeGpuState } from "../../src/sim/gpu/state.ts";
import { startDaemon, status, waitStatus, writeDaemonConfig, type StatusJson } from "../helpers/daemon.ts";
import { tempDir } from "../helpers/tmp.ts";
import { gpuBoxBridge, SMTP_PASSWORD, SMTP_USER, startSmtp, type TestSmtp } from "../alerts/helpers.ts";
import type { AlertEvent } from "../../src/alerts/events.ts";
import { decide, initialPolicyState, type PlannedMail } from "../../src/alerts/policy.ts";
import { renderMail } from "../../src/alerts/render.ts";
import { QUOTE_MAX } from "../../src/alerts/text.ts";
import type { RemediationEvent } from "../../src/daemon/remediation-desk.ts";
import { historyOfRemediation } from "../../src/daemon/history.ts";
import { LlmsupError } from "../../src/errors/error.ts";
import { superviseOne } from "../helpers/supervise.ts";

interface Remediation {
  gpu: number;
  state: string;
  why: string;
  cause: string | null;
  next: string | null;
  faults: { kind: string; recovery: string }[];
  resets_in_window: string[];
  backends: string[];
  backends_held: boolean;
}
type Backend = StatusJson["backends"][number] & { held: string | null };
type Status = StatusJson & { remediation: Remediation[] | null; events: { kind: string; summary: string; gpu?: number }[] };

const primary = (s: StatusJson) => s.backends.find((b) => b.name === "primary")! as Backend;
const ladder = (s: StatusJson) => (s as Status).remediation?.find((r) => r.gpu === 0);

/**
 * A box of two simulated GPUs; "primary" runs on GPU 0 and lists its memory
 * there (so nvidia-smi -r refuses while it runs), "fallback" runs on none.
 */
async function gpuBox(t: TestContext, gpu: string, smtp?: TestSmtp) {
  const state = path.join(tempDir(t), "gpus.json");
  await writeGpuState(state, defaultGpuState(2));
  const alerts = smtp
    ? `[alerts]\nenabled = true\nfrom = "llmsup@box.example.com"\nto = ["oncall@example.com"]\ncritical_to = ["boss@example.com"]\n[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "TEST_SMTP_PASSWORD"\ntimeout = "3s"\n`
    : "";
  const files = await writeDaemonConfig(
    t,
    [
      { name: "primary", kind: "llamacpp", extra: "gpus = [0]", args: ["--gpu-state", state, "--gpus", "0"] },
      { name: "fallback", kind: "llamacpp" },
    ],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`,
    alerts,
  );
  const smi = await writeWrapper(state, path.join(files.dir, "nvidia-smi"));
  writeFileSync(
    files.config,
    readFileSync(files.config, "utf8").replace("[gpu]\nenabled = false\n", `[gpu]\nnvidia_smi = "${smi}"\ninterval = "300ms"\ndeadline = "3s"\nkernel_log = "off"\nsustain_samples = 1\nclear_samples = 1\n${gpu}\n`),
  );
  const d = await startDaemon(t, files, smtp ? { TEST_SMTP_PASSWORD: SMTP_PASSWORD } : {});
  const ok = await waitStatus(d, "both ready on tier 0", (s, code) => code === 0 && s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0, 20_000);
  const pid = primary(ok.json).pid!;
  const held = (await readGpuState(state)).processes.filter((p) => p.pid === pid);
  assert.equal(held.length, 1, "the primary lists its memory on GPU 0");
  return { d, state, pid };
}

test("a GPU whose driver asks for a Reset, with auto_reset on: its backend is stopped, nvidia-smi -r resets it, the backend starts again and serves, and the fault clears", async (t) => {
  const { d, state, pid } = await gpuBox(t, 'auto_reset = true\nremediation_delay = "1s"\nreset_window = "1h"');
  await updateGpuState(state, (s) => {
    s.gpus[0]!.recovery_action = "Reset";
    // Only a reset zeroes the volatile counters: the mark that nvidia-smi -r ran.
    s.gpus[0]!.ecc_corrected_volatile = 7;
  });
  const waiting = await waitStatus(d, "the ladder waiting out remediation_delay", (s) => ladder(s)?.state === "waiting");
  assert.match(ladder(waiting.json)!.why, /recovery action "Reset".*asks for a GPU reset; resetting it after 1s without a new fault/);
  assert.deepEqual(ladder(waiting.json)!.faults.map((f) => [f.kind, f.recovery]), [["recovery_action", "reset_gpu"]]);
  assert.equal(primary(waiting.json).state, "ready", "nothing is stopped during the wait");

  const back = await waitStatus(
    d,
    "GPU 0 reset and the primary ready again on tier 0",
    (s) => ladder(s)?.state === "recovered" && primary(s).state === "ready" && primary(s).pid !== pid && s.router.routes[0]!.serving_tier === 0,
    30_000,
  );
  const r = ladder(back.json)!;
  assert.equal(r.resets_in_window.length, 1);
  assert.equal(r.backends_held, false);
  assert.deepEqual(r.backends, ["primary"]);
  assert.equal(primary(back.json).held, null);
  assert.equal(primary(back.json).generation, 2);

  const gpu0 = (await readGpuState(state)).gpus[0]!;
  assert.deepEqual([gpu0.recovery_action, gpu0.ecc_corrected_volatile], ["None", 0], "the simulated GPU was reset");

  // The ladder's steps, in order, around the backend's restart; and the fault came and went.
  const events = (back.json as Status).events;
  const steps = events.filter((e) => e.kind === "gpu_remediation").map((e) => /^GPU 0: (\S+ → \S+): /.exec(e.summary)?.[1]);
  // The sampler may see the reset GPU before nvidia-smi -r has exited: then nothing is left to verify.
  assert.deepEqual(steps.slice(0, 2), ["idle → waiting", "waiting → resetting"]);
  assert.ok(["resetting → verifying,verifying → recovered", "resetting → recovered"].includes(steps.slice(2).join(",")), steps.join(", "));
  const at = (pred: (e: { kind: string; summary: string }) => boolean) => events.findIndex(pred);
  assert.ok(at((e) => /waiting → resetting/.test(e.summary)) < at((e) => e.kind === "restart" && /primary/.test(e.summary)), "reset before the restart");
  assert.ok(events.some((e) => e.kind === "gpu_fault" && /recovery action "Reset"/.test(e.summary)));
  assert.ok(events.some((e) => e.kind === "gpu_clear" && /recovery action "Reset"/.test(e.summary)));
  const human = await d.cli("status");
  assert.match(human.stdout, /Remediation {2}auto_reset on\n {2}GPU 0 {2}recovered for [^:]+: (the reset cleared the faults|nvidia-smi -r -i 0 succeeded and no fault remains); the backends on GPU 0 start again\n/);
  const logged = await d.cli("events", "--kind", "gpu_remediation", "--json");
  assert.equal(logged.code, 0, logged.stderr);
  assert.match(logged.stdout, /waiting → resetting/);
});

test("a GPU whose driver asks for a Reboot: its backend is stopped and held, not restarted in a loop nor by hand, one critical mail says so with the evidence; it starts again once the GPU no longer asks", async (t) => {
  const smtp = await startSmtp(t);
  const { d, state, pid } = await gpuBox(t, "auto_reset = true", smtp);
  await smtp.waitFor(1, 10_000);
  await updateGpuState(state, (s) => {
    s.gpus[0]!.recovery_action = "Reboot";
  });
  const held = await waitStatus(d, "reboot required, the primary held stopped, the route on the fallback", (s) => ladder(s)?.state === "reboot_required" && primary(s).state === "stopped" && s.router.routes[0]!.serving_tier === 1, 20_000);
  const r = ladder(held.json)!;
  assert.equal(r.cause, "reboot_fault");
  assert.equal(r.backends_held, true);
  assert.match(primary(held.json).held!, /GPU 0 needs a reboot/);
  assert.equal((await readGpuState(state)).processes.some((p) => p.pid === pid), false, "the stopped primary let go of the GPU");

  // Samples keep coming (every 300 ms) and keep saying "Reboot": the backend stays down, at the same generation.
  const generation = primary(held.json).generation;
  for (let i = 0; i < 8; i++) {
    await new Promise((res) => setTimeout(res, 250));
    const now = await status(d);
    assert.equal(primary(now.json).state, "stopped", "never restarted while the reboot is required");
    assert.equal(primary(now.json).generation, generation);
  }
  const start = await d.cli("start", "primary");
  assert.equal(start.code, 69, "held is EX_UNAVAILABLE (try later), not a usage error");
  assert.match(start.stderr, /LLMSUP_E_BACKEND_HELD: backend "primary" is held stopped: GPU 0 needs a reboot/);
  assert.match(start.stderr, /starts it again by itself once the GPU's faults clear/, "the registry says what to do");
  assert.equal(primary((await status(d)).json).state, "stopped");

  const mails = await smtp.waitFor(2, 15_000);
  const reboot = mails.filter((m) => /REBOOT REQUIRED/.test(m.subject));
  assert.equal(reboot.length, 1, mails.map((m) => m.subject).join("\n"));
  assert.match(reboot[0]!.subject, /GPU 0: REBOOT REQUIRED$/);
  assert.deepEqual([...reboot[0]!.to].sort(), ["boss@example.com", "oncall@example.com"], "critical: critical_to hears of it too");
  assert.match(reboot[0]!.text, /Evidence:\n {2}GPU 0: the driver asks for recovery action "Reboot"; cure: a reboot\n {2}gpu_recovery_action now reads: Reboot/);
  assert.match(reboot[0]!.text, /Last readings:\n {2}sampled \S+: NVIDIA H100 80GB HBM3\s+00000000:1B:00\.0\n(.*\n)* {2}gpu_recovery_action: Reboot\n/);
  assert.match(reboot[0]!.text, /backends \(primary\) are stopped and held/);

  await updateGpuState(state, (s) => {
    s.gpus[0]!.recovery_action = "None";
  });
  const back = await waitStatus(d, "the primary started again and serving", (s) => ladder(s)?.state === "recovered" && primary(s).state === "ready" && s.router.routes[0]!.serving_tier === 0, 20_000);
  assert.equal(primary(back.json).held, null);
  assert.equal(primary(back.json).generation, generation! + 1);
  const all = await smtp.waitFor(3, 15_000);
  assert.ok(all.some((m) => /GPU 0: recovered/.test(m.subject)), all.map((m) => m.subject).join("\n"));
});

// ---------------------------------------------------------------- what each step tells (pure)

const T0 = Date.UTC(2026, 11, 2, 3, 0, 0);
const EVIDENCE = [{ id: "recovery_action@gpu0", kind: "recovery_action", reason: 'GPU 0: the driver asks for recovery action "Reset"', recovery: "reset_gpu" as const, since: T0, value: "Reset" }];

function step(from: RemediationEvent["from"], to: RemediationEvent["to"], at: number, extra: Partial<RemediationEvent> = {}): RemediationEvent {
  return { event: "gpu.remediation", at, gpu: 0, busId: "00000000:1B:00.0", from, to, why: `${from} to ${to}`, next: null, nextAt: null, evidence: EVIDENCE, backends: ["llama-gpu0"], readings: ["temperature 41 °C"], ...extra };
}

function mails(events: readonly AlertEvent[]): PlannedMail[] {
  let st = initialPolicyState();
  const out: PlannedMail[] = [];
  for (const e of events) {
    const d = decide(st, e, e.at, { coalesceWindowMs: 600_000, maxPerHour: 30 });
    st = d.state;
    out.push(...d.mails);
  }
  return out;
}

test("each ladder step is one history entry; only the steps that tell become alerts, and a reset is one warning mail then its all-clear", () => {
  const b = gpuBoxBridge();
  const steps = [
    step("idle", "waiting", T0),
    step("waiting", "resetting", T0 + 120_000, { tell: "reset_started" }),
    step("resetting", "verifying", T0 + 125_000, { resetDetail: "GPU 00000000:1B:00.0 was successfully reset. All done." }),
    step("verifying", "recovered", T0 + 128_000, { tell: "reset_done", evidence: [], resetDetail: "GPU 00000000:1B:00.0 was successfully reset. All done." }),
  ];
  assert.deepEqual(
    steps.map((e) => historyOfRemediation(e)),
    steps.map((e) => ({ at: e.at, kind: "gpu_remediation", gpu: 0, summary: `GPU 0: ${e.from} → ${e.to}: ${e.why}` })),
  );
  const alerts = steps.flatMap((e) => b.translate(e));
  assert.deepEqual(
    alerts.map((a) => [a.kind, "stage" in a ? a.stage : undefined]),
    [
      ["gpu_reset", "started"],
      ["gpu_reset", "done"],
    ],
  );
  const [started, done] = mails(alerts);
  assert.equal(started?.severity, "warning");
  const r1 = renderMail(started!, { host: "gpu-box-1", timeZone: "UTC" });
  assert.equal(r1.subject, "[llmsup] gpu-box-1: GPU 0: resetting (nvidia-smi -r)");
  assert.match(r1.text.replace(/\n {2,8}/g, " "), /What: {3}llmsup is resetting GPU 0 \(00000000:1B:00\.0\): its backends \(llama-gpu0\) are stopped, then `nvidia-smi -r -i 0` runs; they start again once the faults have cleared\./);
  assert.match(r1.text, /Evidence:\n {2}GPU 0: the driver asks for recovery action "Reset"; cure: a GPU reset\n/);
  const r2 = renderMail(done!, { host: "gpu-box-1", timeZone: "UTC" });
  assert.equal(r2.subject, "[llmsup] gpu-box-1: GPU 0: reset done, backends starting again after 8s");
  assert.match(r2.text, /began: GPU 0: resetting \(nvidia-smi -r\)/);
  for (const line of [...r1.text.split("\n"), ...r2.text.split("\n")]) assert.ok(line.length <= QUOTE_MAX, line);
});

test("a refused reset mails one critical reboot-required alert quoting nvidia-smi and the readings; the all-clear pairs with the reset that began it", () => {
  const b = gpuBoxBridge();
  const refused = "GPU 00000000:1B:00.0 is currently in use by another process. 1 device is currently being used by one or more other processes";
  const alerts = [
    step("waiting", "resetting", T0, { tell: "reset_started" }),
    step("resetting", "reboot_required", T0 + 5_000, { tell: "reboot_required", cause: "reset_refused", why: `nvidia-smi -r -i 0 was refused (processes still hold the GPU): ${refused}`, resetDetail: refused, recoveryAction: "Reset" }),
    step("reboot_required", "recovered", T0 + 600_000, { tell: "recovered", evidence: [], why: "the faults that asked for a reset cleared; the backends on GPU 0 start again" }),
  ].flatMap((e) => b.translate(e));
  assert.deepEqual(alerts.map((a) => a.kind), ["gpu_reset", "gpu_reboot_required", "gpu_recovered"]);
  const [, reboot, recovered] = mails(alerts);
  assert.equal(reboot?.severity, "critical");
  const r = renderMail(reboot!, { host: "gpu-box-1", timeZone: "UTC" });
  assert.equal(r.subject, "[llmsup] gpu-box-1: GPU 0: REBOOT REQUIRED (reset refused)");
  const text = r.text.replace(/\n {2,8}/g, " ");
  assert.match(text, /Why: {4}reset_refused GPU 00000000:1B:00\.0 is currently in use by another process\./);
  assert.match(r.text, /Evidence:\n {2}GPU 0: the driver asks for recovery action "Reset"; cure: a GPU reset\n {2}gpu_recovery_action now reads: Reset\n\nLast readings:\n {2}temperature 41 °C\n/);
  assert.match(text, /Action: Reboot the machine when its work allows\. Or stop what still holds GPU 0 \(`nvidia-smi` lists it\) and reset it by hand: `nvidia-smi -r -i 0`\. llmsup starts the held backends again by itself once the GPU's faults clear\./);
  assert.equal(recovered?.severity, "critical", "whoever heard of the reboot hears of its end");
  assert.match(renderMail(recovered!, { host: "gpu-box-1", timeZone: "UTC" }).subject, /GPU 0: recovered after 10m$/);
});

test("with auto_reset off the operator gets one mail saying what to run; repeats of the state are not mailed again", () => {
  const b = gpuBoxBridge();
  const alerts = [step("idle", "reset_needed", T0, { tell: "reset_needed" }), step("reset_needed", "recovered", T0 + 60_000, { tell: "recovered", evidence: [] })].flatMap((e) => b.translate(e));
  const planned = mails([...alerts.slice(0, 1), { ...alerts[0]!, at: T0 + 1_000 }, ...alerts.slice(1)]);
  assert.deepEqual(planned.map((m) => m.event?.kind), ["gpu_reset_needed", "gpu_recovered"]);
  const r = renderMail(planned[0]!, { host: "gpu-box-1", timeZone: "UTC" });
  assert.equal(r.subject, "[llmsup] gpu-box-1: GPU 0: needs a GPU reset");
  assert.match(r.text.replace(/\n {2,8}/g, " "), /Action: Stop what runs on GPU 0 \(`llmsup stop` llama-gpu0\), reset it with `nvidia-smi -r -i 0`, then start them again; or set \[gpu\] auto_reset = true and `llmsup reload` to let llmsup do it\./);
});

test("the supervisor's hold: a running backend is stopped and start, restart and reset refuse it; release starts it again, but one an operator had stopped stays stopped", async (t) => {
  const { sup, events } = await superviseOne(t, { kind: "llamacpp", simArgs: ["--load-time", "0s"] });
  await sup.start("b");
  await events.state("b", "ready");
  await sup.hold("b", "GPU 0 needs a reboot");
  assert.equal(sup.snapshot()[0]!.state, "stopped");
  assert.equal(sup.heldFor("b"), "GPU 0 needs a reboot");
  for (const op of ["start", "restart", "reset"] as const) {
    await assert.rejects(sup[op]("b"), (e: unknown) => e instanceof LlmsupError && e.code === "LLMSUP_E_BACKEND_HELD" && /held stopped: GPU 0 needs a reboot/.test(e.message), op);
  }
  await sup.startAll();
  assert.equal(sup.snapshot()[0]!.state, "stopped", "startAll leaves a held backend alone");
  await sup.hold("b", "GPU 1 needs a reboot");
  await sup.release("b", "GPU 0 no longer needs a reboot");
  assert.equal(sup.heldFor("b"), undefined);
  await events.state("b", "ready", { nth: 2 });
  assert.equal(sup.snapshot()[0]!.generation, 2, "held again by a second GPU: still resumed, it was running before the first hold");

  await sup.stop("b");
  await sup.hold("b", "llmsup resets GPU 0");
  await sup.release("b", "GPU 0 was reset by llmsup");
  assert.equal(sup.snapshot()[0]!.state, "stopped", "an operator's stop outlasts the hold");
  await sup.start("b");
  await events.state("b", "ready", { nth: 3 });
});
