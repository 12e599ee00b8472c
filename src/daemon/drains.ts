/**
 * Backends an operator took out of rotation on purpose: who and since when.
 * Kept by the daemon (so a reload keeps them), persisted in the state file
 * (so a restart keeps them), read by the router through RouterDeps.drained.
 */
import type { Drain } from "../router/tier-state.ts";

export interface DrainChange {
  readonly backend: string;
  readonly drained: Drain | null;
  readonly changed: boolean;
  /** The history line, when something changed. */
  readonly summary?: string;
}

/** What `llmsup drain` is told (the control socket's answer): the backend's drain, and the requests still on it. */
export interface DrainAnswer {
  readonly backend: string;
  readonly drained: Drain | null;
  /** Whether this call changed anything; absent when it only asked. */
  readonly changed?: boolean;
  /** Requests the router has on the backend now: a drained backend is idle (safe for maintenance) at 0. */
  readonly inflight: number;
}

export class Drains {
  private readonly map = new Map<string, Drain>();

  get(backend: string): Drain | undefined {
    return this.map.get(backend);
  }

  /** Drains (`on`) or undrains a backend at `now`; no change when it already is so. */
  set(backend: string, on: boolean, by: string, now: number): DrainChange {
    const was = this.map.get(backend);
    if (on === (was !== undefined)) return { backend, drained: was ?? null, changed: false };
    if (on) this.map.set(backend, { by, since: now });
    else this.map.delete(backend);
    const summary = on ? `${backend} drained by ${by}: no new requests until \`llmsup undrain ${backend}\`` : `${backend} undrained by ${by} after ${Math.round((now - was!.since) / 1000)}s: back in rotation`;
    return { backend, drained: this.map.get(backend) ?? null, changed: true, summary };
  }

  /** Keeps only the backends `exists` still knows (a reload, a restored state file). */
  keep(exists: (backend: string) => boolean): void {
    for (const name of [...this.map.keys()]) if (!exists(name)) this.map.delete(name);
  }

  restore(saved: Readonly<Record<string, Drain>> | undefined, exists: (backend: string) => boolean): void {
    for (const [name, d] of Object.entries(saved ?? {})) if (exists(name)) this.map.set(name, d);
  }

  /** For the state file; undefined when nothing is drained. */
  persisted(): Record<string, Drain> | undefined {
    return this.map.size > 0 ? Object.fromEntries(this.map) : undefined;
  }
}
