/** The `llmsup` command line: one commander program, each command in its own module. */
import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { DEFAULT_CONFIG_PATH } from "../config/load.ts";
import { EXIT } from "../errors/registry.ts";
import { checkConfigCommand } from "./check-config.ts";
import { processIo, type Io } from "./output.ts";

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/** The configuration path: an explicit one, else $LLMSUP_CONFIG, else /etc/llmsup/supervisor.toml. */
export function configPath(explicit: string | undefined, env: NodeJS.ProcessEnv): string {
  return explicit ?? env.LLMSUP_CONFIG ?? DEFAULT_CONFIG_PATH;
}

export function buildProgram(io: Io, setExit: (code: number) => void): Command {
  const program = new Command("llmsup")
    .description("Host-level supervisor for GPU inference servers (vLLM, Ollama, llama.cpp) with an OpenAI-compatible failover router.")
    .version(packageVersion(), "-V, --version")
    .showHelpAfterError("(run `llmsup --help` for usage)")
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .exitOverride();

  program
    .command("check-config")
    .description("validate a configuration file; exit 0 when valid, 78 listing every problem otherwise")
    .argument("[path]", `configuration file (default: $LLMSUP_CONFIG or ${DEFAULT_CONFIG_PATH})`)
    .addOption(new Option("--json", "machine-readable output"))
    .action(async (path: string | undefined, opts: { json?: boolean }) => {
      setExit(await checkConfigCommand(configPath(path, io.env), opts, io));
    });

  const sim = program
    .command("sim")
    .description("simulated inference servers and GPUs, for demos, drills and tests (no GPU needed)");
  sim
    .command("backend")
    .description("run a simulated vLLM, Ollama or llama-server (see `llmsup sim backend --help`)")
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument("[options...]");
  sim
    .command("nvidia-smi")
    .description("a simulated nvidia-smi reading the GPU state file ($LLMSUP_SIM_GPU_STATE or --sim-state)")
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument("[args...]");
  sim
    .command("gpu")
    .description("edit the simulated GPU state: init, show, set, wrapper (see `llmsup sim gpu --help`)")
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument("[args...]")
    .action(async (args: string[]) => {
      const { runSimGpu } = await import("../sim/gpu/cli.ts");
      setExit(await runSimGpu(args, io));
    });

  return program;
}

/** Runs the CLI with `argv` (without node and script); resolves to the exit status. */
export async function runCli(argv: readonly string[], io: Io = processIo()): Promise<number> {
  let code: number = EXIT.OK;
  const program = buildProgram(io, (c) => {
    code = c;
  });
  try {
    await program.parseAsync([...argv], { from: "user" });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.code === "commander.help") return EXIT.OK;
      if (e.code === "commander.executeSubCommandAsync") return e.exitCode;
      return EXIT.USAGE;
    }
    throw e;
  }
}
