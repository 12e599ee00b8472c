/** `llmsup sim backend`: runs one simulated inference server as this process. */
import { spawn, type ChildProcess } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import type { Io } from "../../cli/output.ts";
import { selfCommand } from "../../platform/self.ts";
import type { EngineOptions } from "./engine.ts";
import { gpuHooks } from "./gpu-hooks.ts";
import { oomAtLoadLines } from "./kinds.ts";
import { parseSimBackendArgs, SIM_BACKEND_USAGE, SimUsageError } from "./options.ts";
import { SimBackendServer } from "./server.ts";

const PROCESS_NAMES = { vllm: "python3", llamacpp: "/usr/local/bin/llama-server", ollama: "/usr/local/bin/ollama" } as const;

export async function runSimBackend(argv: readonly string[], io: Io): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    io.stdout.write(SIM_BACKEND_USAGE);
    return 0;
  }
  let options;
  try {
    options = parseSimBackendArgs(argv, io.env);
  } catch (e) {
    if (e instanceof SimUsageError) {
      io.stderr.write(`llmsup sim backend: ${e.message}\n\n${SIM_BACKEND_USAGE}`);
      return 64;
    }
    throw e;
  }
  const kind = options.kind;
  let engine: ChildProcess | undefined;
  // llama-server and Ollama hold GPU memory themselves; vLLM's engine child does.
  const hooks = kind === "vllm" ? undefined : gpuHooks(options.gpuState, options.gpus, PROCESS_NAMES[kind]);
  let stopping = false;

  const stopEngine = async () => {
    if (!engine || engine.exitCode !== null || engine.signalCode !== null) return;
    engine.kill("SIGTERM");
    await Promise.race([new Promise((r) => engine!.once("exit", r)), sleep(5_000)]);
  };

  const server = new SimBackendServer(
    options,
    io,
    {
      exit: (code) => void shutdown(code),
      die: ({ code, signal }) => {
        if (signal) {
          // No clean-up at all: a vLLM engine child survives and keeps its memory.
          process.kill(process.pid, signal);
          return;
        }
        // A crash with an exit status: Python's atexit still ends vLLM's daemonic engine.
        void stopEngine().finally(() => process.exit(code ?? 1));
      },
    },
    hooks,
  );

  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    server.log(kind === "vllm" ? "INFO:     Shutting down" : kind === "llamacpp" ? "srv    operator(): operator(): cleaning up before exit..." : `time=${new Date().toISOString()} level=INFO msg="shutting down"`);
    await server.close();
    await stopEngine();
    await hooks?.hold(0).catch(() => undefined);
    process.exit(code);
  };
  process.on("SIGTERM", () => void shutdown(0));
  process.on("SIGINT", () => void shutdown(0));

  if (options.fault.crash) server.scheduleCrash(options.fault.crash);

  if (kind === "vllm") {
    server.log(`INFO: vLLM API server version ${"0.11.0"} (simulated) model=${options.models[0]} max_model_len=${options.contextTokens}`);
    const engineOptions: EngineOptions = {
      gpuState: options.gpuState,
      gpus: options.gpus,
      utilization: options.gpuMemoryUtilization,
      loadMs: options.loadMs,
      oomAtLoad: options.fault.oom === "load",
      model: options.models[0]!,
    };
    const [node, entry] = selfCommand();
    engine = spawn(node, [entry, "sim", "vllm-engine", JSON.stringify(engineOptions)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const ready = await new Promise<boolean>((resolve) => {
      engine!.once("message", (m: { type?: string }) => resolve(m?.type === "ready"));
      engine!.once("exit", () => resolve(false));
    });
    if (!ready) {
      server.logErr(["RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {'EngineCore_DP0': 1}"]);
      return 1;
    }
    engine.on("exit", () => {
      if (!stopping) server.engineDied();
    });
    server.engineOom = () => engine?.send({ type: "oom" });
    await server.listen();
    server.phase = "ready";
    server.log("INFO:     Application startup complete.");
  } else if (kind === "llamacpp") {
    await server.listen();
    server.log(`srv    load_model: loading model '${options.models[0]}'`);
    await sleep(options.loadMs);
    const room = options.fault.oom === "load" ? { gpu: options.gpus[0] ?? 0, freeMib: 0, totalMib: (await hooks?.totalMib()) ?? 81559 } : await hooks?.checkRoom(options.modelMib);
    if (room) {
      server.logErr(oomAtLoadLines("llamacpp", room.gpu, options.modelMib, room.freeMib, room.totalMib, options.models[0]!));
      await server.close();
      return 1;
    }
    await hooks?.hold(options.modelMib);
    server.phase = "ready";
    server.log("srv  update_slots: all slots are idle");
  } else {
    await server.listen();
    server.phase = "ready";
  }
  return new Promise<number>(() => undefined);
}
