/**
 * What a simulated engine kind declares, and what it sees of the server. Each
 * kind (vllm.ts, llamacpp.ts, ollama.ts) is one `KindSpec`: its endpoints as a
 * route table, its words (error bodies, stderr lines), how it reads `stream`,
 * and its per-server runtime (start-up, model loading, slots, how it dies of
 * out of memory). The server core dispatches by these tables and never asks
 * which kind it runs.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Fault } from "../faults.ts";
import type { StreamFormat, Usage } from "../generate.ts";
import type { SimGpuHooks } from "../gpu-hooks.ts";
import type { InferenceHost } from "../inference.ts";
import type { InfoState } from "../info.ts";
import type { SimBackendOptions, SimKind } from "../options.ts";

export interface ErrorBody {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Record<string, string>;
}

/** "loading" only shows where the port answers during load (llama-server); "engine_dead": vLLM's engine child died. */
export type SimPhase = "loading" | "ready" | "engine_dead";

export type HttpMethod = "GET" | "HEAD" | "POST";

/** The server as a kind sees it. */
export interface SimContext {
  readonly options: SimBackendOptions;
  readonly gpu?: SimGpuHooks;
  readonly phase: SimPhase;
  setPhase(phase: SimPhase): void;
  fault(): Fault;
  /** Replaces the fault as an effect of itself (a runner that died is gone): counters stay, nothing is scheduled. */
  settleFault(fault: Fault): void;
  info(): InfoState;
  /** Whether any generation is running. */
  busy(): boolean;
  log(line: string): void;
  logErr(lines: readonly string[]): void;
  /** Dies at once: by a signal, or with an exit status and no clean-up. */
  die(how: { code?: number; signal?: NodeJS.Signals }): void;
  listen(): Promise<void>;
  close(): Promise<void>;
}

/** One request to a kind's own endpoint. */
export interface RouteCall {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly url: URL;
  readonly sim: SimContext;
}

/** A read parsed body of an inference request. */
export type RequestBody = Record<string, unknown>;

/** What an answer's text carries besides the tokens. */
export interface GenerationText {
  readonly model: string;
  readonly created: number;
  /** performance.now() when the generation started. */
  readonly started: number;
  readonly includeUsage: boolean;
  /** The answer is this tool call (a chat request with `tools`, on an API that answers with them). */
  readonly toolCall?: { readonly id: string; readonly name: string };
}

/** How one inference endpoint reads a request and writes its answer: OpenAI's chat, completions, embeddings; Ollama's native API. */
export type InferenceApi = GenerationApi | EmbeddingApi;

interface ApiCommon {
  /** Ollama's native API streams unless told not to; the OpenAI-compatible endpoints stream as the kind reads `stream`. */
  readonly streamsByDefault: boolean;
  /** The content type of a stream (also what a wedged stream's headers say). */
  readonly streamContentType: string;
}

export interface GenerationApi extends ApiCommon {
  readonly type: "generation";
  /** Whether the request is a conversation (messages) rather than a prompt. */
  readonly chat: boolean;
  /** Whether a request with `tools` is answered with a tool call (OpenAI chat). */
  readonly toolCalls?: boolean;
  /** The prompt of a prompt request. */
  prompt(body: RequestBody): string;
  /** Ollama: a request with nothing to generate only loads the model; this is its answer. */
  warmUp?(body: RequestBody, model: string): unknown;
  stream(kind: KindSpec, t: GenerationText): StreamFormat;
  whole(kind: KindSpec, t: GenerationText & { readonly text: string; readonly finishReason: string; readonly usage: Usage }): unknown;
}

export interface EmbeddingApi extends ApiCommon {
  readonly type: "embedding";
  answer(body: RequestBody, model: string, vectors: readonly number[][], tokens: number): unknown;
}

/**
 * An endpoint: its own handler, the shared inference pipeline speaking an API's wire format, or an
 * inference endpoint of its own that uses the server's fault gate and counters (Anthropic's Messages API).
 */
