/** Words and behaviour more than one kind, or the server core, uses. */
import type { ServerResponse } from "node:http";
import type { ErrorBody, KindSpec, SimContext } from "./kind.ts";

/** llama-server's answer while its model loads; the core answers inference requests with it in that phase. */
export function loadingModel(): ErrorBody {
  return { status: 503, body: { error: { code: 503, message: "Loading model", type: "unavailable_error" } } };
}

/** vLLM's API server once its engine child is gone (the only kind with an engine apart from its API server). */
export const ENGINE_DIED_MESSAGE = "EngineCore encountered an issue. See stack trace (above) for the root cause.";

/** The size of the first GPU when no GPU state is simulated (an 80 GiB card). */
export const DEFAULT_TOTAL_MIB = 81559;

/** Out of memory while serving, where the server process itself holds the GPU memory: it prints the CUDA error and aborts mid-request. */
export async function abortOfOom(sim: SimContext, kind: KindSpec, res: ServerResponse): Promise<void> {
  const total = (await sim.gpu?.totalMib().catch(() => undefined)) ?? DEFAULT_TOTAL_MIB;
  sim.logErr(kind.oomAtRuntimeLines(sim.options.gpus[0] ?? 0, total));
  res.socket?.destroy();
  sim.die({ signal: "SIGABRT" });
}

/**
 * A model that does not continue a final assistant message (no prefill): the 400 Anthropic's API,
 * Bedrock and hosted OpenAI-compatible proxies answer, in each kind's error body.
 */
export const PREFILL_REJECTED_MESSAGE = "This model does not support assistant message prefill. The conversation must end with a user message.";
