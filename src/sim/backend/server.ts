/**
 * A simulated inference server: one HTTP server with the endpoints, health
 * semantics, timing and faults of vLLM, llama-server or Ollama.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { canonicalTokens, chatKey, contentText, countTokens, embeddingBase64, embeddingOf, planAnswer, promptTokensOfChat, type ChatMessage } from "./answer.ts";
import { parseFault, type Fault } from "./faults.ts";
import { chatSse, completionSse, newId, ollamaNdjson, ollamaTotals, usageOf, writeStream, writeWhole, type Generation } from "./generate.ts";
import { llamacppMetrics, llamacppProps, llamacppSlots, modelsList, ollamaPs, ollamaShow, ollamaTags, vllmMetrics, type InfoState } from "./info.ts";
import { apiError, contextLengthError, listeningLine, loadingModel, modelNotFound, oomAtLoadLines, oomAtRuntimeLines, SIM_VERSIONS, wantsStream, type ErrorBody } from "./kinds.ts";
import type { SimBackendOptions } from "./options.ts";
import { defaultStatusMessage, errorJson, json, mulberry32, notFound, readBody, send } from "./http.ts";
import { OllamaModels } from "./ollama-models.ts";


/** How the process ends; injected so the server can be driven in-process too. */
export interface SimExit {
  /** Exit with a status after the server stops (clean). */
  exit(code: number): void;
  /** Die at once: by a signal, or with an exit status and no clean-up. */
  die(how: { code?: number; signal?: NodeJS.Signals }): void;
}

/** GPU-side hooks: registering the process's memory, checking room to load. */
export interface SimGpuHooks {
  /** Checks room for `mib` on each GPU; returns the failing GPU's figures, or undefined when there is room. */
  checkRoom(mib: number): Promise<{ gpu: number; freeMib: number; totalMib: number } | undefined>;
  /** Lists this process as holding `mib` per GPU (0 removes it). */
  hold(mib: number): Promise<void>;
  /** Total memory of the first GPU, for messages. */
  totalMib(): Promise<number>;
}

export class SimBackendServer {
  readonly options: SimBackendOptions;
  private readonly out: Writable;
  private readonly err: Writable;
  private readonly exitHooks: SimExit;
  private readonly gpu?: SimGpuHooks;
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  /** "loading" only matters where the port answers during load (llama-server). */
  phase: "loading" | "ready" | "engine_dead" = "loading";
  fault: Fault;
  private statusLeft?: number;
  private rateLeft?: number;
  private random: () => number;
  private readonly startedAt = Date.now();
  private running = 0;
  private busySlots = 0;
  private readonly slotWaiters: (() => void)[] = [];
  private promptTokensTotal = 0;
  private generationTokensTotal = 0;
  private requestsOk = 0;
  private requests = 0;
  /** The last inference request body, for tests of what a router sent. */
  private lastRequest?: unknown;
  private ttftSum = 0;
  private ttftCount = 0;
  /** Ollama: models load on first use. */
  private readonly models: OllamaModels;
  /** vLLM: called to make the engine child die of a runtime OOM. */
  engineOom?: () => void;

  constructor(options: SimBackendOptions, io: { stdout: Writable; stderr: Writable }, exit: SimExit, gpu?: SimGpuHooks) {
    this.options = options;
    this.out = io.stdout;
    this.err = io.stderr;
    this.exitHooks = exit;
    this.gpu = gpu;
    this.fault = options.fault;
    this.random = mulberry32(options.seed);
    this.armCounters();
    this.models = new OllamaModels({
      options,
      gpu,
      fault: () => this.fault,
      busy: () => this.running > 0,
      log: (l) => this.log(l),
      logErr: (l) => this.logErr(l),
    });
  }

  get port(): number {
    const a = this.server?.address();
    return a && typeof a === "object" ? a.port : this.options.port;
  }

  log(line: string): void {
    this.out.write(`${line}\n`);
  }

  logErr(lines: readonly string[]): void {
    for (const l of lines) this.err.write(`${l}\n`);
  }

  private armCounters(): void {
    this.statusLeft = this.fault.status?.count;
    this.rateLeft = this.fault.rate_limit?.count;
  }

