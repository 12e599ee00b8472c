/** Stopping a process group: SIGTERM, a grace period, SIGKILL, and the truth about a process that will not die. */
import { sleepOn, within, type Clock } from "../platform/clock.ts";
import type { ProcessGroup } from "./spawn.ts";

/** How long to wait for a process to go after SIGKILL before calling it unkillable. */
export const KILL_GRACE_MS = 5_000;

export interface StopTarget extends Pick<ProcessGroup, "signalGroup" | "processState"> {
  readonly exited: Promise<unknown>;
  hasExited(): boolean;
}

export type StopOutcome =
  | { readonly kind: "stopped"; readonly sigkill: boolean }
  /** Survived SIGKILL: typically stuck in the kernel (state D, the GPU driver). */
  | { readonly kind: "unkillable"; readonly processState: string };

/** Resolves true when `t` exited within `ms`. */
export async function waitExit(t: StopTarget, ms: number, clock: Clock): Promise<boolean> {
  return t.hasExited() || within(clock, t.exited, ms);
}

/** SIGTERM the group, wait `stopTimeoutMs`, SIGKILL the group, wait; report a process that will not die instead of hanging. */
export async function stopGroup(t: StopTarget, stopTimeoutMs: number, clock: Clock, onSigkill: () => void): Promise<StopOutcome> {
  if (t.hasExited()) return { kind: "stopped", sigkill: false };
  t.signalGroup("SIGTERM");
  if (await waitExit(t, stopTimeoutMs, clock)) return { kind: "stopped", sigkill: false };
  onSigkill();
  t.signalGroup("SIGKILL");
  if (await waitExit(t, KILL_GRACE_MS, clock)) return { kind: "stopped", sigkill: true };
  return { kind: "unkillable", processState: (await t.processState()) ?? "?" };
}

/** Kills what is left of a process group after its leader exited (systemd's KillMode=control-group). */
export async function killGroupRemains(g: Pick<ProcessGroup, "signalGroup" | "groupSize">, stopTimeoutMs: number, clock: Clock): Promise<void> {
  if ((await g.groupSize()) === 0) return;
  g.signalGroup("SIGTERM");
  const deadline = clock.now() + stopTimeoutMs;
  while (clock.now() < deadline) {
    if ((await g.groupSize()) === 0) return;
    await sleepOn(clock, 50);
  }
  g.signalGroup("SIGKILL");
}
