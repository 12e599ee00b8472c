/**
 * The remediation ladder of one GPU, after NVIDIA's recovery actions
 * (gpu_recovery_action) and the XID catalog's resolution buckets. Pure:
 *
 *   stepRemediation(state, input, now, config) → { state, actions[], transition? }
 *
 * The rungs: (1) an app-caused fault (restart_app) is the supervisor's — it
 * restarts the backend — and nothing here; (2) a fault whose cure is a GPU
 * reset (reset_gpu), with auto_reset on: after remediation_delay without a
 * new fault on the GPU, its backends are stopped, `nvidia-smi -r` resets
 * it, and once the faults have cleared they start again — at most one
 * reset per GPU per reset_window; with auto_reset off the operator is told
 * once and nothing is restarted; (3) a fault only a reboot cures, a second
 * reset need inside the window, or a reset that was refused, failed or did
 * not clear the faults: "reboot required" — the backends are stopped and
 * held (never restarted in a loop) until the faults clear.
 *
 * | from            | to              | why                                                                                  |
 * |-----------------|-----------------|--------------------------------------------------------------------------------------|
 * | idle, recovered | waiting         | a fault asks for a reset, auto_reset is on, no reset in the window                   |
 * | idle, recovered | reset_needed    | a fault asks for a reset and auto_reset is off: the operator is told                 |
 * | idle, recovered | reboot_required | a fault asks for a reboot, or for a second reset inside reset_window                 |
 * | waiting         | resetting       | remediation_delay passed without a new fault on the GPU                              |
 * | waiting         | recovered       | the faults cleared by themselves before the reset was due                            |
 * | waiting         | reset_needed    | a reload turned auto_reset off                                                       |
 * | waiting         | reboot_required | a fault asks for a reboot                                                            |
 * | resetting       | verifying       | nvidia-smi -r succeeded: waiting for the faults to clear                             |
 * | resetting       | recovered       | nvidia-smi -r succeeded and the faults had already cleared: the backends start again |
 * | resetting       | reboot_required | the reset was refused (processes hold the GPU), failed or timed out; or a reboot fault |
 * | verifying       | recovered       | the faults cleared: the backends start again                                         |
 * | verifying       | reboot_required | the faults are still there when verification ends, or a fault asks for a reboot     |
 * | reset_needed    | waiting         | a reload turned auto_reset on                                                        |
 * | reset_needed    | recovered       | the faults cleared (the operator reset the GPU, or they passed)                      |
 * | reset_needed    | reboot_required | a fault asks for a reboot, or auto_reset came on with a reset already in the window   |
 * | reboot_required | recovered       | every fault asking for a reset or a reboot cleared: the held backends start again    |
 *
 * Nothing else: the step checks every change against this table.
 */
import { formatDuration } from "../config/units.ts";
import type { GpuConfig } from "../config/types.ts";
import { LlmsupError } from "../errors/error.ts";
import type { GpuFault, Recovery } from "./types.ts";
import { xidInfo } from "./xid.ts";

export const REMEDIATION_PHASES = ["idle", "waiting", "resetting", "verifying", "recovered", "reset_needed", "reboot_required"] as const;
export type RemediationPhase = (typeof REMEDIATION_PHASES)[number];

export const REMEDIATION_TRANSITIONS: Readonly<Record<RemediationPhase, readonly RemediationPhase[]>> = {
  idle: ["waiting", "reset_needed", "reboot_required"],
  recovered: ["waiting", "reset_needed", "reboot_required"],
  waiting: ["resetting", "recovered", "reset_needed", "reboot_required"],
  resetting: ["verifying", "recovered", "reboot_required"],
  verifying: ["recovered", "reboot_required"],
  reset_needed: ["waiting", "recovered", "reboot_required"],
  reboot_required: ["recovered"],
};

/** The rungs the ladder acts on. */
export type LadderRecovery = Extract<Recovery, "reset_gpu" | "reboot">;

/** Why a GPU is "reboot required". */
export type EscalationCause = "reboot_fault" | "reset_again" | "reset_refused" | "reset_failed" | "reset_ineffective";

/** How one `nvidia-smi -r` ended. */
export type ResetOutcome = "done" | "refused" | "failed" | "timed_out";

