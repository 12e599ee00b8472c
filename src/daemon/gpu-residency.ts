/**
 * Whether a GPU tier's process really runs on its GPUs. A vLLM or llama.cpp
 * backend configured with GPUs whose process group holds no memory on any
 * GPU while it serves is answering from the CPU (a CPU build, a CUDA that
 * failed to initialise, no layers offloaded): slowly. Ollama says so itself
 * (/api/ps size_vram, probes.ts). Pure: a compute-apps reading with the
 * process group of each pid, the serving process and the time in; a finding
 * out (residency-watch.ts gathers the facts and applies it).
 */
import type { BackendConfig } from "../config/types.ts";

/** Kinds whose own process group holds the model's GPU memory (vLLM's engine is a child in the group). */
export const RESIDENT_KINDS: readonly string[] = ["vllm", "llamacpp"];

/** One process nvidia-smi lists as holding GPU memory. */
export interface ListedApp {
  readonly pid: number;
  /** Its process group from /proc; undefined when /proc cannot tell (gone meanwhile, or a pid of another pid namespace). */
  readonly pgrp?: number;
}

export interface ResidencyFacts {
  readonly backend: Pick<BackendConfig, "kind" | "gpus" | "managed">;
  /** The process serving (ready or degraded; the leader of its process group) and since when it serves; absent when none does. */
  readonly serving?: { readonly pid: number; readonly since: number };
  /** A `--query-compute-apps` reading; `at`: when it was read, absent when its age is not known (the GPU monitor's last one). */
  readonly reading: { readonly apps: readonly ListedApp[]; readonly at?: number };
  readonly now: number;
  /** How long it must have served before it is judged: a process may allocate after it first answers. */
  readonly settleMs: number;
  /** How old a reading may be to say the process is not on the GPU. */
  readonly freshMs: number;
}

export type Residency =
  /** Nothing to say: not a GPU tier llmsup runs, not serving, not serving long enough, or the reading cannot tell. */
  | { readonly kind: "unjudged"; readonly why: string }
  | { readonly kind: "on_gpu" }
  /** Absent from a reading that may be old: only a fresh reading may say it is off the GPU. */
  | { readonly kind: "unconfirmed" }
  | { readonly kind: "off_gpu"; readonly reason: string };

export function isGpuTier(b: Pick<BackendConfig, "kind" | "gpus" | "managed">): boolean {
  return b.managed && RESIDENT_KINDS.includes(b.kind) && b.gpus.length > 0;
}

export function judgeResidency(f: ResidencyFacts): Residency {
  const b = f.backend;
  if (!isGpuTier(b)) return { kind: "unjudged", why: "not a vLLM or llama.cpp backend with GPUs that llmsup runs" };
  const s = f.serving;
  if (!s) return { kind: "unjudged", why: "not serving" };
  if (f.now - s.since < f.settleMs) return { kind: "unjudged", why: "not serving long enough to have taken its GPU memory" };
  // On a GPU at all, it is not on the CPU (on another GPU than configured is not this check's finding).
  if (f.reading.apps.some((a) => a.pgrp === s.pid)) return { kind: "on_gpu" };
  const unknown = f.reading.apps.filter((a) => a.pgrp === undefined);
  if (unknown.length > 0) return { kind: "unjudged", why: `cannot tell whose pid ${unknown.map((a) => a.pid).join(", ")} is (gone, or of another pid namespace)` };
  if (f.reading.at === undefined || f.now - f.reading.at > f.freshMs) return { kind: "unconfirmed" };
  const gpus = `${b.gpus.length === 1 ? "GPU" : "GPUs"} ${b.gpus.join(", ")}`;
  return { kind: "off_gpu", reason: `pid ${s.pid} is not on ${gpus} (nvidia-smi lists no memory of its process group): it is answering from the CPU, slowly` };
}
