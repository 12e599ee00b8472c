/**
 * vLLM's OpenAI-compatible API server, simulated. The port stays closed while
 * the model loads (the API server listens once its engine child is ready);
 * /health is 200 with an empty body until the engine is noticed dead, then
 * 503. The engine child (engine.ts) holds the GPU memory.
 */
import type { ServerResponse } from "node:http";
import { realClock, within } from "../../../platform/clock.ts";
import { selfCommand } from "../../../platform/self.ts";
import { startEngineChild } from "../engine-child.ts";
import { gateLoad } from "../fault-gate.ts";
import { errorJson, json, send } from "../http.ts";
import { createdOf, modelsList, vllmMetrics } from "../info.ts";
import { OPENAI_INFERENCE_ROUTES } from "../openai-api.ts";
import { abortOfOom, ENGINE_DIED_MESSAGE } from "./common.ts";
import type { BootEnv, ErrorBody, KindRuntime, KindSpec, SimContext } from "./kind.ts";

const VERSION = "0.11.0";

/** What the API server passes its engine child (`llmsup sim vllm-engine JSON`). */
export interface EngineOptions {
  readonly gpuState?: string;
  readonly gpus: readonly number[];
  readonly utilization: number;
  readonly loadMs: number;
  readonly oomAtLoad: boolean;
  readonly model: string;
  /** Load onto the CPU: no GPU memory held (the on_cpu fault at start). */
  readonly onCpu: boolean;
}

const GIB = 1024;
const gib = (mib: number) => (mib / GIB).toFixed(2);

function openaiStyle(status: number, message: string, type: string, param: string | null = null): ErrorBody {
  return { status, body: { error: { message, type, param, code: status } } };
}