/** A fault that asks for a reset or a reboot: the evidence the ladder acts on. */
export interface Evidence {
  readonly id: string;
  readonly kind: string;
  readonly reason: string;
  readonly recovery: LadderRecovery;
  readonly since: number;
  readonly xid?: number;
  /** The recovery action the driver asked for (recovery_action faults). */
  readonly value?: string;
}

export interface GpuRemediation {
  readonly gpu: number;
  readonly phase: RemediationPhase;
  /** When the phase began. */
  readonly since: number;
  /** Why it is in this phase, for people. */
  readonly why: string;
  /** Active faults on this GPU that ask for a reset or a reboot. */
  readonly evidence: readonly Evidence[];
  /** waiting: when the reset is due; verifying: when the faults must have cleared. */
  readonly due?: number;
  /** When llmsup tried to reset this GPU, inside reset_window. */
  readonly resets: readonly number[];
  /** reboot_required: why. */
  readonly cause?: EscalationCause;
  /** What nvidia-smi said about the last reset, one line. */
  readonly resetDetail?: string;
}

export interface RemediationConfig {
  readonly autoReset: boolean;
  /** remediation_delay: quiet time on the GPU before a reset. */
  readonly delayMs: number;
  /** reset_window: at most one reset per GPU inside it. */
  readonly windowMs: number;
  /** How long after a reset the faults that asked for it have to clear. */
  readonly verifyMs: number;
}

/** Slow polls (remapped rows) come every 30 s: a pending remap is seen cleared only on one of them. */
const SLOW_POLL_MS = 30_000;

/**
 * The ladder's settings from [gpu]. Verification lasts long enough for the
 * faults a reset cures to be seen gone: clear_samples samples (and slow
 * polls, for row remaps) after the next sample, within the deadline.
 */
export function remediationConfig(gpu: Pick<GpuConfig, "auto_reset" | "remediation_delay" | "reset_window" | "interval" | "deadline" | "clear_samples">): RemediationConfig {
  const verifyMs = Math.max(gpu.deadline + (gpu.clear_samples + 2) * gpu.interval, (gpu.clear_samples + 1) * SLOW_POLL_MS);
  return { autoReset: gpu.auto_reset, delayMs: gpu.remediation_delay, windowMs: gpu.reset_window, verifyMs };
}

export type RemediationInput =
  /** A fault on this GPU was raised. */
  | { readonly type: "raised"; readonly fault: GpuFault }
  /** A fault on this GPU cleared. */
  | { readonly type: "cleared"; readonly fault: GpuFault }
  /** A fault on this GPU happened again (a repeated XID): no quiet time yet. */
  | { readonly type: "repeat"; readonly what: string }
  /** Time passed (a due time came), or the configuration changed. */
  | { readonly type: "tick" }
  /** How the `nvidia-smi -r` asked for ended. */
  | { readonly type: "reset_result"; readonly outcome: ResetOutcome; readonly detail: string };

export type RemediationAction =
  /** Stop the backends on this GPU and hold them stopped (nothing restarts them). */
  | { readonly type: "hold"; readonly reason: string }
  /** Run `nvidia-smi -r -i <gpu>` and report a reset_result. */
  | { readonly type: "reset" }
  /** Tell the fault evaluator llmsup reset this GPU. */
  | { readonly type: "mark_reset"; readonly reason: string }
  /** End the hold: start the backends on this GPU again. */
  | { readonly type: "release"; readonly reason: string };

/** What an operator is told (a mail): the reset starting and ending well, a reset or a reboot needed, and the all-clear. */
export type RemediationTell = "reset_started" | "reset_done" | "reset_needed" | "reboot_required" | "recovered";

export interface RemediationTransition {
  readonly from: RemediationPhase;
  readonly to: RemediationPhase;
  readonly why: string;
  readonly tell?: RemediationTell;
}

export interface RemediationStep {
  readonly state: GpuRemediation;
  readonly actions: readonly RemediationAction[];
  /** Set when the phase changed. */
  readonly transition?: RemediationTransition;
}

export function initialRemediation(gpu: number, now: number): GpuRemediation {
  return { gpu, phase: "idle", since: now, why: "no fault asks for a reset or a reboot", evidence: [], resets: [] };
}

