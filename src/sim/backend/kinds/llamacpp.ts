/**
 * llama.cpp's llama-server, simulated. The port answers during load: /health
 * is 503 Loading model, as is every other GET, then 200 {"status":"ok"}.
 * Generations wait for one of its parallel slots; it serves any model name.
 * It holds the GPU memory itself and aborts on a CUDA error.
 */
import type { ServerResponse } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { gateLoad } from "../fault-gate.ts";
import { errorJson, json, send } from "../http.ts";
import { createdOf, llamacppMetrics, llamacppProps, llamacppSlots, modelsList } from "../info.ts";
import { openaiChat, openaiCompletion, openaiEmbedding, OPENAI_INFERENCE_ROUTES } from "../openai-api.ts";
import { abortOfOom, DEFAULT_TOTAL_MIB, loadingModel } from "./common.ts";
import type { BootEnv, ErrorBody, KindRuntime, KindSpec, RouteCall, SimContext } from "./kind.ts";

const VERSION = "b6500";

function apiError(status: number, message: string): ErrorBody {
  const type = status === 400 ? "invalid_request_error" : status === 404 ? "not_found_error" : status === 503 ? "unavailable_error" : "server_error";
  return { status, body: { error: { code: status, message, type } } };
}

const NO_MODELS: ReadonlyMap<string, number> = new Map();

/** The parallel slots, and the start: listen at once, then load the model. */
class LlamacppRuntime implements KindRuntime {
  readonly loaded = NO_MODELS;
  busySlots = 0;
  private readonly waiters: (() => void)[] = [];
  /** The model runs on the CPU (the on_cpu fault): loaded there, no GPU memory held. */
  private cpu = false;
  private readonly sim: SimContext;

  constructor(sim: SimContext) {
    this.sim = sim;
  }

  async boot(_env: BootEnv): Promise<number | undefined> {
    const { sim } = this;
    const { options, gpu } = sim;
    await sim.listen();
    sim.log(`srv    load_model: loading model '${options.models[0]}'`);
    const load = gateLoad(options.fault, options.loadMs);
    await sleep(load.ms);
    const onCpu = this.cpu;
    if (onCpu) {
      sim.log("load_tensors: offloaded 0/33 layers to GPU");
      sim.log(`load_tensors:   CPU_Mapped model buffer size = ${options.modelMib.toFixed(2)} MiB`);
    } else {
      const room = load.oom ? { gpu: options.gpus[0] ?? 0, freeMib: 0, totalMib: (await gpu?.totalMib()) ?? DEFAULT_TOTAL_MIB } : await gpu?.checkRoom(options.modelMib);
      if (room) {
        sim.logErr(LLAMACPP.oomAtLoadLines(room.gpu, options.modelMib, room.freeMib, room.totalMib, options.models[0]!));
        await sim.close();
        return 1;
      }
      await gpu?.hold(options.modelMib);
    }
    sim.setPhase("ready");
    // Told to move while it loaded: it moves now.
    if (this.cpu !== onCpu) await this.onCpu(this.cpu);
    sim.log("srv  update_slots: all slots are idle");
    return undefined;
  }

  async acquire(): Promise<void> {
    while (this.busySlots >= this.sim.options.slots) await new Promise<void>((r) => this.waiters.push(r));
    this.busySlots++;
  }

  release(): void {
    this.busySlots--;
    this.waiters.shift()?.();
  }

  runtimeOom(res: ServerResponse): Promise<void> {
    return abortOfOom(this.sim, LLAMACPP, res);
  }

  async onCpu(cpu: boolean): Promise<void> {
    this.cpu = cpu;
    // Before the load is done, the load itself goes where it is told.
    if (this.sim.phase !== "ready") return;
    await this.sim.gpu?.hold(cpu ? 0 : this.sim.options.modelMib);
  }

  close(): void {}
}

function health({ res, sim }: RouteCall): void {
  return sim.phase === "loading" ? errorJson(res, loadingModel()) : json(res, 200, { status: "ok" });
}

function slots({ res, url, sim }: RouteCall): void {
  if (url.searchParams.get("fail_on_no_slot") === "1" && sim.info().busySlots >= sim.options.slots)
    return errorJson(res, { status: 503, body: { error: { code: 503, message: "no slot available", type: "unavailable_error" } } });
  return json(res, 200, llamacppSlots(sim.info()));
}

function metrics({ res, sim }: RouteCall): void {
  if (!sim.options.metrics) return errorJson(res, { status: 501, body: { error: { code: 501, message: "This server does not support metrics endpoint. Start it with `--metrics`", type: "not_supported_error" } } });
  return send(res, 200, llamacppMetrics(sim.info()), "text/plain; version=0.0.4");
}

const models = ({ res, sim }: RouteCall) => json(res, 200, modelsList(sim.info(), LLAMACPP.modelEntry));

export const LLAMACPP: KindSpec = {
  kind: "llamacpp",
  version: VERSION,
  gpuProcessName: "/usr/local/bin/llama-server",
  routes: [
    { method: "GET", path: "/health", duringLoad: true, handle: health },
    { method: "GET", path: "/v1/health", duringLoad: true, handle: health },
    { method: "GET", path: "/v1/models", handle: models },
    { method: "GET", path: "/models", handle: models },
    { method: "GET", path: "/slots", handle: slots },
    { method: "GET", path: "/props", handle: ({ res, sim }) => json(res, 200, llamacppProps(sim.info(), VERSION)) },
    { method: "GET", path: "/metrics", handle: metrics },
    ...OPENAI_INFERENCE_ROUTES,
    { method: "POST", path: "/chat/completions", api: openaiChat },
    { method: "POST", path: "/completions", api: openaiCompletion },
    { method: "POST", path: "/embeddings", api: openaiEmbedding },
  ],
  refusedWhileLoading: ["GET"],
  notFound: (res) => send(res, 404, "File Not Found", "text/plain"),
  wantsStream: (stream) => stream === true,
  continuesFinalMessage: () => true,
  openaiChat: { roleEveryChunk: false, extra: {} },
  modelEntry: (id, s) => ({ id, object: "model", created: createdOf(s), owned_by: "llamacpp", meta: { n_ctx_train: s.contextTokens, n_vocab: 128256 } }),
  apiError,
  unknownModel: () => undefined,
  contextLengthError: (promptTokens, _maxTokens, context) => ({
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
  }),
  oomAtLoadLines: (gpu, wantMib, _freeMib, _totalMib, model) => [
    `ggml_backend_cuda_buffer_type_alloc_buffer: allocating ${wantMib.toFixed(2)} MiB on device ${gpu}: cudaMalloc failed: out of memory`,
    `alloc_tensor_range: failed to allocate CUDA${gpu} buffer of size ${wantMib * 1024 * 1024}`,
    `llama_model_load: error loading model: unable to allocate CUDA${gpu} buffer`,
    `llama_model_load_from_file_impl: failed to load model`,
    `common_init_from_params: failed to load model '${model}'`,
    `srv    load_model: failed to load model, '${model}'`,
    `main: exiting due to model loading error`,
  ],
  oomAtRuntimeLines: (gpu) => [`CUDA error: out of memory`, `  current device: ${gpu}, in function ggml_backend_cuda_graph_compute at ggml-cuda.cu:2716`, `ggml-cuda.cu:75: CUDA error`],
  listeningLine: (host, port) => `main: server is listening on http://${host}:${port} - starting the main loop`,
  shutdownLine: () => "srv    operator(): operator(): cleaning up before exit...",
  attach: (sim) => new LlamacppRuntime(sim),
};