  setFault(fault: Fault): void {
    this.fault = fault;
    this.armCounters();
    if (fault.crash) this.scheduleCrash(fault.crash);
  }

  scheduleCrash(crash: NonNullable<Fault["crash"]>): void {
    setTimeout(() => {
      this.logErr([`simulated crash (${crash.signal ?? `exit ${crash.exit_code ?? 1}`})`]);
      this.exitHooks.die(crash.signal ? { signal: crash.signal } : { code: crash.exit_code ?? 1 });
    }, crash.after_ms).unref();
  }

  async listen(): Promise<void> {
    const server = createServer({ keepAliveTimeout: 5_000 }, (req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        this.logErr([`internal error: ${(e as Error).stack ?? String(e)}`]);
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
    });
    server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.options.port, this.options.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.log(listeningLine(this.options.kind, this.options.host, this.port));
  }

  /** Stops accepting and drops open connections. */
  async close(): Promise<void> {
    this.models.close();
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }

  info(): InfoState {
    return {
      kind: this.options.kind,
      models: this.options.models,
      contextTokens: this.options.contextTokens,
      modelfileNumCtx: this.options.modelfileNumCtx,
      startedAt: this.startedAt,
      slots: this.options.slots,
      busySlots: this.busySlots,
      running: this.running,
      promptTokensTotal: this.promptTokensTotal,
      generationTokensTotal: this.generationTokensTotal,
      requestsOk: this.requestsOk,
      ttftSum: this.ttftSum,
      ttftCount: this.ttftCount,
      modelBytes: this.options.modelMib * 1024 * 1024,
      vramFraction: this.options.vramFraction,
      loaded: this.models.loaded,
    };
  }

  // ---------------------------------------------------------------- routing

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://sim");
    const path = url.pathname;
    if (path.startsWith("/_sim/")) return this.control(req, res, path);
    if (this.fault.hang) return this.neverAnswer(req, res);
    const kind = this.options.kind;
    const method = req.method ?? "GET";

