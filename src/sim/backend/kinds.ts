/**
 * What each real server says: error bodies, fatal messages on stderr, start-up
 * lines. Texts follow the real servers (see REFERENCE.md) so that log
 * classification is exercised on what operators really see.
 */
import type { SimKind } from "./options.ts";

export interface ErrorBody {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Record<string, string>;
}

function openaiStyle(status: number, message: string, type: string, param: string | null = null): ErrorBody {
  return { status, body: { error: { message, type, param, code: status } } };
}

/** An error as the kind's OpenAI-compatible endpoints shape it. */
export function apiError(kind: SimKind, status: number, message: string): ErrorBody {
  switch (kind) {
    case "vllm": {
      const type = status === 400 ? "BadRequestError" : status === 404 ? "NotFoundError" : status === 429 ? "RateLimitError" : status === 503 ? "ServiceUnavailableError" : "InternalServerError";
      return openaiStyle(status, message, type);
    }
    case "llamacpp": {
      const type = status === 400 ? "invalid_request_error" : status === 404 ? "not_found_error" : status === 503 ? "unavailable_error" : "server_error";
      return { status, body: { error: { code: status, message, type } } };
    }
    case "ollama":
      return { status, body: { error: { message, type: status >= 500 ? "api_error" : "invalid_request_error", param: null, code: null } } };
  }
}

/**
 * Whether a request asks to stream, as the kind reads `stream`: Ollama's own API
 * streams unless told not to; vLLM's request models (pydantic, lax mode) take
 * "true", "yes", "on", "1", 1 and the like for true; llama-server and Ollama's
 * OpenAI API stream only on a JSON true.
 */
export function wantsStream(kind: SimKind, ollamaNative: boolean, stream: unknown): boolean {
  if (ollamaNative) return stream !== false;
  if (kind === "vllm") return stream === true || stream === 1 || (typeof stream === "string" && /^(?:true|yes|on|1|t|y)$/i.test(stream));
  return stream === true;
}

/** The kind's own context-length error for a prompt of `promptTokens` asking for `maxTokens` more. */
export function contextLengthError(kind: SimKind, promptTokens: number, maxTokens: number, context: number): ErrorBody {
  switch (kind) {
    case "vllm":
      return openaiStyle(
        400,
        `You passed ${promptTokens} input tokens and requested ${maxTokens} output tokens. However, the model's context length is only ${context} tokens, ` +
          `resulting in a maximum input length of ${Math.max(0, context - maxTokens)} tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value=${promptTokens})`,
        "BadRequestError",
        "input_tokens",
      );
    case "llamacpp":
      return {
        status: 400,
        body: {
          error: {
            code: 400,
            message: "the request exceeds the available context size, try increasing it",
            type: "exceed_context_size_error",
            n_prompt_tokens: promptTokens,
            n_ctx: context,
          },
        },
      };
    case "ollama":
      return apiError("ollama", 400, `prompt too long; exceeded max context length by ${promptTokens + maxTokens - context} tokens`);
  }
}

export function modelNotFound(kind: SimKind, model: string): ErrorBody {
  switch (kind) {
    case "vllm":
      return apiError("vllm", 404, `The model \`${model}\` does not exist.`);
    case "ollama":
      return apiError("ollama", 404, `model "${model}" not found, try pulling it first`);
    case "llamacpp":
      return apiError("llamacpp", 404, `model '${model}' not found`);
  }
}

export function loadingModel(): ErrorBody {
  return { status: 503, body: { error: { code: 503, message: "Loading model", type: "unavailable_error" } } };
}

const GIB = 1024;
const gib = (mib: number) => (mib / GIB).toFixed(2);

