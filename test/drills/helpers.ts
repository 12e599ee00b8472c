/**
 * A real daemon (in the test's process, so the test follows its events and
 * log) on two simulated llama-servers, "primary" and "fallback", one route
 * "llama" over them, alerts to a real SMTP server; the CLI talks to it
 * through the control socket as an operator's would.
 */
import assert from "node:assert/strict";
import type { DaemonEvent } from "../../src/daemon/daemon.ts";
import { wireDaemon } from "../../src/daemon/wire.ts";
import { SMTP_PASSWORD, SMTP_USER, startSmtp } from "../alerts/helpers.ts";
import { runCliInProcess, type CliResult } from "../helpers/cli.ts";
import { writeDaemonConfig } from "../helpers/daemon.ts";
import { memoryLogger } from "../helpers/supervise.ts";

/** Tier 0 times out its first token at 600 ms and is not hedged (a slow first token is a timeout, not a race). */
export const DRILL_ROUTE = `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m", ttft_timeout = "600ms", hedge_after = "off" }, { backend = "fallback", model = "m" }]\n`;

const PROBES = `[backend.health]\nprobe_interval = "300ms"`;

/** `remotePrimary`: tier 0 is a remote backend at that URL (a simulator the test started), not a managed one. */
/** `probes: false`: the backends keep the default probe interval. */
export async function drillDaemon(t: { after(fn: () => unknown): void }, o: { schedule?: string; route?: string; remotePrimary?: string; probes?: boolean } = {}) {
  const probes = o.probes === false ? "" : PROBES;
  // Cleanups run daemon first, then its files and the SMTP server (last in, first out).
  const cleanups: (() => unknown)[] = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c();
  });
  const scope = { after: (fn: () => unknown) => void cleanups.push(fn) };
  const smtp = await startSmtp(scope);
  const files = await writeDaemonConfig(
    scope,
    [
      ...(o.remotePrimary ? [] : [{ name: "primary", kind: "llamacpp" as const, process: `  restart_sec = "300ms"\n  restart_max_delay = "300ms"`, extra: probes }]),
      { name: "fallback", kind: "llamacpp", extra: probes },
    ],
    `${o.remotePrimary ? `[[backend]]\nname = "primary"\nkind = "llamacpp"\nurl = "${o.remotePrimary}"\n${probes}\n\n` : ""}${o.route ?? DRILL_ROUTE}`,
    `[router.breaker]\nfailure_threshold = 2\nopen_interval = "1s"\n[alerts]\nenabled = true\nfrom = "llmsup@box.example.com"\nto = ["oncall@example.com"]\n[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "TEST_SMTP_PASSWORD"\ntimeout = "3s"\n${o.schedule ?? ""}`,
  );
  const mem = memoryLogger();
  const daemon = wireDaemon({ configPath: files.config, logger: mem.logger, env: { ...process.env, TEST_SMTP_PASSWORD: SMTP_PASSWORD } });
  const events: DaemonEvent[] = [];
  daemon.subscribe((e) => events.push(e));
  cleanups.push(() => daemon.stop("the test is over"));
  await daemon.start();
  const cli = (...args: string[]): Promise<CliResult> => runCliInProcess([...args, "--config", files.config]);
  const deadline = Date.now() + 20_000;
  const serving = () => daemon.status().backends.every((b) => b.state === "ready" || b.state === "remote") && daemon.status().router.routes[0]!.serving_tier === 0;
  while (!serving()) {
    if (Date.now() > deadline) assert.fail(`both backends never became ready:\n${JSON.stringify(daemon.status(), null, 1).slice(0, 3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { smtp, files, daemon, events, cli, log: mem.lines };
}
