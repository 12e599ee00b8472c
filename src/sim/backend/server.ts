/**
 * A simulated inference server: one HTTP server with the endpoints, health
 * semantics, timing and faults of vLLM, llama-server or Ollama. This core
 * holds the state, the fault gate's counters and the simulator's control
 * endpoints, and dispatches every other request by its kind's route table
 * (kinds/*.ts); it never asks which kind it runs.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Writable } from "node:stream";
import { control } from "./control.ts";
import { faultGate, type GateCounters, type GateDecision, type GatePoint } from "./fault-gate.ts";
import type { Fault } from "./faults.ts";
import type { SimGpuHooks } from "./gpu-hooks.ts";
import { errorJson, mulberry32 } from "./http.ts";
import { InferenceStats, serveInference, type InferenceHost } from "./inference.ts";
import type { InfoState } from "./info.ts";
import { loadingModel } from "./kinds/common.ts";
import { KINDS } from "./kinds/index.ts";
import type { BootEnv, HttpMethod, KindRuntime, KindSpec, Route, SimPhase } from "./kinds/kind.ts";
import type { SimBackendOptions } from "./options.ts";

/** How the process ends; injected so the server can be driven in-process too. */
export interface SimExit {
  /** Exit with a status after the server stops (clean). */
  exit(code: number): void;
  /** Die at once: by a signal, or with an exit status and no clean-up. */
  die(how: { code?: number; signal?: NodeJS.Signals }): void;
}

export class SimBackendServer implements InferenceHost {
  readonly options: SimBackendOptions;
  readonly gpu?: SimGpuHooks;
  readonly spec: KindSpec;
  readonly runtime: KindRuntime;
  readonly stats = new InferenceStats();
  phase: SimPhase = "loading";
  private readonly out: Writable;
  private readonly err: Writable;
  private readonly exitHooks: SimExit;
  private readonly routes: ReadonlyMap<string, Route>;
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private current: Fault;
  private counters: GateCounters;
  private readonly random: () => number;
  private readonly startedAt = Date.now();

  constructor(options: SimBackendOptions, io: { stdout: Writable; stderr: Writable }, exit: SimExit, gpu?: SimGpuHooks) {
    this.options = options;
    this.out = io.stdout;
    this.err = io.stderr;
    this.exitHooks = exit;
    this.gpu = gpu;
    this.spec = KINDS[options.kind];
    this.routes = new Map(this.spec.routes.map((r) => [`${r.method} ${r.path}`, r]));
    this.current = options.fault;
    this.random = mulberry32(options.seed);
    this.counters = faultGate(this.current, { at: "arm" }, {}, this.random).counters;
    this.runtime = this.spec.attach(this);
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

  setPhase(phase: SimPhase): void {
    this.phase = phase;
  }

  busy(): boolean {
    return this.stats.running > 0;
  }

  die(how: { code?: number; signal?: NodeJS.Signals }): void {
    this.exitHooks.die(how);
  }

  // ---------------------------------------------------------------- faults

  fault(): Fault {
    return this.current;
  }

  /** A fault takes effect (at start, or through POST /_sim/fault): counters start afresh, a crash is scheduled. */
  setFault(fault: Fault): void {
    const cpu = fault.on_cpu === true;
    // Said again when it stays on the CPU: the runtime keeps its GPU memory dropped.
    if (cpu || this.current.on_cpu === true) {
      this.runtime.onCpu(cpu).catch((e: Error) => this.logErr([`cannot move the model ${cpu ? "to the CPU" : "back to the GPU"}: ${e.message}`]));
    }
    this.current = fault;
    const { decision, counters } = faultGate(fault, { at: "arm" }, this.counters, this.random);
    this.counters = counters;
    if (decision.act === "crash") {
      const { afterMs, exit } = decision;
      setTimeout(() => {
        this.logErr([`simulated crash (${"signal" in exit ? exit.signal : `exit ${exit.code}`})`]);
        this.exitHooks.die(exit);
      }, afterMs).unref();
    }
  }

  settleFault(fault: Fault): void {
    this.current = fault;
  }

  gate(point: GatePoint): GateDecision {
    const { decision, counters } = faultGate(this.current, point, this.counters, this.random);
    this.counters = counters;
    return decision;
  }

  // ---------------------------------------------------------------- lifecycle

  /** Starts as the kind's real server starts; resolves with an exit status when that failed, undefined once serving. */
  boot(env: BootEnv): Promise<number | undefined> {
    return this.runtime.boot(env);
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
    this.log(this.spec.listeningLine(this.options.host, this.port));
  }

  /** Stops accepting and drops open connections. */
  async close(): Promise<void> {
    this.runtime.close();
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }

  info(): InfoState {
    const o = this.options;
    const s = this.stats;
    return {
      models: o.models,
      contextTokens: o.contextTokens,
      modelfileNumCtx: o.modelfileNumCtx,
      startedAt: this.startedAt,
      slots: o.slots,
      busySlots: this.runtime.busySlots,
      running: s.running,
      promptTokensTotal: s.promptTokensTotal,
      generationTokensTotal: s.generationTokensTotal,
      requestsOk: s.requestsOk,
      ttftSum: s.ttftSum,
      ttftCount: s.ttftCount,
      modelBytes: o.modelMib * 1024 * 1024,
      vramFraction: this.current.on_cpu ? 0 : o.vramFraction,
      loaded: this.runtime.loaded,
    };
  }

  /** GET /_sim/state. */
  state(): unknown {
    return {
      kind: this.options.kind,
      pid: process.pid,
      phase: this.phase,
      port: this.port,
      models: this.options.models,
      loaded: [...this.runtime.loaded.keys()],
      requests: this.stats.requests,
      running: this.stats.running,
      fault: this.current,
      last_request: this.stats.lastRequest,
    };
  }

  // ---------------------------------------------------------------- dispatch

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://sim");
    const path = url.pathname;
    if (path.startsWith("/_sim/")) return control(this, req, res, path);
    if (this.gate({ at: "arrive" }).act === "hang") {
      // Accept and hold the connection; nothing is ever written.
      req.resume();
      return;
    }
    const method = req.method ?? "GET";
    const route = this.routes.get(`${method} ${path}`);
    if (this.phase === "loading" && !route?.duringLoad && this.spec.refusedWhileLoading.includes(method as HttpMethod)) return errorJson(res, loadingModel());
    if (!route) return this.spec.notFound(res);
    if ("api" in route) return serveInference(this, req, res, route.api);
    if ("serve" in route) return route.serve(this, req, res);
    return route.handle({ req, res, url, sim: this });
  }
}
