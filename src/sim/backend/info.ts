/**
 * The informational endpoints' bodies, each in its server's shape: models,
 * metrics, slots, props, Ollama's tags, ps and show. The kinds' route tables
 * (kinds/*.ts) say which server answers which.
 */

/** What the server knows and counts, for the informational endpoints. */
export interface InfoState {
  readonly models: readonly string[];
  readonly contextTokens: number;
  /** Ollama: the Modelfile's num_ctx PARAMETER, if it sets one. */
  readonly modelfileNumCtx?: number;
  readonly startedAt: number;
  readonly slots: number;
  readonly busySlots: number;
  readonly running: number;
  readonly promptTokensTotal: number;
  readonly generationTokensTotal: number;
  readonly requestsOk: number;
  readonly ttftSum: number;
  readonly ttftCount: number;
  readonly modelBytes: number;
  readonly vramFraction: number;
  /** Ollama: loaded models and when each expires. */
  readonly loaded: ReadonlyMap<string, number>;
}

/** GET /v1/models, each entry in the kind's shape. */
export function modelsList(s: InfoState, entry: (id: string, s: InfoState) => unknown): unknown {
  return { object: "list", data: s.models.map((id) => entry(id, s)) };
}

/** The `created` of /v1/models entries: when the server started, in seconds. */
export function createdOf(s: InfoState): number {
  return Math.floor(s.startedAt / 1000);
}

export function vllmMetrics(s: InfoState): string {
  const model = s.models[0] ?? "";
  const l = `{engine="0",model_name="${model}"}`;
  return [
    "# HELP vllm:num_requests_running Number of requests in model execution batches.",
    "# TYPE vllm:num_requests_running gauge",
    `vllm:num_requests_running${l} ${s.running}`,
    "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
    "# TYPE vllm:num_requests_waiting gauge",
    `vllm:num_requests_waiting${l} 0`,
    "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
    "# TYPE vllm:kv_cache_usage_perc gauge",
    `vllm:kv_cache_usage_perc${l} ${Math.min(1, s.running * 0.05)}`,
    "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
    "# TYPE vllm:prompt_tokens_total counter",
    `vllm:prompt_tokens_total${l} ${s.promptTokensTotal}`,
    "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
    "# TYPE vllm:generation_tokens_total counter",
    `vllm:generation_tokens_total${l} ${s.generationTokensTotal}`,
    "# HELP vllm:request_success_total Count of successfully processed requests.",
    "# TYPE vllm:request_success_total counter",
    `vllm:request_success_total{engine="0",finished_reason="stop",model_name="${model}"} ${s.requestsOk}`,
    "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.",
    "# TYPE vllm:time_to_first_token_seconds histogram",
    `vllm:time_to_first_token_seconds_sum${l} ${s.ttftSum / 1000}`,
    `vllm:time_to_first_token_seconds_count${l} ${s.ttftCount}`,
    "",
  ].join("\n");
}

export function llamacppMetrics(s: InfoState): string {
  return [
    "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.",
    "# TYPE llamacpp:prompt_tokens_total counter",
    `llamacpp:prompt_tokens_total ${s.promptTokensTotal}`,
    "# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.",
    "# TYPE llamacpp:tokens_predicted_total counter",
    `llamacpp:tokens_predicted_total ${s.generationTokensTotal}`,
    "# HELP llamacpp:requests_processing Number of requests processing.",
    "# TYPE llamacpp:requests_processing gauge",
    `llamacpp:requests_processing ${s.busySlots}`,
    "# HELP llamacpp:requests_deferred Number of requests deferred.",
    "# TYPE llamacpp:requests_deferred gauge",
    `llamacpp:requests_deferred ${Math.max(0, s.running - s.busySlots)}`,
    "",
  ].join("\n");
}

export function llamacppSlots(s: InfoState): unknown[] {
  return Array.from({ length: s.slots }, (_, id) => ({
    id,
    id_task: id < s.busySlots ? 1000 + id : -1,
    n_ctx: Math.floor(s.contextTokens / s.slots),
    speculative: false,
    is_processing: id < s.busySlots,
    params: { n_predict: -1, temperature: 0.8, top_k: 40, top_p: 0.95 },
    next_token: { has_next_token: id < s.busySlots, has_new_line: false, n_remain: -1, n_decoded: 0 },
  }));
}

