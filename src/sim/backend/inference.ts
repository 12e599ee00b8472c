/**
 * The inference pipeline every kind shares: read and check the request, pass
 * the fault gate, let the kind prepare (Ollama loads its model), then embed or
 * generate and write the answer in the endpoint's wire format.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { asksToContinue, canonicalToolCall, canonicalTokens, chatKey, contentText, countTokens, planAnswer, promptTokensOfChat, type ChatMessage } from "./answer.ts";
import { echoAuthMessage, type GateDecision, type GatePoint } from "./fault-gate.ts";
import { degradeAnswer, newId, usageOf, writeStream, writeWhole, type Generation } from "./generate.ts";
import { errorJson, json, readBody } from "./http.ts";
import { simEmbedding } from "./semantic-embedding.ts";
import { ENGINE_DIED_MESSAGE, loadingModel, PREFILL_REJECTED_MESSAGE } from "./kinds/common.ts";
import type { EmbeddingApi, GenerationApi, InferenceApi, KindRuntime, KindSpec, RequestBody, SimContext } from "./kinds/kind.ts";
import type { SimBackendOptions } from "./options.ts";

/** What the server counts of inference, for /metrics and /_sim/state. */
export class InferenceStats {
  running = 0;
  requests = 0;
  requestsOk = 0;
  promptTokensTotal = 0;
  generationTokensTotal = 0;
  ttftSum = 0;
  ttftCount = 0;
  /** The last inference request body, for tests of what a router sent. */
  lastRequest?: unknown;
}

/** The server as the pipeline needs it. */
export interface InferenceHost extends SimContext {
  readonly spec: KindSpec;
  readonly runtime: KindRuntime;
  readonly stats: InferenceStats;
  /** Consults the fault gate at `point`, keeping its counters. */
  gate(point: GatePoint): GateDecision;
}

export async function serveInference(h: InferenceHost, req: IncomingMessage, res: ServerResponse, api: InferenceApi): Promise<void> {
  const { spec, runtime } = h;
  let raw: Buffer;
  try {
    raw = await readBody(req);
  } catch {
    return errorJson(res, spec.apiError(413, "request body too large"));
  }
  if (h.phase === "loading") return errorJson(res, loadingModel());
  if (h.phase === "engine_dead") return errorJson(res, spec.apiError(500, ENGINE_DIED_MESSAGE));
  let body: RequestBody;
  try {
    body = JSON.parse(raw.toString("utf8")) as RequestBody;
    if (!body || typeof body !== "object" || Array.isArray(body)) throw new Error("not an object");
  } catch {
    return errorJson(res, spec.apiError(400, "Invalid JSON in request body"));
  }
  h.stats.requests++;
  h.stats.lastRequest = body;
  const model = typeof body.model === "string" && body.model !== "" ? body.model : h.options.models[0]!;
  const unknown = h.options.models.includes(model) ? undefined : spec.unknownModel(model);
  if (unknown) return errorJson(res, unknown);

  const stream = api.streamsByDefault ? body.stream !== false : spec.wantsStream(body.stream);
  const admitted = h.gate({ at: "admit", stream });
  switch (admitted.act) {
    case "wedge":
      // Health stays fine; the request never progresses. Streams get their headers (as FastAPI sends them) and nothing else.
      if (admitted.streamHeaders) {
        res.writeHead(200, { "content-type": api.streamContentType });
        res.flushHeaders();
      }
      return;
    case "rate_limit": {
      const e = spec.apiError(429, "Too many requests: rate limit exceeded, retry later");
      return errorJson(res, { ...e, headers: admitted.retryAfter === null ? {} : { "retry-after": String(admitted.retryAfter) } });
    }
    case "status":
      return errorJson(res, spec.apiError(admitted.code, admitted.echoAuth ? echoAuthMessage(admitted.message, req.headers.authorization) : admitted.message));
    case "oom":
      return runtime.runtimeOom(res);
  }

  const failed = await runtime.prepare?.(model, body);
  if (failed) return errorJson(res, failed);
  if (api.type === "embedding") return embed(res, body, model, api, h.options);
  const warm = api.warmUp?.(body, model);
  if (warm !== undefined) return json(res, 200, warm);

  await runtime.acquire?.();
  h.stats.running++;
  const abort = new AbortController();
  res.on("close", () => abort.abort());
  try {
    await generate(h, res, body, model, api, stream, abort.signal);
  } finally {
    h.stats.running--;
    runtime.release?.();
    runtime.finished?.(model, body);
  }
}