    if (method === "GET") {
      if (kind === "vllm") {
        if (path === "/health") return this.phase === "engine_dead" ? send(res, 503, "") : send(res, 200, "");
        if (path === "/v1/models") return json(res, 200, modelsList(this.info()));
        if (path === "/metrics") return send(res, 200, vllmMetrics(this.info()), "text/plain; version=0.0.4; charset=utf-8");
        if (path === "/version") return json(res, 200, { version: SIM_VERSIONS.vllm });
      }
      if (kind === "llamacpp") {
        if (path === "/health" || path === "/v1/health") return this.phase === "loading" ? errorJson(res, loadingModel()) : json(res, 200, { status: "ok" });
        if (this.phase === "loading") return errorJson(res, loadingModel());
        if (path === "/v1/models" || path === "/models") return json(res, 200, modelsList(this.info()));
        if (path === "/slots") {
          if (url.searchParams.get("fail_on_no_slot") === "1" && this.busySlots >= this.options.slots)
            return errorJson(res, { status: 503, body: { error: { code: 503, message: "no slot available", type: "unavailable_error" } } });
          return json(res, 200, llamacppSlots(this.info()));
        }
        if (path === "/props") return json(res, 200, llamacppProps(this.info()));
        if (path === "/metrics") {
          if (!this.options.metrics) return errorJson(res, { status: 501, body: { error: { code: 501, message: "This server does not support metrics endpoint. Start it with `--metrics`", type: "not_supported_error" } } });
          return send(res, 200, llamacppMetrics(this.info()), "text/plain; version=0.0.4");
        }
      }
      if (kind === "ollama") {
        if (path === "/") return send(res, 200, "Ollama is running", "text/plain; charset=utf-8");
        if (path === "/api/version") return json(res, 200, { version: SIM_VERSIONS.ollama });
        if (path === "/api/tags") return json(res, 200, ollamaTags(this.info()));
        if (path === "/api/ps") return json(res, 200, ollamaPs(this.info()));
        if (path === "/v1/models") return json(res, 200, modelsList(this.info()));
      }
    } else if (method === "HEAD" && kind === "ollama" && path === "/") {
      return send(res, 200, "");
    } else if (method === "POST") {
      if (kind === "ollama" && path === "/api/show") return this.ollamaShow(req, res);
      const inference: Record<string, "chat" | "completion" | "embedding" | "ollama-chat" | "ollama-generate" | "ollama-embed"> = {
        "/v1/chat/completions": "chat",
        "/v1/completions": "completion",
        "/v1/embeddings": "embedding",
        ...(kind === "llamacpp" ? { "/chat/completions": "chat", "/completions": "completion", "/embeddings": "embedding" } : {}),
        ...(kind === "ollama" ? { "/api/chat": "ollama-chat", "/api/generate": "ollama-generate", "/api/embed": "ollama-embed" } : {}),
      } as const;
      const what = inference[path];
      if (what) return this.inference(req, res, what);
    }
    return notFound(res, kind);
  }

  /** Ollama's POST /api/show: `model` (or the older `name`); a bare name means its `:latest` tag. */
  private async ollamaShow(req: IncomingMessage, res: ServerResponse): Promise<void> {
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
    const name = this.options.models.find((m) => tagged(m) === tagged(asked));
    if (!name) return json(res, 404, { error: `model '${asked}' not found` });
    return json(res, 200, ollamaShow(this.info(), name));
  }

  private neverAnswer(req: IncomingMessage, res: ServerResponse): void {
    // Accept and hold the connection; nothing is ever written.
    req.resume();
    res.on("close", () => undefined);
  }

  private async control(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (path === "/_sim/fault") {
      if (req.method === "GET") return json(res, 200, this.fault);
      if (req.method === "DELETE") {
        this.setFault({});
        return json(res, 200, this.fault);
      }
      if (req.method === "POST") {
        const body = await readBody(req).catch(() => undefined);
        let parsed: unknown;
        try {
          parsed = JSON.parse(body?.toString("utf8") || "{}");
        } catch {
          return json(res, 400, { error: "expected a JSON object describing the fault" });
        }
        const f = parseFault(parsed);
        if (!f.ok) return json(res, 400, { error: f.error });
        json(res, 200, f.fault);
        this.setFault(f.fault);
        return;
      }
    }
    if (path === "/_sim/state" && req.method === "GET") {
      return json(res, 200, {
        kind: this.options.kind,
        pid: process.pid,
        phase: this.phase,
        port: this.port,
        models: this.options.models,
        loaded: [...this.models.loaded.keys()],
        requests: this.requests,
        running: this.running,
        fault: this.fault,
        last_request: this.lastRequest,
      });
    }
    return json(res, 404, { error: `no simulator control endpoint ${req.method} ${path}` });
  }

  // ---------------------------------------------------------------- inference

  private async inference(req: IncomingMessage, res: ServerResponse, what: string): Promise<void> {
    const kind = this.options.kind;
    let raw: Buffer;
    try {
      raw = await readBody(req);
    } catch {
      return errorJson(res, apiError(kind, 413, "request body too large"));
    }
    if (this.phase === "loading") return errorJson(res, loadingModel());
    if (this.phase === "engine_dead") return errorJson(res, apiError(kind, 500, "EngineCore encountered an issue. See stack trace (above) for the root cause."));
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(raw.toString("utf8")) as Record<string, unknown>;
      if (!body || typeof body !== "object" || Array.isArray(body)) throw new Error("not an object");
    } catch {
      return errorJson(res, apiError(kind, 400, "Invalid JSON in request body"));
    }
    this.requests++;
    this.lastRequest = body;
    const model = typeof body.model === "string" && body.model !== "" ? body.model : this.options.models[0]!;
    if (kind !== "llamacpp" && !this.options.models.includes(model)) return errorJson(res, modelNotFound(kind, model));

    const f = this.fault;
    if (f.wedge) return this.wedged(res, body, what);
    if (f.rate_limit && (this.rateLeft === undefined || this.rateLeft > 0)) {
      if (this.rateLeft !== undefined) this.rateLeft--;
      const e = apiError(kind, 429, "Too many requests: rate limit exceeded, retry later");
      const retry = f.rate_limit.retry_after;
      return errorJson(res, { ...e, headers: retry === null ? {} : { "retry-after": String(retry) } });
    }
    if (f.status) {
      const hit = this.statusLeft !== undefined ? this.statusLeft > 0 : f.status.fraction !== undefined ? this.random() < f.status.fraction : true;
      if (hit) {
        if (this.statusLeft !== undefined) this.statusLeft--;
        return errorJson(res, apiError(kind, f.status.code, f.status.message ?? defaultStatusMessage(f.status.code)));
      }
    }
    if (f.oom === "runtime") return this.runtimeOom(res);

    if (kind === "ollama") {
      const failed = await this.models.ensureLoaded(model, body.keep_alive);
      if (failed) return errorJson(res, failed);
      if ((what === "ollama-generate" && !body.prompt) || (what === "ollama-chat" && Array.isArray(body.messages) && body.messages.length === 0)) {
        // A warm-up: loads the model, generates nothing.
        return json(res, 200, { model, created_at: new Date().toISOString(), ...(what === "ollama-chat" ? { message: { role: "assistant", content: "" } } : { response: "" }), done: true, done_reason: "load" });
      }
    }
    if (what === "embedding" || what === "ollama-embed") return this.embeddings(res, body, model, what);

    await this.acquireSlot();
    this.running++;
    const abort = new AbortController();
    res.on("close", () => abort.abort());
    try {
      await this.generate(res, body, model, what, abort.signal);
    } finally {
      this.running--;
      this.releaseSlot();
      if (kind === "ollama") this.models.touch(model, body.keep_alive);
    }
  }

  private async generate(res: ServerResponse, body: Record<string, unknown>, model: string, what: string, signal: AbortSignal): Promise<void> {
    const kind = this.options.kind;
    const chat = what === "chat" || what === "ollama-chat";
    const messages = (Array.isArray(body.messages) ? body.messages : []) as ChatMessage[];
    const prompt = chat ? "" : what === "ollama-generate" ? String(body.prompt ?? "") : Array.isArray(body.prompt) ? body.prompt.map(String).join("\n") : String(body.prompt ?? "");
    const options = (body.options ?? {}) as Record<string, unknown>;
    const maxTokensRaw = body.max_completion_tokens ?? body.max_tokens ?? options.num_predict ?? body.n_predict;
    const maxTokens = typeof maxTokensRaw === "number" && maxTokensRaw >= 0 ? maxTokensRaw : undefined;

    // Assistant prefill: vLLM with continue_final_message; llama-server and Ollama whenever the last message is the assistant's.
    const last = messages[messages.length - 1];
    const continues = chat && last?.role === "assistant" && (kind !== "vllm" || body.continue_final_message === true);
    const conversation = continues ? messages.slice(0, -1) : messages;
    const key = chat ? chatKey(conversation) : `prompt\u0000${prompt}`;
    const promptTokens = chat ? promptTokensOfChat(messages) : countTokens(prompt) + 1;
    const plan = planAnswer(key, maxTokens, continues ? contentText(last?.content) : "");

    const wanted = maxTokens ?? canonicalTokens(key).length;
    if (this.fault.context_error || promptTokens + wanted > this.options.contextTokens) {
      return errorJson(res, contextLengthError(kind, promptTokens, wanted, this.options.contextTokens));
    }

    const g: Generation = {
      tokens: plan.tokens,
      finishReason: plan.finishReason,
      promptTokens,
      ttftMs: this.options.ttftMs,
      intervalMs: 1000 / this.options.tokenRate,
      fault: this.fault,
    };
    const created = Math.floor(Date.now() / 1000);
    const started = performance.now();
    const stream = wantsStream(kind, what === "ollama-chat" || what === "ollama-generate", body.stream);
    const includeUsage = (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
    const text = () => plan.tokens.join("");

    if (stream) {
      const format =
        what === "chat"
          ? chatSse(newId("chatcmpl"), model, created, includeUsage, kind === "ollama")
          : what === "completion"
            ? completionSse(newId("cmpl"), model, created, includeUsage)
            : ollamaNdjson(model, what === "ollama-chat", started);
      await writeStream(res, g, format, signal);
    } else {
      const usage = usageOf(g);
      await writeWhole(
        res,
        g,
        () =>
          what === "chat"
            ? {
                id: newId("chatcmpl"),
                object: "chat.completion",
                created,
                model,
                choices: [{ index: 0, message: { role: "assistant", content: text(), tool_calls: [] }, logprobs: null, finish_reason: plan.finishReason }],
                usage,
                ...(kind === "ollama" ? { system_fingerprint: "fp_ollama" } : {}),
              }
            : what === "completion"
              ? { id: newId("cmpl"), object: "text_completion", created, model, choices: [{ index: 0, text: text(), logprobs: null, finish_reason: plan.finishReason }], usage }
              : {
                  model,
                  created_at: new Date().toISOString(),
                  ...(what === "ollama-chat" ? { message: { role: "assistant", content: text() } } : { response: text() }),
                  done: true,
                  ...ollamaTotals(plan.finishReason, usage, started),
                },
        signal,
      );
    }
    if (!res.destroyed && res.writableFinished !== false) {
      this.promptTokensTotal += promptTokens;
      this.generationTokensTotal += plan.tokens.length;
      this.requestsOk++;
      this.ttftSum += this.fault.ttft_ms ?? this.options.ttftMs;
      this.ttftCount++;
    }
  }

  private embeddings(res: ServerResponse, body: Record<string, unknown>, model: string, what: string): void {
    const input = body.input;
    const inputs = Array.isArray(input) ? input.map(String) : [String(input ?? "")];
    const vectors = inputs.map((t) => embeddingOf(t));
    const tokens = inputs.reduce((n, t) => n + countTokens(t), 0);
    if (what === "ollama-embed") return json(res, 200, { model, embeddings: vectors, total_duration: 1000, load_duration: 0, prompt_eval_count: tokens });
    const base64 = body.encoding_format === "base64";
    return json(res, 200, {
      object: "list",
      data: vectors.map((v, index) => ({ object: "embedding", embedding: base64 ? embeddingBase64(v) : v, index })),
      model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  }

  /** Health stays fine; the request never progresses. Streams get their headers (as FastAPI sends them) and nothing else. */
  private wedged(res: ServerResponse, body: Record<string, unknown>, what: string): void {
    const streams = wantsStream(this.options.kind, what.startsWith("ollama"), body.stream);
    if (streams) {
      res.writeHead(200, { "content-type": what.startsWith("ollama") ? "application/x-ndjson" : "text/event-stream; charset=utf-8" });
      res.flushHeaders();
    }
  }

  private async runtimeOom(res: ServerResponse): Promise<void> {
    const kind = this.options.kind;
    if (kind === "vllm" && this.engineOom) {
      // The engine child dies; the API server notices, answers 503 on /health, then exits.
      errorJson(res, apiError(kind, 500, "EngineCore encountered an issue. See stack trace (above) for the root cause."));
      this.engineOom();
      return;
    }
    const total = (await this.gpu?.totalMib().catch(() => undefined)) ?? 81559;
    this.logErr(oomAtRuntimeLines(kind, this.options.gpus[0] ?? 0, total));
    if (kind === "ollama") {
      // The runner dies; the Ollama server stays up and reports it.
      await this.models.unloadAll();
      this.fault = { ...this.fault, oom: undefined };
      return errorJson(res, apiError(kind, 500, "llama runner process has terminated: exit status 2: CUDA error: out of memory"));
    }
    res.socket?.destroy();
    this.exitHooks.die({ signal: "SIGABRT" });
  }

  /** The engine child died while serving (vLLM). */
  engineDied(): void {
    this.phase = "engine_dead";
    this.log("ERROR:    Engine core process died unexpectedly; shutting down the API server.");
    setTimeout(() => this.exitHooks.die({ code: 1 }), 500).unref();
  }

  // ---------------------------------------------------------------- llama-server slots

  private async acquireSlot(): Promise<void> {
    if (this.options.kind !== "llamacpp") return;
    while (this.busySlots >= this.options.slots) await new Promise<void>((r) => this.slotWaiters.push(r));
    this.busySlots++;
  }

  private releaseSlot(): void {
    if (this.options.kind !== "llamacpp") return;
    this.busySlots--;
    this.slotWaiters.shift()?.();
  }
}