function apiError(status: number, message: string): ErrorBody {
  const type = status === 400 ? "BadRequestError" : status === 404 ? "NotFoundError" : status === 429 ? "RateLimitError" : status === 503 ? "ServiceUnavailableError" : "InternalServerError";
  return openaiStyle(status, message, type);
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

const NO_MODELS: ReadonlyMap<string, number> = new Map();

/** The API server's side of its engine child: started at boot; its death takes the API server down. */
class VllmRuntime implements KindRuntime {
  readonly loaded = NO_MODELS;
  readonly busySlots = 0;
  private readonly sim: SimContext;
  /** Makes the engine child die of a runtime OOM; set once the engine is up. */
  private engineOom?: () => void;
  /** Tells the engine child where the model runs; set once the engine is up. */
  private enginePlacement?: (cpu: boolean) => void;
  /** The model runs on the CPU (the on_cpu fault). */
  private cpu = false;

  constructor(sim: SimContext) {
    this.sim = sim;
  }

  async boot(env: BootEnv): Promise<number | undefined> {
    const { sim } = this;
    const options = sim.options;
    sim.log(`INFO: vLLM API server version ${VERSION} (simulated) model=${options.models[0]} max_model_len=${options.contextTokens}`);
    const load = gateLoad(options.fault, options.loadMs);
    const engineOptions: EngineOptions = {
      gpuState: options.gpuState,
      gpus: options.gpus,
      utilization: options.gpuMemoryUtilization,
      loadMs: load.ms,
      oomAtLoad: load.oom,
      model: options.models[0]!,
      onCpu: this.cpu,
    };
    const [node, entry] = selfCommand();
    const engine = startEngineChild(node, [entry, "sim", "vllm-engine", JSON.stringify(engineOptions)]);
    env.onStop(async () => {
      if (engine.ended) return;
      engine.kill("SIGTERM");
      await within(realClock, engine.exited, 5_000);
    });
    const first = (await engine.firstMessage()) as { type?: string } | undefined;
    if (first?.type !== "ready") {
      sim.logErr(["RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {'EngineCore_DP0': 1}"]);
      return 1;
    }
    void engine.exited.then(() => {
      if (!env.stopping()) this.engineDied();
    });
    this.engineOom = () => engine.send({ type: "oom" });
    this.enginePlacement = (cpu) => engine.send({ type: "placement", cpu });
    // Told to move while it loaded: it moves now.
    if (this.cpu !== engineOptions.onCpu) this.enginePlacement(this.cpu);
    await sim.listen();
    sim.setPhase("ready");
    sim.log("INFO:     Application startup complete.");
    return undefined;
  }

  /** The engine child died while serving: /health turns 503, then the API server exits. */
  private engineDied(): void {
    this.sim.setPhase("engine_dead");
    this.sim.log("ERROR:    Engine core process died unexpectedly; shutting down the API server.");
    setTimeout(() => this.sim.die({ code: 1 }), 500).unref();
  }

  async runtimeOom(res: ServerResponse): Promise<void> {
    if (!this.engineOom) return abortOfOom(this.sim, VLLM, res);
    // The engine child dies; the API server notices, answers 503 on /health, then exits.
    errorJson(res, apiError(500, ENGINE_DIED_MESSAGE));
    this.engineOom();
  }

  /** The engine child holds the memory: it drops or takes it. */
  async onCpu(cpu: boolean): Promise<void> {
    this.cpu = cpu;
    this.enginePlacement?.(cpu);
  }

  close(): void {}
}

export const VLLM: KindSpec = {
  kind: "vllm",
  version: VERSION,
  routes: [
    { method: "GET", path: "/health", handle: ({ res, sim }) => send(res, sim.phase === "engine_dead" ? 503 : 200, "") },
    { method: "GET", path: "/v1/models", handle: ({ res, sim }) => json(res, 200, modelsList(sim.info(), VLLM.modelEntry)) },
    { method: "GET", path: "/metrics", handle: ({ res, sim }) => send(res, 200, vllmMetrics(sim.info()), "text/plain; version=0.0.4; charset=utf-8") },
    { method: "GET", path: "/version", handle: ({ res }) => json(res, 200, { version: VERSION }) },
    ...OPENAI_INFERENCE_ROUTES,
  ],
  refusedWhileLoading: [],
  notFound: (res) => json(res, 404, { detail: "Not Found" }),
  // The request models are pydantic in lax mode: "true", "yes", "on", "1", 1 and the like read as true.
  wantsStream: (stream) => stream === true || stream === 1 || (typeof stream === "string" && /^(?:true|yes|on|1|t|y)$/i.test(stream)),
  continuesFinalMessage: (body) => body.continue_final_message === true,
  openaiChat: { roleEveryChunk: false, extra: {} },
  modelEntry: (id, s) => ({ id, object: "model", created: createdOf(s), owned_by: "vllm", root: id, parent: null, max_model_len: s.contextTokens, permission: [] }),
  apiError,
  unknownModel: (model) => apiError(404, `The model \`${model}\` does not exist.`),
  contextLengthError: (promptTokens, maxTokens, context) =>
    openaiStyle(
      400,
      `You passed ${promptTokens} input tokens and requested ${maxTokens} output tokens. However, the model's context length is only ${context} tokens, ` +
        `resulting in a maximum input length of ${Math.max(0, context - maxTokens)} tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value=${promptTokens})`,
      "BadRequestError",
      "input_tokens",
    ),
  oomAtLoadLines: (gpu, wantMib, freeMib, totalMib) => [
    `ERROR [core.py:700] EngineCore failed to start.`,
    `ERROR [core.py:700] Traceback (most recent call last):`,
    `ERROR [core.py:700] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate ${gib(wantMib)} GiB. GPU ${gpu} has a total capacity of ${gib(totalMib)} GiB of which ${gib(freeMib)} GiB is free. ` +
      `Including non-PyTorch memory, this process has ${gib(totalMib - freeMib)} GiB memory in use. Of the allocated memory ${gib(totalMib - freeMib)} GiB is allocated by PyTorch, and 0.00 GiB is reserved by PyTorch but unallocated.`,
    `RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}`,
  ],
  oomAtRuntimeLines: (gpu, totalMib) => [
    `ERROR [core.py:934] EngineCore encountered a fatal error.`,
    `ERROR [core.py:934] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU ${gpu} has a total capacity of ${gib(totalMib)} GiB of which 0.31 GiB is free.`,
    `ERROR [async_llm.py:420] ${ENGINE_DIED_MESSAGE}`,
  ],
  listeningLine: (host, port) => `INFO:     Uvicorn running on http://${host}:${port} (Press CTRL+C to quit)`,
  shutdownLine: () => "INFO:     Shutting down",
  attach: (sim) => new VllmRuntime(sim),
};