/**
 * What cures a fault, as far as the ladder is concerned: the fault's own
 * `recovery`, else what its kind says (the driver's recovery action
 * "Reset"/"Drain and Reset" → reset, "Reboot" → reboot; "[GPU requires
 * reset]" and row-remap faults → reset; a lost GPU → reboot; an XID → its
 * catalog class). Undefined: not the ladder's (app restarts, conditions that
 * pass by themselves).
 */
export function ladderRecovery(f: GpuFault): LadderRecovery | undefined {
  const r = f.recovery ?? fallbackRecovery(f);
  return r === "reset_gpu" || r === "reboot" ? r : undefined;
}

function fallbackRecovery(f: GpuFault): Recovery | undefined {
  switch (f.kind) {
    case "recovery_action":
      return f.value === "Reboot" ? "reboot" : f.value === "Reset" || f.value === "Drain and Reset" ? "reset_gpu" : undefined;
    case "requires_reset":
    case "row_remap_pending":
    case "row_remap_failure":
      return "reset_gpu";
    case "gpu_lost":
      return "reboot";
    default:
      return f.xid !== undefined ? xidInfo(f.xid).recovery : undefined;
  }
}

function evidenceOf(f: GpuFault, recovery: LadderRecovery): Evidence {
  return { id: f.id, kind: f.kind, reason: f.reason, recovery, since: f.since, ...(f.xid !== undefined ? { xid: f.xid } : {}), ...(f.value !== undefined ? { value: f.value } : {}) };
}

/** The resets still inside the window at `now`. */
function inWindow(resets: readonly number[], now: number, cfg: RemediationConfig): number[] {
  return resets.filter((at) => now - at < cfg.windowMs);
}

const iso = (ms: number) => new Date(ms).toISOString();
const rebootFault = (s: GpuRemediation) => s.evidence.find((e) => e.recovery === "reboot");

export function stepRemediation(state: GpuRemediation, input: RemediationInput, now: number, cfg: RemediationConfig): RemediationStep {
  const s: GpuRemediation = { ...state, resets: inWindow(state.resets, now, cfg) };
  switch (input.type) {
    case "raised":
      return raised(s, input.fault, now, cfg);
    case "cleared":
      return cleared({ ...s, evidence: s.evidence.filter((e) => e.id !== input.fault.id) }, now);
    case "repeat":
      return s.phase === "waiting" ? stay({ ...s, due: now + cfg.delayMs }) : stay(s);
    case "tick":
      return tick(s, now, cfg);
    case "reset_result":
      return resetResult(s, input.outcome, input.detail, now, cfg);
  }
}

function stay(s: GpuRemediation, actions: readonly RemediationAction[] = []): RemediationStep {
  return { state: s, actions };
}

/** Changes phase along the table (anything else is a bug: thrown). */
function go(s: GpuRemediation, to: RemediationPhase, why: string, now: number, extra: Partial<GpuRemediation>, actions: readonly RemediationAction[], tell?: RemediationTell): RemediationStep {
  if (!REMEDIATION_TRANSITIONS[s.phase].includes(to)) {
    throw new LlmsupError("LLMSUP_E_GPU_REMEDIATION_TRANSITION", `GPU ${s.gpu}: refused remediation change ${s.phase} → ${to} (${why}): not in the ladder's transition table`, { gpu: s.gpu, from: s.phase, to, why });
  }
  const { due: _due, cause: _cause, resetDetail: _detail, ...rest } = s;
  const next: GpuRemediation = { ...rest, phase: to, since: now, why, ...extra };
  return { state: next, actions, transition: { from: s.phase, to, why, ...(tell ? { tell } : {}) } };
}

/** The backends are stopped while llmsup resets the GPU or the GPU needs a reboot. */
export function holdsBackends(phase: RemediationPhase): boolean {
  return phase === "resetting" || phase === "verifying" || phase === "reboot_required";
}

function rebootRequired(s: GpuRemediation, cause: EscalationCause, why: string, now: number, extra: Partial<GpuRemediation> = {}): RemediationStep {
  const actions: RemediationAction[] = holdsBackends(s.phase) ? [] : [{ type: "hold", reason: `GPU ${s.gpu} needs a reboot` }];
  return go(s, "reboot_required", why, now, { cause, ...extra }, actions, "reboot_required");
}

