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

/** What killing a group's remains came to. */
export type RemainsOutcome =
  /** The leader left nothing in its group. */
  | { readonly kind: "none" }
  /** `left` processes were left; they went after SIGTERM, or only after SIGKILL. */
  | { readonly kind: "killed"; readonly left: number; readonly sigkill: boolean }
  /** `left` of them survive SIGKILL (typically stuck in the kernel, the GPU driver). */
  | { readonly kind: "unkillable"; readonly left: number };

/** Resolves true once the group is empty, false when it is not within `ms`. */
async function groupGone(g: Pick<ProcessGroup, "groupSize">, ms: number, clock: Clock): Promise<boolean> {
  const deadline = clock.now() + ms;
  for (;;) {
    if ((await g.groupSize()) === 0) return true;
    if (clock.now() >= deadline) return false;
    await sleepOn(clock, 50);
  }
}

/**
 * Kills what is left of a process group after its leader exited (systemd's
 * KillMode=control-group): SIGTERM, `stopTimeoutMs`, SIGKILL, then waits
 * (at most KILL_GRACE_MS) for them to be gone.
 */
export async function killGroupRemains(g: Pick<ProcessGroup, "signalGroup" | "groupSize">, stopTimeoutMs: number, clock: Clock): Promise<RemainsOutcome> {
  const left = await g.groupSize();
  if (left === 0) return { kind: "none" };
  g.signalGroup("SIGTERM");
  if (await groupGone(g, stopTimeoutMs, clock)) return { kind: "killed", left, sigkill: false };
  g.signalGroup("SIGKILL");
  if (await groupGone(g, KILL_GRACE_MS, clock)) return { kind: "killed", left, sigkill: true };
  return { kind: "unkillable", left: await g.groupSize() };
}
