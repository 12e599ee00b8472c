#!/usr/bin/env node
/** Entry point of the `llmsup` executable. */
import { EXIT } from "../errors/registry.ts";
import { processIo } from "./output.ts";

async function main(argv: readonly string[]): Promise<number> {
  // The simulated nvidia-smi is started once per sample by monitors under test:
  // it skips the command-line framework and loads only what it needs.
  if (argv[0] === "sim" && argv[1] === "nvidia-smi") {
    const { runNvidiaSmi } = await import("../sim/nvidia-smi/cli.ts");
    return runNvidiaSmi(argv.slice(2), processIo());
  }
  if (argv[0] === "sim" && argv[1] === "backend") {
    const { runSimBackend } = await import("../sim/backend/main.ts");
    return runSimBackend(argv.slice(2), processIo());
  }
  if (argv[0] === "sim" && argv[1] === "vllm-engine") {
    const { runSimEngine } = await import("../sim/backend/engine.ts");
    return runSimEngine(argv[2] ?? "{}");
  }
  const { runCli } = await import("./program.ts");
  return runCli(argv);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`llmsup: internal error (LLMSUP_E_INTERNAL): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = EXIT.SOFTWARE;
  },
);