/** A reset is needed now: wait for quiet, tell the operator, or escalate when the window already holds a reset. */
function needReset(s: GpuRemediation, trigger: string, now: number, cfg: RemediationConfig): RemediationStep {
  const last = s.resets[s.resets.length - 1];
  if (last !== undefined) {
    return rebootRequired(s, "reset_again", `${trigger}: a second reset within reset_window (${formatDuration(cfg.windowMs)}) of the one at ${iso(last)}; a reboot is required`, now);
  }
  if (!cfg.autoReset) {
    return go(s, "reset_needed", `${trigger}; auto_reset is off: the GPU needs a reset by an operator (stop its apps, then nvidia-smi -r -i ${s.gpu})`, now, {}, [], "reset_needed");
  }
  return go(s, "waiting", `${trigger}; resetting it after ${formatDuration(cfg.delayMs)} without a new fault`, now, { due: now + cfg.delayMs }, []);
}

function raised(s: GpuRemediation, f: GpuFault, now: number, cfg: RemediationConfig): RemediationStep {
  const recovery = ladderRecovery(f);
  if (!recovery) return s.phase === "waiting" ? stay({ ...s, due: now + cfg.delayMs }) : stay(s);
  const t: GpuRemediation = { ...s, evidence: [...s.evidence.filter((e) => e.id !== f.id), evidenceOf(f, recovery)] };
  const asks = `${f.reason}${f.xid !== undefined ? ` (XID ${f.xid})` : ""}`;
  if (recovery === "reboot") {
    if (t.phase === "reboot_required") return stay(t);
    // A reset under way finishes first: its outcome decides (resetResult sees the reboot fault).
    if (t.phase === "resetting") return stay(t);
    return rebootRequired(t, "reboot_fault", `${asks}: only a reboot recovers this GPU`, now);
  }
  switch (t.phase) {
    case "idle":
    case "recovered":
      return needReset(t, `${asks}: asks for a GPU reset`, now, cfg);
    case "waiting":
      return stay({ ...t, due: now + cfg.delayMs });
    default:
      return stay(t);
  }
}

function cleared(s: GpuRemediation, now: number): RemediationStep {
  if (s.evidence.length > 0) return stay(s);
  switch (s.phase) {
    case "waiting":
      return go(s, "recovered", "the faults cleared by themselves before the reset was due: no reset needed", now, {}, []);
    case "verifying":
      return go(s, "recovered", `the reset cleared the faults; the backends on GPU ${s.gpu} start again`, now, s.resetDetail ? { resetDetail: s.resetDetail } : {}, [{ type: "release", reason: `GPU ${s.gpu} was reset by llmsup and its faults cleared` }], "reset_done");
    case "reset_needed":
      return go(s, "recovered", "the faults that asked for a reset cleared", now, {}, [], "recovered");
    case "reboot_required":
      return go(s, "recovered", `the faults that asked for ${s.cause === "reboot_fault" ? "a reboot" : "a reset"} cleared; the backends on GPU ${s.gpu} start again`, now, {}, [{ type: "release", reason: `GPU ${s.gpu} no longer needs a reboot` }], "recovered");
    default:
      return stay(s);
  }
}

function tick(s: GpuRemediation, now: number, cfg: RemediationConfig): RemediationStep {
  switch (s.phase) {
    case "waiting":
      if (!cfg.autoReset) return go(s, "reset_needed", `auto_reset was turned off before the reset was due: the GPU needs a reset by an operator (stop its apps, then nvidia-smi -r -i ${s.gpu})`, now, {}, [], "reset_needed");
      if (s.due !== undefined && now < s.due) return stay(s);
      return go(
        s,
        "resetting",
        `no new fault for ${formatDuration(cfg.delayMs)}: stopping the backends on GPU ${s.gpu} and running nvidia-smi -r -i ${s.gpu}`,
        now,
        { resets: [...s.resets, now] },
        [{ type: "hold", reason: `llmsup resets GPU ${s.gpu}` }, { type: "reset" }],
        "reset_started",
      );
    case "reset_needed":
      return cfg.autoReset ? needReset(s, "auto_reset was turned on", now, cfg) : stay(s);
    case "verifying":
      if (s.evidence.length === 0) return cleared(s, now);
      if (s.due !== undefined && now < s.due) return stay(s);
      return rebootRequired(s, "reset_ineffective", `the reset did not clear ${s.evidence.map((e) => e.reason).join("; ")} within ${formatDuration(cfg.verifyMs)}; a reboot is required`, now);
    default:
      return stay(s);
  }
}

