/** `llmsup run`: the daemon in the foreground (what systemd runs). */
import { Daemon, type DaemonOptions } from "../daemon/daemon.ts";
import { isLlmsupError } from "../errors/error.ts";
import { EXIT } from "../errors/registry.ts";
import type { ConfigProblem } from "../config/types.ts";
import { formatProblem } from "./check-config.ts";
import type { Io } from "./output.ts";

export async function runCommand(o: { config: string; logLevel?: string } & Partial<DaemonOptions>, io: Io): Promise<number> {
  const daemon = new Daemon({ ...o, configPath: o.config, logLevel: o.logLevel, env: io.env });
  try {
    await daemon.start();
  } catch (e) {
    if (isLlmsupError(e)) {
      io.stderr.write(`llmsup: cannot start: ${e.code}: ${e.message}\n`);
      for (const p of (e.details.problems as ConfigProblem[] | undefined) ?? []) io.stderr.write(`  ${formatProblem(p)}\n`);
      daemon.log.fatal({ event: "daemon.start_failed", code: e.code, problems: e.details.problems }, e.message);
      await daemon.stop("start failed").catch(() => undefined);
      return e.exitCode;
    }
    throw e;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      // The backstop: whatever hangs, the process ends a little after the shutdown deadline.
      setTimeout(() => {
        daemon.log.error({ event: "daemon.forced_exit" }, "shutdown deadline passed; exiting now");
        process.exit(EXIT.SOFTWARE);
      }, daemon.config.daemon.shutdown_timeout + 5_000).unref();
      void daemon.stop(`received ${signal}`).then(() => resolve(EXIT.OK));
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGHUP", () => {
      void daemon.reload();
    });
  });
}
