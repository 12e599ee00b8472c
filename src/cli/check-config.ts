/**
 * `llmsup check-config [PATH]`: validate a configuration and list every problem.
 * By default it also proves the configuration can run on this host (programs,
 * secrets, variables, GPUs, ports; see config/host-checks.ts); `--offline`
 * checks only the file, for CI and staging roots.
 */
import { loadConfigFile } from "../config/load.ts";
import { checkHost } from "../config/host-facts.ts";
import type { HostReport } from "../config/host-checks.ts";
import type { Config, ConfigProblem } from "../config/types.ts";
import { isLlmsupError, LlmsupError } from "../errors/error.ts";
import { EXIT } from "../errors/registry.ts";
import { colourWanted, style, writeJson, type Io } from "./output.ts";

export interface CheckConfigOptions {
  readonly json?: boolean;
  /** Check only the file, not this host. */
  readonly offline?: boolean;
  /** EnvironmentFile(s) the daemon gets, added to the current environment. */
  readonly envFile?: readonly string[];
  /** The user the daemon runs as (the unit's User=); default: the current user. */
  readonly user?: string;
}

/** Loads the file, then (unless offline) checks the host; throws LLMSUP_E_CONFIG_HOST with every host error. */
export async function checkConfig(file: string, opts: CheckConfigOptions, env: NodeJS.ProcessEnv): Promise<{ config: Config; host?: HostReport }> {
  const config = await loadConfigFile(file);
  if (opts.offline) return { config };
  let host: HostReport;
  try {
    host = await checkHost(config, { env, envFiles: opts.envFile, user: opts.user, cwd: process.cwd() });
  } catch (e) {
    if (isLlmsupError(e)) throw e;
    const err = e as NodeJS.ErrnoException;
    throw new LlmsupError("LLMSUP_E_USAGE", err.code ? `cannot read ${err.path ?? "an --env-file"}: ${err.code}` : err.message);
  }
  if (host.errors.length > 0) {
    throw new LlmsupError("LLMSUP_E_CONFIG_HOST", `${file}: ${plural(host.errors.length, "problem")} on this host`, {
      path: file,
      problems: host.errors,
      warnings: host.warnings,
      skipped: host.skipped,
    });
  }
  return { config, host };
}

export async function checkConfigCommand(file: string, opts: CheckConfigOptions, io: Io): Promise<number> {
  try {
    const { config, host } = await checkConfig(file, opts, io.env);
    const managed = config.backends.filter((b) => b.managed).length;
    const summary = {
      valid: true,
      source: config.source,
      host_checked: host !== undefined,
      backends: config.backends.length,
      managed,
      remote: config.backends.length - managed,
      routes: config.routes.length,
      warnings: host?.warnings ?? [],
      skipped: host?.skipped ?? [],
    };
    if (opts.json) writeJson(io, summary);
    else {
      const s = style(colourWanted(io.stdout, io.env));
      io.stdout.write(
        `${file}: ${s.green("valid")}, ${plural(summary.backends, "backend")} (${managed} managed, ${summary.remote} remote), ${plural(summary.routes, "route")}${host ? ", can run on this host" : ""}\n`,
      );
      writeWarnings(io, file, summary.warnings, summary.skipped);
    }
    return EXIT.OK;
  } catch (e) {
    if (!isLlmsupError(e)) throw e;
    const problems = (e.details.problems as ConfigProblem[] | undefined) ?? [];
    const warnings = (e.details.warnings as ConfigProblem[] | undefined) ?? [];
    const skipped = (e.details.skipped as string[] | undefined) ?? [];
    if (opts.json) {
      writeJson(io, { valid: false, source: file, code: e.code, message: e.message, problems, warnings, skipped });
    } else {
      const s = style(colourWanted(io.stderr, io.env));
      if (problems.length === 0) io.stderr.write(`${s.red("error")} ${e.code}: ${e.message}\n`);
      else {
        const where = e.code === "LLMSUP_E_CONFIG_HOST" ? " on this host" : "";
        io.stderr.write(`${file}: ${s.red(plural(problems.length, "problem"))}${where} (${e.code})\n`);
        for (const p of problems) io.stderr.write(`  ${formatProblem(p, s.bold)}\n`);
        if (where) io.stderr.write(`  (\`llmsup check-config --offline\` checks only the file)\n`);
      }
      writeWarnings(io, file, warnings, skipped);
    }
    return e.exitCode;
  }
}

function writeWarnings(io: Io, file: string, warnings: readonly ConfigProblem[], skipped: readonly string[]): void {
  const s = style(colourWanted(io.stderr, io.env));
  if (warnings.length > 0) {
    io.stderr.write(`${file}: ${s.yellow(plural(warnings.length, "warning"))}\n`);
    for (const w of warnings) io.stderr.write(`  ${formatProblem(w, s.bold)}\n`);
  }
  for (const k of skipped) io.stderr.write(`${s.dim("note")} ${k}\n`);
}

export function formatProblem(p: ConfigProblem, emphasis: (s: string) => string = (s) => s): string {
  const where = p.path === "" ? (p.line !== undefined ? `line ${p.line}, column ${p.column}` : "(file)") : emphasis(p.path);
  return `${where}: ${p.message}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
