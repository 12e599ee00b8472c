/**
 * Why a backend process ended, from its exit status, its signal and the last
 * lines it printed. Pure; the markers are what vLLM, Ollama and llama.cpp
 * really print (REFERENCE.md).
 */

export type ExitClass =
  /** Stopped on purpose (operator, reload, shutdown). */
  | "stopped"
  /** Exit status 0, not asked for. */
  | "clean_exit"
  /** GPU (CUDA) out of memory. */
  | "oom"
  /** Another process holds the GPU memory the server wanted at start. */
  | "gpu_occupied"
  /** Killed by the kernel's OOM killer (SIGKILL under host memory pressure). */
  | "oom_killed"
  /** Killed by a signal someone else sent. */
  | "killed"
  /** Not ready within startup_timeout; llmsup stopped it. */
  | "startup_timeout"
  /** Deep liveness probes failed; llmsup restarted it. */
  | "wedged"
  /** Its readiness check reported a definite failure (a model that cannot load); llmsup stopped it. */
  | "start_failed"
  /** Could not be started at all (missing program, unreadable secret). */
  | "spawn_failed"
  /** A failover drill broke the process on purpose (`ExitRecord.drill` names it); the restart budget is untouched. */
  | "drill"
  /** Any other non-zero exit or fatal signal. */
  | "crash";

export interface ExitFacts {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Last lines of its output, newest last. */
  readonly lastLines: readonly string[];
  /** llmsup asked it to stop, and why. */
  readonly requested?: "stop" | "startup_timeout" | "wedged" | "start_failed";
  /** The host was short of memory when it died. */
  readonly hostMemoryPressure?: boolean;
}

export interface Classification {
  readonly class: ExitClass;
  /** One line an operator can act on. */
  readonly reason: string;
  /** The output line that decided it, if any. */
  readonly evidence?: string;
}

const GPU_OCCUPIED = [/Free memory on device .* on startup is less than desired GPU memory utilization/i];

const OOM = [
  /torch\.OutOfMemoryError/,
  /CUDA out of memory/i,
  /CUDA error: out of memory/i,
  /cudaMalloc failed: out of memory/i,
  /No available memory for the cache blocks/i,
  /out of device memory/i,
  /\bout of memory\b/i,
  /failed to allocate/i,
  /allocation failed/i,
  /not enough memory/i,
  /insufficient memory/i,
];

/**
 * What says a process could not get the memory it needed, in any text: the OOM
 * markers, and Ollama's refusal to load a model that fits neither the GPU nor
 * the host ("model requires more system memory"). Ollama's load failures come
 * back through its API, not as an exit: they reach llmsup as a readiness failure.
 */
const MEMORY_SHORT = [...OOM, /requires more system memory/i];

/** The out-of-memory marker in `text`, or undefined. */
export function memoryShortMarker(text: string): string | undefined {
  for (const p of MEMORY_SHORT) {
    const m = p.exec(text);
    if (m) return m[0];
  }
  return undefined;
}

/** The newest line matching the most specific pattern (patterns are in order of specificity). */
function find(lines: readonly string[], patterns: readonly RegExp[]): string | undefined {
  for (const p of patterns) {
    for (let i = lines.length - 1; i >= 0; i--) if (p.test(lines[i]!)) return lines[i]!.trim();
  }
  return undefined;
}

function status(f: ExitFacts): string {
  // An adopted process is not this daemon's child: how it ended is not told to us.
  return f.signal ? `signal ${f.signal}` : f.code === null ? "exit status unknown: it was adopted, not started, by this llmsup" : `exit status ${f.code}`;
}

export function classifyExit(f: ExitFacts): Classification {
  if (f.requested === "stop") return { class: "stopped", reason: `stopped on request (${status(f)})` };
  if (f.requested === "startup_timeout") return { class: "startup_timeout", reason: `not ready within startup_timeout; stopped (${status(f)})` };
  if (f.requested === "start_failed") return { class: "start_failed", reason: `readiness failed; stopped (${status(f)})` };
  if (f.requested === "wedged") return { class: "wedged", reason: `liveness probes failed while /health answered; restarted (${status(f)})` };
  const occupied = find(f.lastLines, GPU_OCCUPIED);
  if (occupied) return { class: "gpu_occupied", reason: "GPU memory is held by another process", evidence: occupied };
  const oom = find(f.lastLines, OOM);
  if (oom) return { class: "oom", reason: `GPU out of memory (${status(f)})`, evidence: oom };
  if (f.signal === "SIGKILL") {
    return f.hostMemoryPressure
      ? { class: "oom_killed", reason: "killed by SIGKILL while the host was short of memory (kernel OOM killer)" }
      : { class: "killed", reason: "killed by SIGKILL from outside llmsup" };
  }
  if (f.code === 0 && !f.signal) return { class: "clean_exit", reason: "exited with status 0 without being asked to" };
  return { class: "crash", reason: `crashed (${status(f)})`, evidence: f.lastLines.at(-1)?.trim() };
}

/** Whether this end counts as a failed start for the restart budget. */
export function countsAsFailure(c: ExitClass): boolean {
  return c !== "stopped" && c !== "gpu_occupied" && c !== "drill";
}
