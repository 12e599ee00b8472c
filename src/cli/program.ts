/** The `llmsup` command line: one commander program, each command in its own module. */
import { Command, CommanderError, Option } from "commander";
import { DEFAULT_CONFIG_PATH } from "../config/load.ts";
import { EXIT } from "../errors/registry.ts";
import { packageVersion } from "../platform/version.ts";
import { checkConfigCommand } from "./check-config.ts";
import { colourWanted, processIo, type Io } from "./output.ts";

/** The configuration path: an explicit one, else $LLMSUP_CONFIG, else /etc/llmsup/supervisor.toml. */
export function configPath(explicit: string | undefined, env: NodeJS.ProcessEnv): string {
  return explicit ?? env.LLMSUP_CONFIG ?? DEFAULT_CONFIG_PATH;
}

/** The width help is wrapped to: a terminal's, else commander's default of 80. */
function helpWidth(stream: Io["stdout"]): number {
  return (stream.isTTY ? (stream as { columns?: number }).columns : undefined) ?? 80;
}

export function buildProgram(io: Io, setExit: (code: number) => void): Command {
  const program = new Command("llmsup")
    .description("Host-level supervisor for GPU inference servers (vLLM, Ollama, llama.cpp) with an OpenAI-compatible failover router.")
    .version(packageVersion(), "-V, --version")
    .showHelpAfterError("(run `llmsup --help` for usage)")
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      // Commander would look at process.stdout/stderr and process.env; the Io is what this run writes to.
      getOutHelpWidth: () => helpWidth(io.stdout),
      getErrHelpWidth: () => helpWidth(io.stderr),
      getOutHasColors: () => colourWanted(io.stdout, io.env),
      getErrHasColors: () => colourWanted(io.stderr, io.env),
    })
    .exitOverride();

  program
    .command("check-config")
    .description("validate a configuration file and check it can run on this host; exit 0 when valid (warnings printed), 78 listing every problem otherwise")
    .argument("[path]", `configuration file (default: $LLMSUP_CONFIG or ${DEFAULT_CONFIG_PATH})`)
    .addOption(new Option("-c, --config <path>", "the same as PATH, as every other command takes it"))
    .addOption(new Option("--json", "machine-readable output"))
    .addOption(new Option("--offline", "check only the file, not this host (CI, staging roots)"))
    .addOption(new Option("--env-file <file>", "an EnvironmentFile the daemon gets (repeatable)").argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]))
    .addOption(new Option("--user <name>", "the user the daemon runs as (the unit's User=); default: the current user"))
    .action(async (path: string | undefined, opts: { config?: string; json?: boolean; offline?: boolean; envFile?: string[]; user?: string }) => {
      setExit(await checkConfigCommand(configPath(path ?? opts.config, io.env), opts, io));
    });

  const gpus = program
    .command("gpus")
    .description("one-shot snapshot of every GPU: condition, faults and processes (works without the daemon; exit 69 when nvidia-smi is missing or fails)")
    .addOption(new Option("--json", "machine-readable output"))
    .addOption(new Option("--config <path>", `configuration file (default: $LLMSUP_CONFIG or ${DEFAULT_CONFIG_PATH}; built-in defaults when that is absent)`))
    .addOption(new Option("--nvidia-smi <path>", "nvidia-smi to run (overrides [gpu] nvidia_smi)"))
    .action(async (opts: { json?: boolean; config?: string; nvidiaSmi?: string }) => {
      const { gpusCommand } = await import("./gpus.ts");
      setExit(await gpusCommand(opts, io));
    });

  const target = (c: Command) =>
    c
      .option("-c, --config <path>", `configuration file (default: $LLMSUP_CONFIG or ${DEFAULT_CONFIG_PATH})`)
      .option("--socket <path>", "control socket (default: control.socket from the configuration)");

  target(
    gpus
      .command("clear")
      .description("tell the running daemon a GPU's event faults (XIDs, ECC error rises) are dealt with — after a reset or a reboot by hand: they clear now, with your reason; exit 0 also when there was nothing to clear, 64 for an unknown GPU")
      .argument("[gpu]", "GPU index")
      .option("--all", "every GPU")
      .option("--reason <text>", "why (it goes into the clear's reason, the log and the mail)")
      .option("--json", "machine-readable output"),
  ).action(async (gpu: string | undefined, _opts: unknown, cmd: Command) => {
    // `gpus` has --json and --config of its own: commander gives them to it wherever they stand.
    const opts = cmd.optsWithGlobals<{ config?: string; socket?: string; all?: boolean; reason?: string; json?: boolean }>();
    const { gpusClearCommand } = await import("./daemon-commands.ts");
    setExit(await gpusClearCommand(gpu, { ...opts, config: configPath(opts.config, io.env) }, io));
  });

  program
    .command("run")
    .description("run the daemon in the foreground (what the systemd unit runs); SIGHUP reloads, SIGTERM stops, SIGUSR2 exits leaving the backends running for the next llmsup (live_restore)")
    .option("-c, --config <path>", `configuration file (default: $LLMSUP_CONFIG or ${DEFAULT_CONFIG_PATH})`)
    .addOption(new Option("--log-level <level>", "override daemon.log_level").choices(["trace", "debug", "info", "warn", "error", "fatal", "silent"]))
    .action(async (opts: { config?: string; logLevel?: string }) => {
      const { runCommand } = await import("./run.ts");
      setExit(await runCommand({ config: configPath(opts.config, io.env), logLevel: opts.logLevel }, io));
    });

  target(
    program
      .command("status")
      .description("is the LLM API up, on which tier, and what is wrong; exit 0 ok, 1 degraded, 2 critical, 3 unknown (daemon not reachable)")
      .option("--json", "machine-readable output")
      .option("-w, --watch", "refresh every 2 seconds"),
  ).action(async (opts: { config?: string; socket?: string; json?: boolean; watch?: boolean }) => {
    const { statusCommand } = await import("./daemon-commands.ts");
    setExit(await statusCommand({ ...opts, config: configPath(opts.config, io.env) }, io));
  });

  for (const [op, what] of [
    ["start", "start a stopped managed backend"],
    ["stop", "stop a managed backend (process group: SIGTERM, then SIGKILL) and keep it stopped"],
    ["restart", "restart a managed backend now (does not count against its restart budget)"],
    ["reset", "leave fatal: forget the failed starts and start the backend again"],
  ] as const) {
    target(program.command(op).description(what).argument("<backend>", "backend name").option("--json", "machine-readable output")).action(
      async (name: string, opts: { config?: string; socket?: string; json?: boolean }) => {
        const { backendOpCommand } = await import("./daemon-commands.ts");
        setExit(await backendOpCommand(op, name, { ...opts, config: configPath(opts.config, io.env) }, io));
      },
    );
  }

  for (const [op, what] of [
    ["drain", "take a backend out of rotation (maintenance): requests in flight finish, new ones go to the next tier; says how many are still on it; no failover mail; kept across reloads and restarts"],
    ["undrain", "put a drained backend back in rotation"],
  ] as const) {
    const c = program.command(op).description(what).argument("<backend>", "backend name").option("--json", "machine-readable output");
    if (op === "drain") {
      c.option("--wait", "wait until no request is left on it: exit 0 drained and idle, 75 when --timeout passes first").option("--timeout <duration>", "how long --wait waits, e.g. 30s (default 5m; implies --wait)");
    }
    target(c).action(async (name: string, opts: { config?: string; socket?: string; json?: boolean; wait?: boolean; timeout?: string }) => {
      const { drainCommand } = await import("./daemon-commands.ts");
      setExit(await drainCommand(op, name, { ...opts, config: configPath(opts.config, io.env) }, io));
    });
  }

  target(
    program
      .command("logs")
      .description("the last lines a managed backend printed (stdout and stderr)")
      .argument("<backend>", "backend name")
      .option("-f, --follow", "keep printing new lines")
      .option("-n, --lines <n>", "how many lines", (v) => Number.parseInt(v, 10), 50)
      .option("--json", "machine-readable output"),
  ).action(async (name: string, opts: { config?: string; socket?: string; follow?: boolean; lines?: number; json?: boolean }) => {
    const { logsCommand } = await import("./daemon-commands.ts");
    setExit(await logsCommand(name, { ...opts, config: configPath(opts.config, io.env) }, io));
  });

  target(
    program
      .command("events")
      .description("what happened: failovers, recoveries, exits, restarts, GPU faults, reloads, drills (kept in state_dir across restarts)")
      .option("--since <duration>", "only the last DURATION (e.g. 1h, 30m)")
      .option("--backend <name>", "only events about this backend")
      .option("--route <model>", "only events about this route")
      .option("--kind <kind>", "only this kind (failover, recovery, exit, restart, fatal, breaker, gpu_fault, gpu_remediation, blocked, daemon, drill, …)")
      .option("-f, --follow", "keep printing new events")
      .option("--json", "machine-readable output (one JSON object a line with --follow)"),
  ).action(async (opts: { config?: string; socket?: string; since?: string; backend?: string; route?: string; kind?: string; follow?: boolean; json?: boolean }) => {
    const { eventsCommand } = await import("./daemon-commands.ts");
    setExit(await eventsCommand({ ...opts, config: configPath(opts.config, io.env) }, io));
  });

  target(program.command("reload").description("re-read the configuration: unchanged backends keep running, changed ones restart; an invalid file is refused").option("--json", "machine-readable output")).action(
    async (opts: { config?: string; socket?: string; json?: boolean }) => {
      const { reloadCommand } = await import("./daemon-commands.ts");
      setExit(await reloadCommand({ ...opts, config: configPath(opts.config, io.env) }, io));
    },
  );

  target(
    program
      .command("drill")
      .description(
        "rehearse a failure and report detection, failover and recovery times, client errors and the alert: primary-outage | backend-crash | backend-hang, or a router fault: latency | errors | rate-limit | stream-cut | quality | block; `drill gameday` runs them one after another into a scorecard; `drill stop` ends the one running; exit 0 pass, 1 fail",
      )
      .argument("<scenario>", "primary-outage, backend-crash, backend-hang, latency, errors, rate-limit, stream-cut, quality, block; or gameday, stop")
      .option("--duration <d>", "how long the failure is held (default 60s; 30s per scenario for gameday)")
      .option("--route <model>", "the route to drill (default: the first)")
      .option("--json", "machine-readable output")
      .option("--no-traffic", "send no requests of the drill's own: observe real traffic only")
      .option("--scenarios <list>", "gameday: the drills to run, comma-separated (default: every router fault, and the process drills when tier 0 is managed)")
      .option("--html <file>", "gameday: also write the scorecard as a self-contained HTML page")
      .option("--delay <d>", "latency: added to the first tier's first token (default: its ttft_timeout and 1s more, past what the route tolerates)")
      .option("--fraction <f>", "errors, rate-limit: the share of attempts that fail (default 1)")
      .option("--status <code>", "errors: the 5xx status (default 503)")
      .option("--retry-after <d>", "rate-limit: the Retry-After the 429 carries (default 10s)")
      .option("--chunks <n>", "stream-cut: SSE events before the connection resets (default 3)")
      .option("--seed <n>", "errors, rate-limit: the seed that draws which attempts fail (default 1)"),
  ).action(async (scenario: string, opts: { config?: string; socket?: string } & import("./drill-commands.ts").DrillCliOptions) => {
    const { drillCommand } = await import("./daemon-commands.ts");
    setExit(await drillCommand(scenario, { ...opts, config: configPath(opts.config, io.env) }, io));
  });

  program
    .command("demo")
    .description("run llmsup end to end on built-in simulated GPUs and inference servers, with instructions to cause failures")
    .option("--dir <path>", "where to write the demo's configuration and state (default: a new temporary directory)")
    .option("--port <n>", "TCP port of the routing socket (default 8181, or a free one)", (v) => Number.parseInt(v, 10))
    .action(async (opts: { dir?: string; port?: number }) => {
      const { demoCommand } = await import("./demo.ts");
      setExit(await demoCommand(opts, io));
    });

  program
    .command("test-alert")
    .description("send one test mail through [alerts.smtp] now and show the server's answer; exit 0 when accepted, 78 login refused, 69 unreachable/TLS/refused")
    .option("-c, --config <path>", `configuration file (default: $LLMSUP_CONFIG or ${DEFAULT_CONFIG_PATH})`)
    .addOption(new Option("--json", "machine-readable output"))
    .action(async (opts: { config?: string; json?: boolean }) => {
      const { testAlertCommand } = await import("./test-alert.ts");
      setExit(await testAlertCommand({ config: configPath(opts.config, io.env), json: opts.json }, io));
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
