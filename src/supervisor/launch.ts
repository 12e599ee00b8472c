/**
 * What a backend's process was started as, recorded in state_dir at every
 * spawn so that a daemon started later (after a restart, an upgrade, a
 * crash) can tell whether the process it finds running is the one it would
 * start now — and adopt it instead of loading the model again. Pure.
 */
import { createHash } from "node:crypto";
import type { BackendConfig } from "../config/types.ts";

/** The running process of a backend, as the daemon that started (or adopted) it left it. */
export interface LaunchRecord {
  readonly pid: number;
  /** The kernel's start time of `pid` (/proc/<pid>/stat field 22, clock ticks since boot): a reused pid has another. */
  readonly startTime: number;
  /** launchHash() of what it was started with. */
  readonly hash: string;
  /** Wall-clock time it was started (uptime in status stays unbroken across an adoption). */
  readonly startedAt: number;
  readonly generation: number;
  /** The TCP port it serves on (from its URL). */
  readonly port?: number;
  /** When it first passed readiness (absent: it was still loading when last recorded). */
  readonly readyAt?: number;
}

/**
 * A digest of what starting the backend means: its argv, environment
 * (values included; secret_env by the files they are read from), working
 * directory, user and group, and the URL it serves. A process started from
 * another is not the one this configuration wants.
 */
export function launchHash(b: Pick<BackendConfig, "url" | "process">): string {
  const p = b.process;
  const facts = {
    command: p?.command ?? [],
    env: Object.entries(p?.env ?? {}).sort(([a], [b2]) => a.localeCompare(b2)),
    secret_env: Object.entries(p?.secret_env ?? {}).sort(([a], [b2]) => a.localeCompare(b2)),
    cwd: p?.cwd ?? null,
    user: p?.user ?? null,
    group: p?.group ?? null,
    url: b.url,
  };
  return createHash("sha256").update(JSON.stringify(facts)).digest("hex").slice(0, 32);
}

/** The port a backend's URL names (its scheme's default when none). */
export function portOf(url: string): number | undefined {
  try {
    const u = new URL(url);
    if (u.port) return Number(u.port);
    return u.protocol === "https:" ? 443 : u.protocol === "http:" ? 80 : undefined;
  } catch {
    return undefined;
  }
}

export type AdoptionVerdict =
  | { readonly kind: "adopt"; readonly record: LaunchRecord }
  /** Alive and ours, but started from another configuration: stop it (its process group) and start anew. */
  | { readonly kind: "replace"; readonly record: LaunchRecord; readonly reason: string }
  /** Nothing to adopt (no record, the process gone, its pid reused by another). */
  | { readonly kind: "none"; readonly reason: string };

/** Whether the recorded process may be adopted: `startTime` is what /proc says of its pid now (undefined: gone). */
export function adoptionVerdict(record: LaunchRecord | undefined, startTimeNow: number | undefined, hashNow: string): AdoptionVerdict {
  if (!record) return { kind: "none", reason: "no process was recorded" };
  if (startTimeNow === undefined) return { kind: "none", reason: `pid ${record.pid} is no longer running` };
  if (startTimeNow !== record.startTime) return { kind: "none", reason: `pid ${record.pid} is now another process` };
  if (record.hash !== hashNow) return { kind: "replace", record, reason: `pid ${record.pid} was started from another configuration` };
  return { kind: "adopt", record };
}

/** A record read back from the state file, checked field by field; undefined when it is not one. */
export function parseLaunchRecord(x: unknown): LaunchRecord | undefined {
  if (typeof x !== "object" || x === null) return undefined;
  const r = x as Record<string, unknown>;
  const int = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
  if (!int(r.pid) || (r.pid as number) <= 1 || !int(r.startTime) || typeof r.hash !== "string" || !int(r.startedAt) || !int(r.generation)) return undefined;
  if ((r.port !== undefined && !int(r.port)) || (r.readyAt !== undefined && !int(r.readyAt))) return undefined;
  return {
    pid: r.pid as number,
    startTime: r.startTime as number,
    hash: r.hash,
    startedAt: r.startedAt as number,
    generation: r.generation as number,
    ...(r.port !== undefined ? { port: r.port as number } : {}),
    ...(r.readyAt !== undefined ? { readyAt: r.readyAt as number } : {}),
  };
}
