/** Command-line options of `llmsup sim backend`, including the real servers' own flags it understands. */
import { parseArgs } from "node:util";
import { parseDuration } from "../../config/units.ts";
import { parseFault, type Fault } from "./faults.ts";

export const SIM_KINDS = ["vllm", "ollama", "llamacpp", "anthropic"] as const;
export type SimKind = (typeof SIM_KINDS)[number];

export interface SimBackendOptions {
  readonly kind: SimKind;
  readonly host: string;
  readonly port: number;
  /** Model names served; the first is the default. */
  readonly models: readonly string[];
  /** Context window in tokens: what one request may use. */
  readonly contextTokens: number;
  /**
   * Ollama: the `num_ctx` PARAMETER of the models' Modelfile, shown by /api/show. Set by an
   * explicit --ctx-size / --max-model-len; absent when the window is the server's default
   * (OLLAMA_CONTEXT_LENGTH, else 4096), as for a model pulled as is.
   */
  readonly modelfileNumCtx?: number;
  /** Time to load the model (vLLM: port closed meanwhile; llama-server: 503 Loading model; Ollama: on first use). */
  readonly loadMs: number;
  readonly ttftMs: number;
  /** Tokens per second once streaming. */
  readonly tokenRate: number;
  readonly gpuState?: string;
  readonly gpus: readonly number[];
  /** vLLM: fraction of each GPU's memory the engine takes. */
  readonly gpuMemoryUtilization: number;
  /** llama-server / Ollama: model size in MiB. */
  readonly modelMib: number;
  /** llama-server: parallel slots. */
  readonly slots: number;
  /** llama-server: serve /metrics. */
  readonly metrics: boolean;
  /** Ollama: how long a model stays loaded after use. */
  readonly keepAliveMs: number;
  /** Ollama: fraction of the model in VRAM (below 1: partly on CPU). */
  readonly vramFraction: number;
  readonly seed: number;
  readonly fault: Fault;
  /** /v1/embeddings: vectors that put paraphrases close (semantic-embedding.ts) instead of text hashes. */
  readonly semanticEmbeddings?: boolean;
  /** /v1/embeddings: the vectors' dimension (default 16 for hashes, 256 for semantic vectors). */
  readonly embeddingDim?: number;
  /** Anthropic: the one API key accepted (x-api-key or Authorization: Bearer); without it any non-empty key is. */
  readonly apiKey?: string;
}

export class SimUsageError extends Error {}

const DEFAULT_PORTS: Record<SimKind, number> = { vllm: 8000, ollama: 11434, llamacpp: 8080, anthropic: 8443 };
const DEFAULT_CONTEXT: Record<SimKind, number> = { vllm: 8192, ollama: 4096, llamacpp: 4096, anthropic: 200_000 };
const DEFAULT_MODEL: Record<SimKind, string> = { vllm: "sim/llama-3.1-8b-instruct", ollama: "llama3.1:8b", llamacpp: "llama-3.1-8b-q4_k_m", anthropic: "claude-sonnet-4-5" };

function duration(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const ms = parseDuration(v);
  if (ms === undefined) throw new SimUsageError(`--${name}: expected a duration such as "200ms" or "5s", found ${JSON.stringify(v)}`);
  return ms;
}

function int(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new SimUsageError(`--${name}: expected an integer, found ${JSON.stringify(v)}`);
  return n;
}

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new SimUsageError(`--${name}: expected a number, found ${JSON.stringify(v)}`);
  return n;
}

export const SIM_BACKEND_USAGE = `usage: llmsup sim backend --kind vllm|ollama|llamacpp|anthropic [--port N] [options]

  --host H, --port N            where to listen (Ollama also reads OLLAMA_HOST)
  --model NAME                  model served (repeatable; vLLM --served-model-name and llama-server --alias work too)
  --max-model-len N, --ctx-size N   context window in tokens (Ollama: the Modelfile's num_ctx;
                                    without it Ollama's window is OLLAMA_CONTEXT_LENGTH, else 4096)
  --load-time D                 model load time, e.g. 5s (slow load)
  --ttft D, --token-rate N      time to first token, tokens per second
  --gpu-state FILE              simulated GPU state (or $LLMSUP_SIM_GPU_STATE); --gpus 0,1 (or $CUDA_VISIBLE_DEVICES)
  --gpu-memory-utilization F    vLLM: fraction of GPU memory taken (default 0.9)
  --model-mib N                 llama-server/Ollama: model size in MiB
  --parallel N, --metrics       llama-server slots, /metrics
  --keep-alive D, --vram-fraction F   Ollama
  --fault JSON                  any fault, as for POST /_sim/fault
  --crash-exit-code N, --crash-signal SIG, --crash-after D
  --on-cpu                      the model runs on the CPU: no GPU memory held, still answering
  --semantic-embeddings [--embedding-dim N]   /v1/embeddings puts paraphrases close (N floats, default 256)
  --oom load|runtime, --hang, --wedge, --stall-after N [--stall-time D], --cut-after N,
  --malformed-after N, --no-done, --status CODE [--status-count N] [--status-fraction F],
  --rate-limit N [--retry-after S], --context-error, --reject-prefill, --error-after N
  --api-key KEY                 Anthropic: the one key accepted (default: any non-empty key);
                                models named claude-*-4-6 and later reject assistant prefill as the real API does
`;