function embed(res: ServerResponse, body: RequestBody, model: string, api: EmbeddingApi, options: SimBackendOptions): void {
  const input = body.input;
  const inputs = Array.isArray(input) ? input.map(String) : [String(input ?? "")];
  const vectors = inputs.map((t) => simEmbedding(options, t));
  const tokens = inputs.reduce((n, t) => n + countTokens(t), 0);
  return json(res, 200, api.answer(body, model, vectors, tokens));
}

async function generate(h: InferenceHost, res: ServerResponse, body: RequestBody, model: string, api: GenerationApi, stream: boolean, signal: AbortSignal): Promise<void> {
  const { spec, stats } = h;
  const options = h.options;
  const messages = (Array.isArray(body.messages) ? body.messages : []) as ChatMessage[];
  const prompt = api.chat ? "" : api.prompt(body);
  const params = (body.options ?? {}) as Record<string, unknown>;
  const maxTokensRaw = body.max_completion_tokens ?? body.max_tokens ?? params.num_predict ?? body.n_predict;
  const maxTokens = typeof maxTokensRaw === "number" && maxTokensRaw >= 0 ? maxTokensRaw : undefined;

  // Assistant prefill: a chat ending with the assistant's message continues it, where the kind does.
  // Without prefill, a cut-off assistant turn followed by a user turn asking to continue it is followed as asked.
  const last = messages[messages.length - 1];
  const before = messages[messages.length - 2];
  const finalAssistant = api.chat && last?.role === "assistant";
  const continues = finalAssistant && spec.continuesFinalMessage(body);
  const asked = api.chat && !continues && last?.role === "user" && before?.role === "assistant" && asksToContinue(contentText(last.content));
  const partial = continues ? last : asked ? before : undefined;
  const conversation = continues ? messages.slice(0, -1) : asked ? messages.slice(0, -2) : messages;
  const key = api.chat ? chatKey(conversation) : `prompt\u0000${prompt}`;
  const promptTokens = api.chat ? promptTokensOfChat(messages) : countTokens(prompt) + 1;
  const tools = api.toolCalls && Array.isArray(body.tools) && body.tools.length > 0 && body.tool_choice !== "none" ? (body.tools as unknown[]) : undefined;
  const call = tools ? canonicalToolCall(key, tools) : undefined;
  const planned = call ? { tokens: call.pieces, finishReason: "tool_calls" as const } : planAnswer(key, maxTokens, partial ? contentText(partial.content) : "");

  const wanted = maxTokens ?? canonicalTokens(key).length;
  const decision = h.gate({ at: "generate", finalAssistant });
  if (decision.act === "reject_prefill") return errorJson(res, spec.apiError(400, PREFILL_REJECTED_MESSAGE));
  if (decision.act !== "answer" || promptTokens + wanted > options.contextTokens) {
    return errorJson(res, spec.contextLengthError(promptTokens, wanted, options.contextTokens));
  }

  const plan = degradeAnswer(planned.tokens, planned.finishReason, decision.shape.degrade, maxTokens);
  const g: Generation = {
    tokens: plan.tokens,
    finishReason: plan.finishReason,
    promptTokens,
    ttftMs: options.ttftMs,
    intervalMs: 1000 / options.tokenRate,
    shape: decision.shape,
  };
  const t = {
    model,
    created: Math.floor(Date.now() / 1000),
    started: performance.now(),
    includeUsage: (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true,
    ...(call ? { toolCall: { id: newId("call"), name: call.name } } : {}),
  };
  if (stream) await writeStream(res, g, api.stream(spec, t), signal);
  else await writeWhole(res, g, () => api.whole(spec, { ...t, text: plan.tokens.join(""), finishReason: plan.finishReason, usage: usageOf(g) }), signal);

  if (!res.destroyed && res.writableFinished !== false) {
    stats.promptTokensTotal += promptTokens;
    stats.generationTokensTotal += plan.tokens.length;
    stats.requestsOk++;
    stats.ttftSum += h.fault().ttft_ms ?? options.ttftMs;
    stats.ttftCount++;
  }
}
