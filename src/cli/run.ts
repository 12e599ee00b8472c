/** `llmsup run`: the daemon in the foreground (what systemd runs). */
import { wireDaemon, type WireOptions } from "../daemon/wire.ts";
import { isLlmsupError } from "../errors/error.ts";
import { EXIT } from "../errors/registry.ts";
import type { ConfigProblem } from "../config/types.ts";
import { formatProblem } from "./check-config.ts";
import type { Io } from "./output.ts";

export async function runCommand(o: { config: string; logLevel?: string } & Partial<WireOptions>, io: Io): Promise<number> {
  const daemon = wireDaemon({ ...o, configPath: o.config, logLevel: o.logLevel, env: io.env });
  // Signals are heard from the first moment (SIGUSR2's default action would end the process); one that comes while
  // the daemon starts is acted on once it has started.
  let asked: { signal: string; restart: boolean } | undefined;
  let act: ((a: { signal: string; restart: boolean }) => void) | undefined;
  const hear = (signal: string, restart = false) => () => {
    if (asked) return;
    asked = { signal, restart };
    act?.(asked);
  };
  process.on("SIGTERM", hear("SIGTERM"));
  process.on("SIGINT", hear("SIGINT"));
  // systemd's RestartKillSignal: a restart, not a stop (with live_restore the backends stay up for the next llmsup).
  process.on("SIGUSR2", hear("SIGUSR2", true));
  let started = false;
  process.on("SIGHUP", () => {
    if (started) void daemon.reload();
  });
  // While it starts, the daemon may wait on nothing but timers (adopting a backend, stopping a replaced one), and timers
  // never hold the process: this does, until the daemon's sockets do.
  const starting = setInterval(() => undefined, 60_000);
  try {
    await daemon.start();
    started = true;
  } catch (e) {
    if (isLlmsupError(e)) {
      io.stderr.write(`llmsup: cannot start: ${e.code}: ${e.message}\n`);
      for (const p of (e.details.problems as ConfigProblem[] | undefined) ?? []) io.stderr.write(`  ${formatProblem(p)}\n`);
      daemon.log.fatal({ event: "daemon.start_failed", code: e.code, problems: e.details.problems }, e.message);
      await daemon.stop("start failed").catch(() => undefined);
      return e.exitCode;
    }
    throw e;
  } finally {
    clearInterval(starting);
  }
  return new Promise<number>((resolve) => {
    act = ({ signal, restart }) => {
      // The backstop: whatever hangs, the process ends a little after the shutdown deadline.
      setTimeout(() => {
        daemon.log.error({ event: "daemon.forced_exit" }, "shutdown deadline passed; exiting now");
        process.exit(EXIT.SOFTWARE);
      }, daemon.shutdownTimeout + 5_000).unref();
      void daemon.stop(restart ? `received ${signal}: restarting` : `received ${signal}`, { restart }).then(() => resolve(EXIT.OK));
    };
    if (asked) act(asked);
  });
}
