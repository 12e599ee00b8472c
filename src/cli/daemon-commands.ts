/** Commands that run or talk to the daemon: run, status, start/stop/restart/reset, drain/undrain, logs, events, reload. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parse as parseToml } from "smol-toml";
import { loadConfigFile } from "../config/load.ts";
import { callDaemon, DaemonUnreachable, streamFromDaemon } from "../control/client.ts";
import type { DaemonStatus } from "../daemon/status.ts";
import { isLlmsupError } from "../errors/error.ts";
import { EXIT } from "../errors/registry.ts";
import { formatProblem } from "./check-config.ts";
import { colourWanted, style, writeJson, type Io } from "./output.ts";
import { renderStatus } from "./status-view.ts";
import { Writable } from "node:stream";
import { parseDuration } from "../config/units.ts";
import { eventLine } from "../control/event-filter.ts";
import type { HistoryEntry } from "../daemon/state-store.ts";
import type { ConfigProblem } from "../config/types.ts";

/** Monitoring-plugin code for "unknown": the daemon cannot be asked. */
export const STATUS_UNKNOWN = 3;

export interface TargetOptions {
  readonly config: string;
  readonly socket?: string;
}

/**
 * The control socket: --socket, else the one the configuration names. A file
 * with problems still names its socket (a reload must be able to say what is
 * wrong with it), so the raw TOML is read when validation fails.
 */
export async function controlSocket(o: TargetOptions): Promise<string> {
  if (o.socket) return o.socket;
  try {
    return (await loadConfigFile(o.config)).control.socket;
  } catch (e) {
    if (!isLlmsupError(e) || e.code !== "LLMSUP_E_CONFIG_INVALID") throw e;
    const raw = parseToml(await readFile(o.config, "utf8")) as { control?: { socket?: unknown }; daemon?: { run_dir?: unknown } };
    if (typeof raw.control?.socket === "string") return raw.control.socket;
    return path.join(typeof raw.daemon?.run_dir === "string" ? raw.daemon.run_dir : "/run/llmsup", "control.sock");
  }
}

function notRunning(io: Io, e: DaemonUnreachable, o: TargetOptions): void {
  io.stderr.write(
    `${e.message}\n` +
      `Start it with \`systemctl start llmsup\` (installed) or \`llmsup run --config ${o.config}\` (foreground); \`journalctl -u llmsup\` says why it stopped.\n`,
  );
}

function configError(io: Io, e: unknown): number {
  if (!isLlmsupError(e)) throw e;
  io.stderr.write(`llmsup: ${e.code}: ${e.message}\n`);
  for (const p of (e.details.problems as ConfigProblem[] | undefined) ?? []) io.stderr.write(`  ${formatProblem(p)}\n`);
  return e.exitCode;
}

/** Finds the control socket and runs `fn` against it; an unreachable daemon is said plainly (exit 69). */
async function withDaemon(o: TargetOptions, io: Io, fn: (socket: string) => Promise<number>): Promise<number> {
  let socket: string;
  try {
    socket = await controlSocket(o);
  } catch (e) {
    return configError(io, e);
  }
  try {
    return await fn(socket);
  } catch (e) {
    if (e instanceof DaemonUnreachable) {
      notRunning(io, e, o);
      return EXIT.UNAVAILABLE;
    }
    throw e;
  }
}

export async function statusCommand(o: TargetOptions & { json?: boolean; watch?: boolean; interval?: number }, io: Io): Promise<number> {
  let socket: string;
  try {
    socket = await controlSocket(o);
  } catch (e) {
    configError(io, e);
    return STATUS_UNKNOWN;
  }
  const once = async (): Promise<number> => {
    let s: DaemonStatus;
    try {
      s = (await callDaemon<DaemonStatus>(socket, "GET", "/status", 10_000)).body;
    } catch (e) {
      if (e instanceof DaemonUnreachable) {
        if (o.json) writeJson(io, { running: false, socket, error: e.why, summary: { code: STATUS_UNKNOWN, state: "unknown", text: `UNKNOWN: ${e.message}` } });
        else notRunning(io, e, o);
        return STATUS_UNKNOWN;
      }
      io.stderr.write(`llmsup status: ${(e as Error).message}\n`);
      return STATUS_UNKNOWN;
    }
    if (o.json) writeJson(io, { running: true, ...s });
    else io.stdout.write(renderStatus(s, style(colourWanted(io.stdout, io.env))));
    return s.summary.code;
  };
  if (!o.watch) return once();
  for (;;) {
    if (io.stdout.isTTY && !o.json) io.stdout.write("\u001b[2J\u001b[H");
    await once();
    await new Promise((r) => setTimeout(r, o.interval ?? 2_000));
  }
}