/** stderr lines of an out-of-memory death at load. */
export function oomAtLoadLines(kind: SimKind, gpu: number, wantMib: number, freeMib: number, totalMib: number, model: string): string[] {
  switch (kind) {
    case "vllm":
      return [
        `ERROR [core.py:700] EngineCore failed to start.`,
        `ERROR [core.py:700] Traceback (most recent call last):`,
        `ERROR [core.py:700] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate ${gib(wantMib)} GiB. GPU ${gpu} has a total capacity of ${gib(totalMib)} GiB of which ${gib(freeMib)} GiB is free. ` +
          `Including non-PyTorch memory, this process has ${gib(totalMib - freeMib)} GiB memory in use. Of the allocated memory ${gib(totalMib - freeMib)} GiB is allocated by PyTorch, and 0.00 GiB is reserved by PyTorch but unallocated.`,
        `RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}`,
      ];
    case "llamacpp":
      return [
        `ggml_backend_cuda_buffer_type_alloc_buffer: allocating ${wantMib.toFixed(2)} MiB on device ${gpu}: cudaMalloc failed: out of memory`,
        `alloc_tensor_range: failed to allocate CUDA${gpu} buffer of size ${wantMib * 1024 * 1024}`,
        `llama_model_load: error loading model: unable to allocate CUDA${gpu} buffer`,
        `llama_model_load_from_file_impl: failed to load model`,
        `common_init_from_params: failed to load model '${model}'`,
        `srv    load_model: failed to load model, '${model}'`,
        `main: exiting due to model loading error`,
      ];
    case "ollama":
      return [
        `ggml_backend_cuda_buffer_type_alloc_buffer: allocating ${wantMib.toFixed(2)} MiB on device ${gpu}: cudaMalloc failed: out of memory`,
        `time=${new Date().toISOString()} level=ERROR source=sched.go:460 msg="error loading llama server" error="llama runner process has terminated: cudaMalloc failed: out of memory"`,
      ];
  }
}

/** stderr lines of an out-of-memory death while serving. */
export function oomAtRuntimeLines(kind: SimKind, gpu: number, totalMib: number): string[] {
  switch (kind) {
    case "vllm":
      return [
        `ERROR [core.py:934] EngineCore encountered a fatal error.`,
        `ERROR [core.py:934] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU ${gpu} has a total capacity of ${gib(totalMib)} GiB of which 0.31 GiB is free.`,
        `ERROR [async_llm.py:420] EngineCore encountered an issue. See stack trace (above) for the root cause.`,
      ];
    case "llamacpp":
      return [`CUDA error: out of memory`, `  current device: ${gpu}, in function ggml_backend_cuda_graph_compute at ggml-cuda.cu:2716`, `ggml-cuda.cu:75: CUDA error`];
    case "ollama":
      return [`CUDA error: out of memory`, `time=${new Date().toISOString()} level=ERROR source=server.go:771 msg="llama runner terminated" error="exit status 2"`];
  }
}

/** vLLM's refusal to start when another process holds the memory it wants. */
export function vllmFreeMemoryLines(freeMib: number, totalMib: number, utilization: number): string[] {
  return [
    `ERROR [core.py:700] EngineCore failed to start.`,
    `ValueError: Free memory on device (${gib(freeMib)}/${gib(totalMib)} GiB) on startup is less than desired GPU memory utilization ` +
      `(${utilization}, ${gib(totalMib * utilization)} GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.`,
    `RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}`,
  ];
}

/** The line a server prints once it accepts requests. */
export function listeningLine(kind: SimKind, host: string, port: number): string {
  switch (kind) {
    case "vllm":
      return `INFO:     Uvicorn running on http://${host}:${port} (Press CTRL+C to quit)`;
    case "llamacpp":
      return `main: server is listening on http://${host}:${port} - starting the main loop`;
    case "ollama":
      return `time=${new Date().toISOString()} level=INFO source=routes.go:1339 msg="Listening on ${host}:${port} (version 0.12.6)"`;
  }
}

export const SIM_VERSIONS: Record<SimKind, string> = { vllm: "0.11.0", ollama: "0.12.6", llamacpp: "b6500" };
