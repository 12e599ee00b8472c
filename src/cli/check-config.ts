/** `llmsup check-config [PATH]`: validate a configuration and list every problem. */
import { loadConfigFile } from "../config/load.ts";
import type { ConfigProblem } from "../config/types.ts";
import { isLlmsupError } from "../errors/error.ts";
import { EXIT } from "../errors/registry.ts";
import { colourWanted, style, writeJson, type Io } from "./output.ts";

export async function checkConfigCommand(file: string, opts: { json?: boolean }, io: Io): Promise<number> {
  try {
    const config = await loadConfigFile(file);
    const managed = config.backends.filter((b) => b.managed).length;
    const summary = {
      valid: true,
      source: config.source,
      backends: config.backends.length,
      managed,
      remote: config.backends.length - managed,
      routes: config.routes.length,
    };
    if (opts.json) writeJson(io, summary);
    else {
      const s = style(colourWanted(io.stdout, io.env));
      io.stdout.write(
        `${file}: ${s.green("valid")}, ${plural(summary.backends, "backend")} (${managed} managed, ${summary.remote} remote), ${plural(summary.routes, "route")}\n`,
      );
    }
    return EXIT.OK;
  } catch (e) {
    if (!isLlmsupError(e)) throw e;
    const problems = (e.details.problems as ConfigProblem[] | undefined) ?? [];
    if (opts.json) {
      writeJson(io, { valid: false, source: file, code: e.code, message: e.message, problems });
    } else {
      const s = style(colourWanted(io.stderr, io.env));
      if (problems.length === 0) io.stderr.write(`${s.red("error")} ${e.code}: ${e.message}\n`);
      else {
        io.stderr.write(`${file}: ${s.red(plural(problems.length, "problem"))} (${e.code})\n`);
        for (const p of problems) io.stderr.write(`  ${formatProblem(p, s.bold)}\n`);
      }
    }
    return e.exitCode;
  }
}

export function formatProblem(p: ConfigProblem, emphasis: (s: string) => string = (s) => s): string {
  const where = p.path === "" ? (p.line !== undefined ? `line ${p.line}, column ${p.column}` : "(file)") : emphasis(p.path);
  return `${where}: ${p.message}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
