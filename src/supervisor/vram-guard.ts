/**
 * The supervisor's side of "never restart into VRAM an orphan still holds":
 * which holders are leftovers of our own earlier generations (by process
 * group), killing them and waiting for the memory, and naming a foreign holder.
 */
import { formatDuration } from "../config/units.ts";
import type { Logger } from "../log/logger.ts";
import { sleepOn, type Clock } from "../platform/clock.ts";
import { isAlive, procStat, signalGroup } from "../platform/procfs.ts";
import type { VramHolder, VramProbe } from "./vram.ts";

export type ClearOutcome = { readonly ok: true } | { readonly ok: false; readonly holder: VramHolder; readonly reason: string };

export class VramGuard {
  private readonly probe?: VramProbe;
  private readonly gpus: readonly number[];
  /** Process groups of earlier generations: their leftovers are ours to kill. */
  readonly ourGroups = new Set<number>();
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly name: string;

  constructor(name: string, probe: VramProbe | undefined, gpus: readonly number[], clock: Clock, log: Logger) {
    this.name = name;
    this.probe = probe;
    this.gpus = gpus;
    this.clock = clock;
    this.log = log;
  }

  private get active(): boolean {
    return this.probe !== undefined && this.gpus.length > 0;
  }

  /** Whether a holder process belongs to one of our earlier generations. */
  private async isOurs(h: VramHolder): Promise<boolean> {
    const st = await procStat(h.pid);
    return st !== undefined && this.ourGroups.has(st.pgrp);
  }

  /**
   * Before a start: kill our own leftovers and wait (up to `timeoutMs`) for
   * their memory to be released. When nvidia-smi cannot tell, the start goes on.
   */
  async clearLeftovers(timeoutMs: number): Promise<ClearOutcome> {
    if (!this.active || this.ourGroups.size === 0) return { ok: true };
    const deadline = this.clock.now() + timeoutMs;
    for (let round = 0; ; round++) {
      let holders: readonly VramHolder[];
      try {
        holders = await this.probe!.holders(this.gpus);
      } catch (e) {
        this.log.warn({ event: "backend.vram.unknown", err: (e as Error).message }, `${this.name}: cannot tell who holds GPU memory (${(e as Error).message}); starting anyway`);
        return { ok: true };
      }
      const ours: VramHolder[] = [];
      for (const h of holders) if (await this.isOurs(h)) ours.push(h);
      if (ours.length === 0) return { ok: true };
      if (round === 0) {
        this.log.warn({ event: "backend.vram.leftover", holders: ours }, `${this.name}: killing leftovers of an earlier generation that still hold GPU memory: ${ours.map((h) => `pid ${h.pid} (${h.usedMemoryMib} MiB on GPU ${h.gpu})`).join(", ")}`);
        for (const h of ours) {
          const st = await procStat(h.pid);
          if (st) signalGroup(st.pgrp, "SIGKILL");
        }
      }
      if (this.clock.now() >= deadline) {
        const h = ours[0]!;
        const st = await procStat(h.pid);
        return {
          ok: false,
          holder: h,
          reason: `GPU memory still held by pid ${h.pid} of an earlier generation ${formatDuration(timeoutMs)} after SIGKILL (process state ${st?.state ?? "?"}${st?.state === "D" ? ": stuck in the driver" : ""})`,
        };
      }
      await sleepOn(this.clock, 200);
    }
  }

  /** The largest live holder on our GPUs that is not ours; undefined when there is none or nvidia-smi cannot tell. */
  async foreignHolder(): Promise<VramHolder | undefined> {
    if (!this.active) return undefined;
    let holders: readonly VramHolder[];
    try {
      holders = await this.probe!.holders(this.gpus);
    } catch {
      return undefined;
    }
    const foreign: VramHolder[] = [];
    for (const h of holders) if ((await isAlive(h.pid)) && !(await this.isOurs(h))) foreign.push(h);
    return foreign.sort((a, b) => b.usedMemoryMib - a.usedMemoryMib)[0];
  }

  /** Whether `pid` still holds memory on our GPUs (false when nvidia-smi cannot tell). */
  async stillHeld(pid: number): Promise<boolean> {
    if (!this.active) return false;
    return this.probe!.holders(this.gpus).then((hs) => hs.some((x) => x.pid === pid), () => false);
  }
}