export function parseSimBackendArgs(argv: readonly string[], env: NodeJS.ProcessEnv): SimBackendOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        kind: { type: "string" },
        host: { type: "string" },
        port: { type: "string" },
        model: { type: "string", short: "m", multiple: true },
        "served-model-name": { type: "string", multiple: true },
        alias: { type: "string", short: "a" },
        "max-model-len": { type: "string" },
        "ctx-size": { type: "string", short: "c" },
        "load-time": { type: "string" },
        ttft: { type: "string" },
        "token-rate": { type: "string" },
        "gpu-state": { type: "string" },
        gpus: { type: "string" },
        "gpu-memory-utilization": { type: "string" },
        "model-mib": { type: "string" },
        parallel: { type: "string", short: "p" },
        metrics: { type: "boolean" },
        "keep-alive": { type: "string" },
        "vram-fraction": { type: "string" },
        seed: { type: "string" },
        fault: { type: "string" },
        "crash-exit-code": { type: "string" },
        "crash-signal": { type: "string" },
        "crash-after": { type: "string" },
        oom: { type: "string" },
        "on-cpu": { type: "boolean" },
        hang: { type: "boolean" },
        wedge: { type: "boolean" },
        "stall-after": { type: "string" },
        "stall-time": { type: "string" },
        "cut-after": { type: "string" },
        "malformed-after": { type: "string" },
        "no-done": { type: "boolean" },
        status: { type: "string" },
        "status-count": { type: "string" },
        "status-fraction": { type: "string" },
        "rate-limit": { type: "string" },
        "retry-after": { type: "string" },
        "context-error": { type: "boolean" },
        "reject-prefill": { type: "boolean" },
        "semantic-embeddings": { type: "boolean" },
        "embedding-dim": { type: "string" },
        "error-after": { type: "string" },
        "api-key": { type: "string" },
        // Real servers' flags that change nothing here.
        "tensor-parallel-size": { type: "string" },
        dtype: { type: "string" },
        "n-gpu-layers": { type: "string" },
        "trust-remote-code": { type: "boolean" },
      },
    });
  } catch (e) {
    throw new SimUsageError((e as Error).message);
  }
  const v = parsed.values;
  const positionals = parsed.positionals.filter((p, i) => !(i === 0 && p === "serve"));
  const kind = v.kind as SimKind | undefined;
  if (!kind || !SIM_KINDS.includes(kind)) throw new SimUsageError(`--kind must be one of ${SIM_KINDS.join(", ")}${kind ? `, found ${JSON.stringify(kind)}` : ""}`);

  let host = v.host ?? "127.0.0.1";
  let port = int("port", v.port);
  if (kind === "ollama" && env.OLLAMA_HOST && v.port === undefined) {
    const m = /^(?:https?:\/\/)?([^:/]+)(?::(\d+))?/.exec(env.OLLAMA_HOST);
    if (m) {
      host = v.host ?? m[1]!;
      port = m[2] ? Number(m[2]) : 11434;
    }
  }
  port ??= DEFAULT_PORTS[kind];
  if (port < 0 || port > 65535) throw new SimUsageError(`--port: expected 0-65535, found ${port}`);

  const models = [...(v["served-model-name"] ?? []), ...(v.alias ? [v.alias] : []), ...(v.model ?? []), ...positionals];
  const gpuList = v.gpus ?? env.CUDA_VISIBLE_DEVICES ?? "";
  const gpus = gpuList
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((s) => {
      const n = Number(s);
      if (!Number.isInteger(n) || n < 0) throw new SimUsageError(`--gpus: expected GPU indices such as 0,1, found ${JSON.stringify(gpuList)}`);
      return n;
    });

  const fault: Record<string, unknown> = {};
  if (v.fault !== undefined) {
    try {
      Object.assign(fault, JSON.parse(v.fault));
    } catch {
      throw new SimUsageError(`--fault: expected JSON such as '{"hang":true}'`);
    }
  }
  if (v["crash-exit-code"] !== undefined || v["crash-signal"] !== undefined || v["crash-after"] !== undefined) {
    fault.crash = {
      ...(v["crash-exit-code"] !== undefined ? { exit_code: int("crash-exit-code", v["crash-exit-code"]) } : {}),
      ...(v["crash-signal"] !== undefined ? { signal: v["crash-signal"] } : {}),
      after_ms: duration("crash-after", v["crash-after"], 0),
    };
  }
  if (v.oom !== undefined) fault.oom = v.oom;
  if (v["on-cpu"]) fault.on_cpu = true;
  if (v.hang) fault.hang = true;
  if (v.wedge) fault.wedge = true;
  if (v["stall-after"] !== undefined) fault.stall_after = int("stall-after", v["stall-after"]);
  if (v["stall-time"] !== undefined) fault.stall_ms = duration("stall-time", v["stall-time"], 0);
  if (v["cut-after"] !== undefined) fault.cut_after = int("cut-after", v["cut-after"]);
  if (v["malformed-after"] !== undefined) fault.malformed_after = int("malformed-after", v["malformed-after"]);
  if (v["no-done"]) fault.no_done = true;
  if (v["reject-prefill"]) fault.reject_prefill = true;
  if (v["error-after"] !== undefined) fault.error_after = int("error-after", v["error-after"]);
  if (v.status !== undefined) {
    fault.status = {
      code: int("status", v.status),
      ...(v["status-count"] !== undefined ? { count: int("status-count", v["status-count"]) } : {}),
      ...(v["status-fraction"] !== undefined ? { fraction: num("status-fraction", v["status-fraction"]) } : {}),
    };
  }
  if (v["rate-limit"] !== undefined) {
    const count = int("rate-limit", v["rate-limit"]);
    fault.rate_limit = {
      ...(count && count > 0 ? { count } : {}),
      retry_after: v["retry-after"] === undefined ? 1 : v["retry-after"] === "none" ? null : num("retry-after", v["retry-after"]),
    };
  }
  if (v["context-error"]) fault.context_error = true;
  const loadMs = duration("load-time", v["load-time"], kind === "vllm" ? 300 : kind === "llamacpp" ? 300 : 100);
  const f = parseFault(fault);
  if (!f.ok) throw new SimUsageError(`fault: ${f.error}`);

  const embeddingDim = int("embedding-dim", v["embedding-dim"]);
  if (embeddingDim !== undefined && (embeddingDim < 1 || embeddingDim > 8192)) throw new SimUsageError(`--embedding-dim: expected 1-8192, found ${embeddingDim}`);
  const keepAliveText = v["keep-alive"] ?? env.OLLAMA_KEEP_ALIVE;
  const explicitContext = int("max-model-len", v["max-model-len"] ?? v["ctx-size"]);
  const serverDefaultContext = kind === "ollama" && env.OLLAMA_CONTEXT_LENGTH ? int("OLLAMA_CONTEXT_LENGTH", env.OLLAMA_CONTEXT_LENGTH) : undefined;
  return {
    kind,
    host,
    port,
    models: models.length > 0 ? models : [DEFAULT_MODEL[kind]],
    contextTokens: explicitContext ?? serverDefaultContext ?? DEFAULT_CONTEXT[kind],
    ...(kind === "ollama" && explicitContext !== undefined ? { modelfileNumCtx: explicitContext } : {}),
    loadMs: f.fault.load_ms ?? loadMs,
    ttftMs: duration("ttft", v.ttft, 20),
    tokenRate: num("token-rate", v["token-rate"]) ?? 400,
    gpuState: v["gpu-state"] ?? env.LLMSUP_SIM_GPU_STATE,
    gpus,
    gpuMemoryUtilization: num("gpu-memory-utilization", v["gpu-memory-utilization"]) ?? 0.9,
    modelMib: int("model-mib", v["model-mib"]) ?? 4_700,
    slots: int("parallel", v.parallel) ?? 4,
    metrics: v.metrics ?? false,
    keepAliveMs: duration("keep-alive", keepAliveText === undefined || /^\d+$/.test(keepAliveText) ? (keepAliveText ? `${keepAliveText}s` : undefined) : keepAliveText, 300_000),
    vramFraction: num("vram-fraction", v["vram-fraction"]) ?? 1,
    seed: int("seed", v.seed) ?? 1,
    fault: f.fault,
    ...(v["semantic-embeddings"] ? { semanticEmbeddings: true } : {}),
    ...(embeddingDim !== undefined ? { embeddingDim } : {}),
    ...(v["api-key"] !== undefined ? { apiKey: v["api-key"] } : {}),
  };
}
