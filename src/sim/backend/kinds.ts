/**
 * What each real server prints on stderr when it runs out of memory, looked up
 * by kind name: for callers that hold a name rather than a spec (the
 * supervisor's log-classification tests). Each kind's own words live in
 * kinds/<kind>.ts.
 */
import { KINDS } from "./kinds/index.ts";
import type { SimKind } from "./options.ts";

export { vllmFreeMemoryLines } from "./kinds/vllm.ts";

/** stderr lines of an out-of-memory death at load. */
export function oomAtLoadLines(kind: SimKind, gpu: number, wantMib: number, freeMib: number, totalMib: number, model: string): string[] {
  return KINDS[kind].oomAtLoadLines(gpu, wantMib, freeMib, totalMib, model);
}

/** stderr lines of an out-of-memory death while serving. */
export function oomAtRuntimeLines(kind: SimKind, gpu: number, totalMib: number): string[] {
  return KINDS[kind].oomAtRuntimeLines(gpu, totalMib);
}