export type Route = {
  readonly method: HttpMethod;
  readonly path: string;
  /** Answers while the model loads even where the kind refuses other requests then (llama-server's health). */
  readonly duringLoad?: boolean;
} & ({ handle(call: RouteCall): void | Promise<void> } | { readonly api: InferenceApi } | { serve(h: InferenceHost, req: IncomingMessage, res: ServerResponse): Promise<void> });

/** A kind's state and behaviour inside one server. */
export interface KindRuntime {
  /** Loaded models and when each expires (Ollama loads lazily; the others report none). */
  readonly loaded: ReadonlyMap<string, number>;
  /** Generations holding a slot (llama-server's parallel slots); 0 where there are none. */
  readonly busySlots: number;
  /** Starts the server as the real one starts: resolves with an exit status when the start failed, undefined once serving. */
  boot(env: BootEnv): Promise<number | undefined>;
  /** Before an inference request is answered: Ollama loads its model. An error body fails the request. */
  prepare?(model: string, body: RequestBody): Promise<ErrorBody | undefined>;
  /** Waits for a slot before generating (llama-server). */
  acquire?(): Promise<void>;
  release?(): void;
  /** After a generation (Ollama keeps the model loaded for its keep-alive from now). */
  finished?(model: string, body: RequestBody): void;
  /** Out of memory while serving this request: how this kind dies of it. */
  runtimeOom(res: ServerResponse): Promise<void>;
  /**
   * Where the model runs (the on_cpu fault): on the CPU the process that holds
   * the model drops its GPU memory and keeps answering; back on the GPU it
   * takes it again. Told before boot too (the start's fault): the load then
   * goes to the CPU.
   */
  onCpu(cpu: boolean): Promise<void>;
  close(): void;
}

/** What the process around the server offers a kind's start-up. */
export interface BootEnv {
  /** True once the process is shutting down. */
  stopping(): boolean;
  /** Registers how to stop this kind's child processes when the process ends (vLLM's engine). */
  onStop(stop: () => Promise<void>): void;
}

export interface KindSpec {
  readonly kind: SimKind;
  readonly version: string;
  /** The process name under which the server itself holds GPU memory; undefined where a child holds it (vLLM's engine). */
  readonly gpuProcessName?: string;
  /** Every endpoint but the simulator's /_sim/ ones. */
  readonly routes: readonly Route[];
  /** Methods answered 503 Loading model while the model loads, except on routes marked duringLoad. */
  readonly refusedWhileLoading: readonly HttpMethod[];
  /** What the server answers for an endpoint it does not have. */
  notFound(res: ServerResponse): void;
  /** Whether an OpenAI-compatible endpoint streams for this `stream` value. */
  wantsStream(stream: unknown): boolean;
  /** Whether a chat ending with an assistant message continues it (prefill). */
  continuesFinalMessage(body: RequestBody): boolean;
  /** OpenAI chat answers: the role in every stream chunk, extra fields of a whole answer. */
  readonly openaiChat: { readonly roleEveryChunk: boolean; readonly extra: Readonly<Record<string, unknown>> };
  /** An entry of /v1/models. */
  modelEntry(id: string, s: InfoState): unknown;
  apiError(status: number, message: string): ErrorBody;
  /** The error for a model this server does not serve; undefined where any name is served (llama-server). */
  unknownModel(model: string): ErrorBody | undefined;
  contextLengthError(promptTokens: number, maxTokens: number, context: number): ErrorBody;
  /** stderr lines of an out-of-memory death at load. */
  oomAtLoadLines(gpu: number, wantMib: number, freeMib: number, totalMib: number, model: string): string[];
  /** stderr lines of an out-of-memory death while serving. */
  oomAtRuntimeLines(gpu: number, totalMib: number): string[];
  /** The line printed once the server accepts requests. */
  listeningLine(host: string, port: number): string;
  /** The line printed when it is told to stop. */
  shutdownLine(): string;
  /** The kind's runtime inside one server. */
  attach(sim: SimContext): KindRuntime;
}