export async function backendOpCommand(op: "start" | "stop" | "restart" | "reset", name: string, o: TargetOptions & { json?: boolean }, io: Io): Promise<number> {
  return withDaemon(o, io, async (socket) => {
    const r = await callDaemon<{ ok?: boolean; backend?: { state: string; reason: string; pid?: number }; error?: { code: string; message: string } }>(socket, "POST", `/backends/${encodeURIComponent(name)}/${op}`);
    if (o.json) writeJson(io, r.body);
    if (r.status !== 200) {
      if (!o.json) io.stderr.write(`llmsup ${op} ${name}: ${r.body.error?.code}: ${r.body.error?.message}\n`);
      return r.status === 404 || r.status === 409 ? EXIT.USAGE : EXIT.FAILURE;
    }
    if (!o.json) io.stdout.write(`${name}: ${r.body.backend?.state}${r.body.backend?.pid ? ` (pid ${r.body.backend.pid})` : ""} — ${r.body.backend?.reason}\n`);
    return EXIT.OK;
  });
}

/** `llmsup drain|undrain <backend>`: out of rotation (in-flight requests finish, new ones go to other tiers) or back in; the process is left alone. */
export async function drainCommand(op: "drain" | "undrain", name: string, o: TargetOptions & { json?: boolean }, io: Io): Promise<number> {
  return withDaemon(o, io, async (socket) => {
    const r = await callDaemon<{ ok?: boolean; drained?: { by: string; since: number } | null; changed?: boolean; error?: { code: string; message: string } }>(socket, "POST", `/backends/${encodeURIComponent(name)}/${op}`);
    if (o.json) writeJson(io, r.body);
    if (r.status !== 200) {
      if (!o.json) io.stderr.write(`llmsup ${op} ${name}: ${r.body.error?.code}: ${r.body.error?.message}\n`);
      return r.status === 404 ? EXIT.USAGE : EXIT.FAILURE;
    }
    if (!o.json) {
      const d = r.body.drained;
      if (d) io.stdout.write(`${name}: drained by ${d.by} since ${new Date(d.since).toISOString()}${r.body.changed ? "" : " (already)"}; requests in flight finish, new ones go to the next tier. \`llmsup undrain ${name}\` puts it back.\n`);
      else io.stdout.write(`${name}: in rotation${r.body.changed ? " again" : " (was not drained)"}\n`);
    }
    return EXIT.OK;
  });
}

export async function logsCommand(name: string, o: TargetOptions & { follow?: boolean; lines?: number; json?: boolean }, io: Io): Promise<number> {
  const n = o.lines ?? 50;
  return withDaemon(o, io, async (socket) => {
    if (o.follow) return streamFromDaemon(socket, `/backends/${encodeURIComponent(name)}/logs?n=${n}&follow=1`, io.stdout);
    const r = await callDaemon<{ lines?: string[]; error?: { code: string; message: string } }>(socket, "GET", `/backends/${encodeURIComponent(name)}/logs?n=${n}`);
    if (r.status !== 200) {
      io.stderr.write(`llmsup logs ${name}: ${r.body.error?.code}: ${r.body.error?.message}\n`);
      return EXIT.USAGE;
    }
    if (o.json) writeJson(io, r.body);
    else for (const l of r.body.lines ?? []) io.stdout.write(`${l}\n`);
    return EXIT.OK;
  });
}

