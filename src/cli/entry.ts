/**
 * What `llmsup ARGS...` does, given the streams and environment it runs with:
 * the executable (main.ts) runs it with the process's own, tests in-process
 * with captured ones, so both go through the same dispatch and exit statuses.
 */
import { EXIT } from "../errors/registry.ts";
import type { Io } from "./output.ts";

async function dispatch(argv: readonly string[], io: Io): Promise<number> {
  // The simulated nvidia-smi is started once per sample by monitors under test:
  // it skips the command-line framework and loads only what it needs.
  if (argv[0] === "sim" && argv[1] === "nvidia-smi") {
    const { runNvidiaSmi } = await import("../sim/nvidia-smi/cli.ts");
    return runNvidiaSmi(argv.slice(2), io);
  }
  if (argv[0] === "sim" && argv[1] === "backend") {
    const { runSimBackend } = await import("../sim/backend/main.ts");
    return runSimBackend(argv.slice(2), io);
  }
  if (argv[0] === "sim" && argv[1] === "vllm-engine") {
    const { runSimEngine } = await import("../sim/backend/engine.ts");
    return runSimEngine(argv[2] ?? "{}");
  }
  const { runCli } = await import("./program.ts");
  return runCli(argv, io);
}

/**
 * Runs `llmsup` with `argv` (without node and script) and resolves to its exit
 * status: usage errors 64 (see runCli), an unexpected exception 70 with its
 * stack on stderr. Never rejects.
 */
export async function runMain(argv: readonly string[], io: Io): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (e) {
    io.stderr.write(`llmsup: internal error (LLMSUP_E_INTERNAL): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return EXIT.SOFTWARE;
  }
}