function resetResult(s: GpuRemediation, outcome: ResetOutcome, detail: string, now: number, cfg: RemediationConfig): RemediationStep {
  if (s.phase !== "resetting") return stay(s);
  if (outcome !== "done") {
    const cause: EscalationCause = outcome === "refused" ? "reset_refused" : "reset_failed";
    const what = outcome === "refused" ? "was refused (processes still hold the GPU)" : outcome === "timed_out" ? "did not finish in time" : "failed";
    return rebootRequired(s, cause, `nvidia-smi -r -i ${s.gpu} ${what}: ${detail}; a reboot is required (or stop what holds it and reset it by hand)`, now, { resetDetail: detail });
  }
  const mark: RemediationAction = { type: "mark_reset", reason: `nvidia-smi -r -i ${s.gpu} succeeded` };
  const reboot = rebootFault(s);
  if (reboot) return go(s, "reboot_required", `the reset succeeded, but ${reboot.reason}: only a reboot recovers this GPU`, now, { cause: "reboot_fault", resetDetail: detail }, [mark], "reboot_required");
  if (s.evidence.length === 0) {
    return go(s, "recovered", `nvidia-smi -r -i ${s.gpu} succeeded and no fault remains; the backends on GPU ${s.gpu} start again`, now, { resetDetail: detail }, [mark, { type: "release", reason: `GPU ${s.gpu} was reset by llmsup` }], "reset_done");
  }
  return go(s, "verifying", `nvidia-smi -r -i ${s.gpu} succeeded; waiting up to ${formatDuration(cfg.verifyMs)} for the faults to clear`, now, { due: now + cfg.verifyMs, resetDetail: detail }, [mark]);
}

/** What llmsup does next about this GPU, and when (null: nothing pending). */
export function nextRemediation(s: GpuRemediation): { readonly what: string; readonly at: number | null } | null {
  switch (s.phase) {
    case "waiting":
      return { what: `reset GPU ${s.gpu}: stop the backends on it, nvidia-smi -r -i ${s.gpu}, start them again (a new fault on it restarts the wait)`, at: s.due ?? null };
    case "resetting":
      return { what: `wait for nvidia-smi -r -i ${s.gpu} to finish`, at: null };
    case "verifying":
      return { what: `start the backends on GPU ${s.gpu} again once the faults clear; if they remain, reboot required`, at: s.due ?? null };
    case "reset_needed":
      return { what: `nothing by itself (auto_reset is off): once an operator has reset GPU ${s.gpu} and the faults clear, it is back`, at: null };
    case "reboot_required":
      return { what: `keep the backends on GPU ${s.gpu} stopped until the faults clear (reboot the machine)`, at: null };
    default:
      return null;
  }
}

/** How one `nvidia-smi -r` run ended, from its exit status and output (or the error running it). Pure. */
export function resetOutcome(run: { readonly exitCode: number | null; readonly output: string } | { readonly error: { readonly code?: string; readonly message: string } }): { readonly outcome: ResetOutcome; readonly detail: string } {
  if ("error" in run) return { outcome: run.error.code === "LLMSUP_E_GPU_UNRESPONSIVE" ? "timed_out" : "failed", detail: run.error.message };
  const lines = run.output
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
  const detail = lines.join(" ").slice(0, 400) || `exit status ${run.exitCode ?? "none"}, no output`;
  if (run.exitCode === 0) return { outcome: "done", detail };
  if (/in use by another process|currently being used by/i.test(run.output)) return { outcome: "refused", detail };
  return { outcome: "failed", detail: run.exitCode === null ? detail : `${detail} (exit status ${run.exitCode})` };
}