export function llamacppProps(s: InfoState, version: string): unknown {
  return {
    default_generation_settings: { n_ctx: Math.floor(s.contextTokens / s.slots), params: { n_predict: -1, temperature: 0.8 } },
    total_slots: s.slots,
    model_path: `/models/${s.models[0]}.gguf`,
    modalities: { vision: false, audio: false },
    chat_template: "{{ bos_token }}{% for message in messages %}...{% endfor %}",
    build_info: `${version}-sim`,
  };
}

function ollamaDetails() {
  return { parent_model: "", format: "gguf", family: "llama", families: ["llama"], parameter_size: "8.0B", quantization_level: "Q4_K_M" };
}

const digestOf = (name: string) => Buffer.from(name.padEnd(32, "0")).toString("hex").slice(0, 64);

export function ollamaTags(s: InfoState): unknown {
  return {
    models: s.models.map((name) => ({ name, model: name, modified_at: new Date(s.startedAt).toISOString(), size: s.modelBytes, digest: digestOf(name), details: ollamaDetails() })),
  };
}

export function ollamaPs(s: InfoState): unknown {
  return {
    models: [...s.loaded].map(([name, expiresAt]) => ({
      name,
      model: name,
      size: s.modelBytes,
      digest: digestOf(name),
      details: ollamaDetails(),
      expires_at: new Date(expiresAt).toISOString(),
      size_vram: Math.round(s.modelBytes * s.vramFraction),
      context_length: s.contextTokens,
    })),
  };
}

/** The window a Llama 3.1 GGUF was trained for: what `llama.context_length` says, whatever the runtime window. */
const TRAINED_CONTEXT = 131_072;

/** Ollama's Modelfile parameters as /api/show prints them: the key padded to 30 columns, then the value. */
function ollamaParameters(s: InfoState): [string, string][] {
  return [
    ...(s.modelfileNumCtx !== undefined ? [["num_ctx", String(s.modelfileNumCtx)] as [string, string]] : []),
    ["stop", '"<|start_header_id|>"'],
    ["stop", '"<|end_header_id|>"'],
    ["stop", '"<|eot_id|>"'],
  ];
}

const OLLAMA_TEMPLATE = "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>";

/** POST /api/show for one installed model, in Ollama's shape. */
export function ollamaShow(s: InfoState, name: string): unknown {
  const params = ollamaParameters(s);
  return {
    license: "LLAMA 3.1 COMMUNITY LICENSE AGREEMENT ...",
    modelfile: [
      `# Modelfile generated by "ollama show"`,
      `# To build a new Modelfile based on this one, replace the FROM line with:`,
      `# FROM ${name}`,
      ``,
      `FROM /usr/share/ollama/.ollama/models/blobs/sha256-${digestOf(name)}`,
      `TEMPLATE """${OLLAMA_TEMPLATE}"""`,
      ...params.map(([k, v]) => `PARAMETER ${k} ${v}`),
    ].join("\n"),
    parameters: params.map(([k, v]) => `${k.padEnd(30)} ${v}`).join("\n"),
    template: OLLAMA_TEMPLATE,
    details: ollamaDetails(),
    model_info: {
      "general.architecture": "llama",
      "general.file_type": 15,
      "general.parameter_count": 8_030_261_248,
      "general.quantization_version": 2,
      "llama.attention.head_count": 32,
      "llama.attention.head_count_kv": 8,
      "llama.block_count": 32,
      "llama.context_length": Math.max(TRAINED_CONTEXT, s.contextTokens),
      "llama.embedding_length": 4096,
      "llama.rope.freq_base": 500_000,
      "llama.vocab_size": 128_256,
      "tokenizer.ggml.model": "gpt2",
      "tokenizer.ggml.tokens": null,
    },
    capabilities: ["completion", "tools"],
    modified_at: new Date(s.startedAt).toISOString(),
  };
}
