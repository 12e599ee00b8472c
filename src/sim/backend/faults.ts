/**
 * Faults a simulated backend can be told to show, at start (flags) and at run
 * time (POST /_sim/fault). One shape for both, validated the same way.
 */
import { z } from "zod";

const SIGNALS = ["SIGKILL", "SIGSEGV", "SIGABRT", "SIGTERM", "SIGBUS", "SIGILL"] as const;

export const faultSchema = z.strictObject({
  /** Die: with an exit code, or by a signal (SIGKILL leaves a vLLM engine child orphaned). */
  crash: z.strictObject({ exit_code: z.int().min(0).max(255).optional(), signal: z.enum(SIGNALS).optional(), after_ms: z.int().min(0).default(0) }).optional(),
  /** Out of memory at load (the start fails) or at run time (the next inference request dies with it). */
  oom: z.enum(["load", "runtime"]).optional(),
  /** Accept connections and never answer anything. */
  hang: z.boolean().optional(),
  /** Health says fine; inference requests never progress. */
  wedge: z.boolean().optional(),
  /** Time to first token, replacing the normal one. */
  ttft_ms: z.int().min(0).optional(),
  /** Stop sending after this many content tokens (for stall_ms, or forever). */
  stall_after: z.int().min(0).optional(),
  stall_ms: z.int().min(0).optional(),
  /** Drop the connection after this many content tokens. */
  cut_after: z.int().min(0).optional(),
  /** Send a malformed SSE chunk after this many content tokens (for all three stream faults, a tool-call answer's tokens are its argument pieces). */
  malformed_after: z.int().min(0).optional(),
  /**
   * Model failures (the answer is well-formed, the text is not): `loop_after` — after this many
   * tokens of the answer, repeat a span of it (its next six tokens) until max_tokens (240 without
   * one), finishing with "length"; `empty` — finish "stop" with no text; `refuse` — answer with a
   * refusal sentence (REFUSAL_TEXT); `garbage` — answer with U+FFFD replacement characters.
   */
  loop_after: z.int().min(0).optional(),
  empty: z.boolean().optional(),
  refuse: z.boolean().optional(),
  garbage: z.boolean().optional(),
  /**
   * Send the API's in-stream error event after this many content tokens and end the stream (Anthropic's
   * `event: error` with an overloaded_error; an OpenAI-style `data: {"error": …}` chunk on the other kinds).
   * A non-streamed answer is not affected.
   */
  error_after: z.int().min(0).optional(),
  /** End streams without the final `data: [DONE]` (Anthropic: without message_stop). */
  no_done: z.boolean().optional(),
  /**
   * Answer inference requests with this HTTP status: the next `count`, or a `fraction` of them, or all.
   * `echo_auth`: the error message also quotes the request's Authorization header and the key's head
   * and tail (as careless upstreams do in a 401), for tests that no credential gets past llmsup.
   */
  status: z
    .strictObject({ code: z.int().min(400).max(599), count: z.int().min(1).optional(), fraction: z.number().gt(0).max(1).optional(), message: z.string().optional(), echo_auth: z.boolean().optional() })
    .optional(),
  /** 429 for the next `count` (or all) inference requests, with Retry-After seconds (null: no header). */
  rate_limit: z.strictObject({ count: z.int().min(1).optional(), retry_after: z.number().min(0).nullable().default(1) }).optional(),
  /**
   * Refuse a chat that ends with the assistant's message (a model without assistant prefill):
   * 400 "This model does not support assistant message prefill. The conversation must end with a
   * user message." — Anthropic's, Bedrock's and hosted OpenAI-compatible proxies' wording.
   */
  reject_prefill: z.boolean().optional(),
  /** Reject inference requests with the server's own context-length error. */
  context_error: z.boolean().optional(),
  /**
   * The model runs on the CPU (a CPU build, a CUDA that failed to initialise,
   * no layers offloaded): the process holds no GPU memory — its entry in the
   * simulated GPU state is gone — and keeps answering. At start it loads onto
   * the CPU (no room on the GPU needed); set at run time it leaves the GPU,
   * and takes its memory again when the fault is cleared.
   */
  on_cpu: z.boolean().optional(),
  /** Model load time (only meaningful at start). */
  load_ms: z.int().min(0).optional(),
});

export type Fault = z.output<typeof faultSchema>;

export function parseFault(input: unknown): { ok: true; fault: Fault } | { ok: false; error: string } {
  const r = faultSchema.safeParse(input);
  if (r.success) return { ok: true, fault: r.data };
  return { ok: false, error: r.error.issues.map((i) => `${i.path.join(".") || "(fault)"}: ${i.message}`).join("; ") };
}
