/**
 * Ollama, simulated. The server is up at once ("Ollama is running"); models
 * load on first use and stay for their keep-alive (ollama-models.ts). Its own
 * API beside the OpenAI-compatible one (ollama-api.ts). When a runner dies of
 * out of memory the server stays up and reports it.
 */
import type { ServerResponse } from "node:http";
import { errorJson, json, readBody, send } from "../http.ts";
import { createdOf, modelsList, ollamaPs, ollamaShow, ollamaTags } from "../info.ts";
import { OPENAI_INFERENCE_ROUTES } from "../openai-api.ts";
import { DEFAULT_TOTAL_MIB } from "./common.ts";
import type { BootEnv, ErrorBody, KindRuntime, KindSpec, RequestBody, RouteCall, SimContext } from "./kind.ts";
import { ollamaChat, ollamaEmbed, ollamaGenerate } from "./ollama-api.ts";
import { OllamaModels } from "./ollama-models.ts";

const VERSION = "0.12.6";

const now = () => new Date().toISOString();

function apiError(status: number, message: string): ErrorBody {
  return { status, body: { error: { message, type: status >= 500 ? "api_error" : "invalid_request_error", param: null, code: null } } };
}

class OllamaRuntime implements KindRuntime {
  readonly busySlots = 0;
  private readonly sim: SimContext;
  private readonly models: OllamaModels;

  constructor(sim: SimContext) {
    this.sim = sim;
    this.models = new OllamaModels({
      options: sim.options,
      gpu: sim.gpu,
      fault: () => sim.fault(),
      busy: () => sim.busy(),
      log: (l) => sim.log(l),
      loadFailed: (room, wantMib, model) => {
        sim.logErr(OLLAMA.oomAtLoadLines(room.gpu, wantMib, room.freeMib, room.totalMib, model));
        return apiError(500, "llama runner process has terminated: cudaMalloc failed: out of memory");
      },
    });
  }

  get loaded(): ReadonlyMap<string, number> {
    return this.models.loaded;
  }

  async boot(_env: BootEnv): Promise<number | undefined> {
    await this.sim.listen();
    this.sim.setPhase("ready");
    return undefined;
  }

  prepare(model: string, body: RequestBody): Promise<ErrorBody | undefined> {
    return this.models.ensureLoaded(model, body.keep_alive);
  }

  finished(model: string, body: RequestBody): void {
    this.models.touch(model, body.keep_alive);
  }

  onCpu(cpu: boolean): Promise<void> {
    return this.models.setCpu(cpu);
  }

  /** The runner dies; the Ollama server stays up and reports it. */
  async runtimeOom(res: ServerResponse): Promise<void> {
    const { sim } = this;
    const total = (await sim.gpu?.totalMib().catch(() => undefined)) ?? DEFAULT_TOTAL_MIB;
    sim.logErr(OLLAMA.oomAtRuntimeLines(sim.options.gpus[0] ?? 0, total));
    await this.models.unloadAll();
    sim.settleFault({ ...sim.fault(), oom: undefined });
    return errorJson(res, apiError(500, "llama runner process has terminated: exit status 2: CUDA error: out of memory"));
  }

  close(): void {
    this.models.close();
  }
}

/** POST /api/show: `model` (or the older `name`); a bare name means its `:latest` tag. */
async function show({ req, res, sim }: RouteCall): Promise<void> {
  let body: { model?: unknown; name?: unknown };
  try {
    body = JSON.parse((await readBody(req)).toString("utf8") || "{}") as typeof body;
    if (!body || typeof body !== "object") throw new Error("not an object");
  } catch {
    return json(res, 400, { error: "invalid request body" });
  }
  const asked = typeof body.model === "string" && body.model !== "" ? body.model : typeof body.name === "string" ? body.name : "";
  if (asked === "") return json(res, 400, { error: "model is required" });
  const tagged = (m: string) => (/:[^/]*$/.test(m) ? m : `${m}:latest`);
  const name = sim.options.models.find((m) => tagged(m) === tagged(asked));
  if (!name) return json(res, 404, { error: `model '${asked}' not found` });
  return json(res, 200, ollamaShow(sim.info(), name));
}

export const OLLAMA: KindSpec = {
  kind: "ollama",
  version: VERSION,
  gpuProcessName: "/usr/local/bin/ollama",
  routes: [
    { method: "GET", path: "/", handle: ({ res }) => send(res, 200, "Ollama is running", "text/plain; charset=utf-8") },
    { method: "HEAD", path: "/", handle: ({ res }) => send(res, 200, "") },
    { method: "GET", path: "/api/version", handle: ({ res }) => json(res, 200, { version: VERSION }) },
    { method: "GET", path: "/api/tags", handle: ({ res, sim }) => json(res, 200, ollamaTags(sim.info())) },
    { method: "GET", path: "/api/ps", handle: ({ res, sim }) => json(res, 200, ollamaPs(sim.info())) },
    { method: "GET", path: "/v1/models", handle: ({ res, sim }) => json(res, 200, modelsList(sim.info(), OLLAMA.modelEntry)) },
    { method: "POST", path: "/api/show", handle: show },
    ...OPENAI_INFERENCE_ROUTES,
    { method: "POST", path: "/api/chat", api: ollamaChat },
    { method: "POST", path: "/api/generate", api: ollamaGenerate },
    { method: "POST", path: "/api/embed", api: ollamaEmbed },
  ],
  refusedWhileLoading: [],
  notFound: (res) => send(res, 404, "404 page not found", "text/plain"),
  wantsStream: (stream) => stream === true,
  continuesFinalMessage: () => true,
  // Its OpenAI chat chunks name the role in every delta; whole answers carry a fingerprint.
  openaiChat: { roleEveryChunk: true, extra: { system_fingerprint: "fp_ollama" } },
  modelEntry: (id, s) => ({ id, object: "model", created: createdOf(s), owned_by: "library" }),
  apiError,
  unknownModel: (model) => apiError(404, `model "${model}" not found, try pulling it first`),
  contextLengthError: (promptTokens, maxTokens, context) => apiError(400, `prompt too long; exceeded max context length by ${promptTokens + maxTokens - context} tokens`),
  oomAtLoadLines: (gpu, wantMib) => [
    `ggml_backend_cuda_buffer_type_alloc_buffer: allocating ${wantMib.toFixed(2)} MiB on device ${gpu}: cudaMalloc failed: out of memory`,
    `time=${now()} level=ERROR source=sched.go:460 msg="error loading llama server" error="llama runner process has terminated: cudaMalloc failed: out of memory"`,
  ],
  oomAtRuntimeLines: () => [`CUDA error: out of memory`, `time=${now()} level=ERROR source=server.go:771 msg="llama runner terminated" error="exit status 2"`],
  listeningLine: (host, port) => `time=${now()} level=INFO source=routes.go:1339 msg="Listening on ${host}:${port} (version ${VERSION})"`,
  shutdownLine: () => `time=${now()} level=INFO msg="shutting down"`,
  attach: (sim) => new OllamaRuntime(sim),
};