/** `llmsup events`: the event history, filtered, oldest first; `-f` keeps printing new ones. */
export async function eventsCommand(o: TargetOptions & { since?: string; backend?: string; route?: string; kind?: string; follow?: boolean; json?: boolean }, io: Io): Promise<number> {
  const q = new URLSearchParams();
  if (o.since !== undefined) {
    const ms = parseDuration(o.since);
    if (ms === undefined) {
      io.stderr.write(`llmsup events: --since expects a duration such as "1h" or "30m", found ${JSON.stringify(o.since)}\n`);
      return EXIT.USAGE;
    }
    q.set("since", String(Date.now() - ms));
  }
  for (const k of ["backend", "route", "kind"] as const) if (o[k]) q.set(k, o[k]!);
  return withDaemon(o, io, async (socket) => {
    if (o.follow) {
      q.set("follow", "1");
      let rest = "";
      // One event a line (JSON), shown as it comes.
      const lines = new Writable({
        write(chunk: Buffer, _enc, done) {
          rest += chunk.toString("utf8");
          for (let i = rest.indexOf("\n"); i >= 0; i = rest.indexOf("\n")) {
            const line = rest.slice(0, i);
            rest = rest.slice(i + 1);
            if (line.trim() === "") continue;
            io.stdout.write(o.json ? `${line}\n` : `${eventLine(JSON.parse(line) as HistoryEntry)}\n`);
          }
          done();
        },
      });
      return streamFromDaemon(socket, `/events?${q}`, lines);
    }
    const r = await callDaemon<{ events?: HistoryEntry[]; error?: { code: string; message: string } }>(socket, "GET", `/events?${q}`);
    if (r.status !== 200) {
      io.stderr.write(`llmsup events: ${r.body.error?.code}: ${r.body.error?.message}\n`);
      return EXIT.FAILURE;
    }
    if (o.json) writeJson(io, r.body);
    else for (const e of r.body.events ?? []) io.stdout.write(`${eventLine(e)}\n`);
    return EXIT.OK;
  });
}

export async function reloadCommand(o: TargetOptions & { json?: boolean }, io: Io): Promise<number> {
  return withDaemon(o, io, async (socket) => {
    const r = await callDaemon<{ ok: boolean; error?: string; problems?: ConfigProblem[]; changes?: Record<string, string[]>; notes?: string[]; settings?: string[] }>(socket, "POST", "/reload");
    if (o.json) writeJson(io, r.body);
    else if (r.body.ok) {
      const c = r.body.changes ?? {};
      io.stdout.write(`reloaded: ${["unchanged", "restarted", "started", "stopped"].map((k) => `${k} ${(c[k] ?? []).join(", ") || "–"}`).join("; ")}\n`);
      // Every changed setting, each marked applied or needing a restart of llmsup (reload-plan.ts).
      const settings = r.body.settings ?? r.body.notes ?? [];
      io.stdout.write(settings.length ? settings.map((l) => `  ${l}\n`).join("") : "  no setting changed\n");
    } else {
      io.stderr.write(`reload refused, the running configuration is kept: ${r.body.error}\n`);
      for (const p of r.body.problems ?? []) io.stderr.write(`  ${formatProblem(p)}\n`);
    }
    return r.body.ok ? EXIT.OK : EXIT.CONFIG;
  });
}

export async function drillCommand(scenario: string, o: TargetOptions & { duration?: string; route?: string; json?: boolean }, io: Io): Promise<number> {
  const { renderDrill } = await import("../drills/report.ts");
  const { parseDuration } = await import("../config/units.ts");
  const durationMs = parseDuration(o.duration ?? "60s");
  if (durationMs === undefined) {
    io.stderr.write(`llmsup drill: --duration expects a duration such as "30s", found ${JSON.stringify(o.duration)}\n`);
    return EXIT.USAGE;
  }
  return withDaemon(o, io, async (socket) => {
    const q = new URLSearchParams({ duration_ms: String(durationMs), ...(o.route ? { route: o.route } : {}) });
    if (!o.json) io.stderr.write(`drill ${scenario}: holding the failure for ${o.duration ?? "60s"}, then waiting for recovery…\n`);
    const r = await callDaemon<import("../drills/report.ts").DrillReport & { error?: { code: string; message: string } }>(socket, "POST", `/drills/${encodeURIComponent(scenario)}?${q}`, durationMs + 15 * 60_000);
    if (r.status !== 200) {
      if (o.json) writeJson(io, r.body);
      else io.stderr.write(`llmsup drill ${scenario}: ${r.body.error?.code}: ${r.body.error?.message}\n`);
      return r.status === 404 ? EXIT.USAGE : EXIT.UNAVAILABLE;
    }
    if (o.json) writeJson(io, r.body);
    else io.stdout.write(renderDrill(r.body));
    return r.body.verdict === "pass" ? EXIT.OK : EXIT.FAILURE;
  });
}
