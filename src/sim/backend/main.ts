/** `llmsup sim backend`: runs one simulated inference server as this process. */
import type { Io } from "../../cli/output.ts";
import { gpuHooks } from "./gpu-hooks.ts";
import { KINDS } from "./kinds/index.ts";
import { parseSimBackendArgs, SIM_BACKEND_USAGE, SimUsageError } from "./options.ts";
import { SimBackendServer } from "./server.ts";

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
  const spec = KINDS[options.kind];
  // The server process holds the GPU memory itself, unless a child does (vLLM's engine).
  const hooks = spec.gpuProcessName === undefined ? undefined : gpuHooks(options.gpuState, options.gpus, spec.gpuProcessName);
  let stopping = false;
  const stoppers: (() => Promise<void>)[] = [];
  const stopChildren = async () => {
    for (const stop of stoppers) await stop();
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
        void stopChildren().finally(() => process.exit(code ?? 1));
      },
    },
    hooks,
  );

  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    server.log(spec.shutdownLine());
    await server.close();
    await stopChildren();
    await hooks?.hold(0).catch(() => undefined);
    process.exit(code);
  };
  process.on("SIGTERM", () => void shutdown(0));
  process.on("SIGINT", () => void shutdown(0));

  // The start fault takes effect now: a crash is scheduled from here.
  server.setFault(options.fault);

  const failed = await server.boot({ stopping: () => stopping, onStop: (stop) => void stoppers.push(stop) });
  if (failed !== undefined) return failed;
  return new Promise<number>(() => undefined);
}
