/** Commands that run or talk to the daemon: run, status, start/stop/restart/reset, drain/undrain, logs, events, reload, gpus clear. */
import { formatWhen } from "../alerts/text.ts";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parse as parseToml } from "smol-toml";
import { loadConfigFile } from "../config/load.ts";
import { callDaemon, DaemonUnreachable, streamFromDaemon } from "../control/client.ts";
import type { DaemonStatus } from "../daemon/status.ts";
import { isLlmsupError } from "../errors/error.ts";
import { ERRORS, EXIT, type ErrorCode } from "../errors/registry.ts";
import { formatProblem } from "./check-config.ts";
import { colourWanted, style, writeJson, type Io } from "./output.ts";
import { renderStatus } from "./status-view.ts";
import { Writable } from "node:stream";
import { formatDuration, parseDuration } from "../config/units.ts";
import { eventLine } from "../control/event-filter.ts";
import { drillDurationProblem } from "../control/request.ts";
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
export async function withDaemon(o: TargetOptions, io: Io, fn: (socket: string) => Promise<number>): Promise<number> {
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

/**
 * A command that acts, refused by the daemon because the caller may not act
 * (403) or could not prove who it is (401): said with the code and the
 * daemon's message, ending with the registry's exit status (77). Undefined
 * for any other answer.
 */
export function refusedToAct(io: Io, what: string, r: { status: number; body: unknown }, json: boolean | undefined): number | undefined {
  if (r.status !== 401 && r.status !== 403) return undefined;
  const error = (r.body as { error?: { code?: string; message?: string } }).error;
  const code = error?.code;
  if (code !== "LLMSUP_E_CONTROL_FORBIDDEN" && code !== "LLMSUP_E_CONTROL_UNAUTHENTICATED") return undefined;
  if (json) writeJson(io, r.body);
  else io.stderr.write(`llmsup ${what}: ${code}: ${error?.message}\n`);
  return ERRORS[code].exit;
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
      const code = r.body.error?.code;
      const known = code !== undefined && code in ERRORS ? ERRORS[code as ErrorCode] : undefined;
      if (!o.json) io.stderr.write(`llmsup ${op} ${name}: ${code}: ${r.body.error?.message}\n${known ? `  ${known.message}\n` : ""}`);
      // The registry's exit status for the error, so that a script can tell "held" (try later) from a typo.
      return known?.exit ?? (r.status === 404 || r.status === 409 ? EXIT.USAGE : EXIT.FAILURE);
    }
    if (!o.json) io.stdout.write(`${name}: ${r.body.backend?.state}${r.body.backend?.pid ? ` (pid ${r.body.backend.pid})` : ""} — ${r.body.backend?.reason}\n`);
    return EXIT.OK;
  });
}

/** How long `llmsup drain --wait` waits for the requests on the backend without --timeout. */
export const DRAIN_WAIT_DEFAULT_MS = 5 * 60_000;
/** How often `--wait` asks the daemon. */
const DRAIN_POLL_MS = 200;

interface DrainBody {
  readonly ok?: boolean;
  readonly backend?: string;
  readonly drained?: { readonly by: string; readonly since: number } | null;
  readonly changed?: boolean;
  /** Requests the router has on the backend now. */
  readonly inflight?: number;
  readonly error?: { readonly code: string; readonly message: string };
}

const requests = (n: number) => `${n} ${n === 1 ? "request" : "requests"}`;
const onIt = (n: number) => (n === 0 ? "no requests on it" : `${requests(n)} still on it`);

/**
 * `llmsup drain|undrain <backend>`: out of rotation (in-flight requests
 * finish, new ones go to other tiers) or back in; the process is left alone.
 * The answer says how many requests are still on it; `--wait` waits (up to
 * `--timeout`, 5m by default) until none is: exit 0 drained and idle, 75
 * (LLMSUP_E_DRAIN_TIMEOUT) with requests still on it when the time is up.
 */
export async function drainCommand(op: "drain" | "undrain", name: string, o: TargetOptions & { json?: boolean; wait?: boolean; timeout?: string }, io: Io): Promise<number> {
  let timeoutMs = DRAIN_WAIT_DEFAULT_MS;
  if (o.timeout !== undefined) {
    const ms = parseDuration(o.timeout);
    if (ms === undefined) {
      io.stderr.write(`llmsup ${op}: --timeout expects a duration such as "5m" or "30s", found ${JSON.stringify(o.timeout)}\n`);
      return EXIT.USAGE;
    }
    timeoutMs = ms;
  }
  // --timeout says how long to wait: it implies --wait.
  const wait = op === "drain" && (o.wait === true || o.timeout !== undefined);
  const path = `/backends/${encodeURIComponent(name)}`;
  return withDaemon(o, io, async (socket) => {
    const r = await callDaemon<DrainBody>(socket, "POST", `${path}/${op}`);
    const refused = refusedToAct(io, `${op} ${name}`, r, o.json);
    if (refused !== undefined) return refused;
    const failed = (body: DrainBody) => {
      if (!o.json) io.stderr.write(`llmsup ${op} ${name}: ${body.error?.code}: ${body.error?.message}\n`);
    };
    if (r.status !== 200) {
      if (o.json) writeJson(io, r.body);
      failed(r.body);
      return r.status === 404 ? EXIT.USAGE : EXIT.FAILURE;
    }
    const d = r.body.drained;
    const n = r.body.inflight ?? 0;
    if (!o.json) {
      if (d) io.stdout.write(`${name}: drained by ${d.by} since ${formatWhen(d.since, "UTC")}${r.body.changed ? "" : " (already)"}; ${onIt(n)}${n > 0 ? " (they finish)" : ""}, new ones go to the next tier. \`llmsup undrain ${name}\` puts it back.\n`);
      else io.stdout.write(`${name}: in rotation${r.body.changed ? " again" : " (was not drained)"}\n`);
    }
    if (!wait) {
      if (o.json) writeJson(io, r.body);
      return EXIT.OK;
    }

    // Until none is left, the time is up, or someone else undrained it meanwhile.
    const started = Date.now();
    let last: DrainBody = r.body;
    if (!o.json && n > 0) io.stdout.write(`waiting up to ${formatDuration(timeoutMs)} for ${n === 1 ? "it" : "them"} to finish…\n`);
    while ((last.inflight ?? 0) > 0 && last.drained && Date.now() - started < timeoutMs) {
      await new Promise((res) => setTimeout(res, Math.min(DRAIN_POLL_MS, Math.max(0, timeoutMs - (Date.now() - started)))));
      const s = await callDaemon<DrainBody>(socket, "GET", `${path}/drain`, 10_000);
      if (s.status !== 200) {
        if (o.json) writeJson(io, s.body);
        failed(s.body);
        return s.status === 404 ? EXIT.USAGE : EXIT.FAILURE;
      }
      if (!o.json && s.body.drained && (s.body.inflight ?? 0) > 0 && s.body.inflight !== last.inflight) io.stdout.write(`${name}: ${onIt(s.body.inflight ?? 0)}\n`);
      last = s.body;
    }
    const left = last.inflight ?? 0;
    const waited = { changed: r.body.changed, waited_ms: Date.now() - started, idle: left === 0 && !!last.drained };
    if (!last.drained) {
      const message = `${name} was undrained meanwhile (\`llmsup events --backend ${name}\` says by whom): it is in rotation, not waited for`;
      if (o.json) writeJson(io, { ...last, ok: false, ...waited, error: { message } });
      else io.stderr.write(`llmsup drain ${name}: ${message}\n`);
      return EXIT.FAILURE;
    }
    if (left > 0) {
      const message = `${requests(left)} still on ${name} after ${formatDuration(timeoutMs)}; it stays drained — \`llmsup drain ${name} --wait\` waits again`;
      if (o.json) writeJson(io, { ...last, ok: false, ...waited, error: { code: "LLMSUP_E_DRAIN_TIMEOUT", message } });
      else io.stderr.write(`llmsup drain ${name}: LLMSUP_E_DRAIN_TIMEOUT: ${message}\n`);
      return EXIT.TEMPFAIL;
    }
    if (o.json) writeJson(io, { ...last, ...waited });
    else io.stdout.write(`${name}: drained and idle${waited.waited_ms >= 1_000 ? ` after ${formatDuration(waited.waited_ms)}` : ""}: safe for maintenance. \`llmsup undrain ${name}\` puts it back.\n`);
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
    const refused = refusedToAct(io, "reload", r, o.json);
    if (refused !== undefined) return refused;
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

export async function drillCommand(scenario: string, o: TargetOptions & import("./drill-commands.ts").DrillCliOptions, io: Io): Promise<number> {
  // `llmsup drill stop` and `llmsup drill gameday`, and a router fault's knobs: drill-commands.ts.
  const more = await import("./drill-commands.ts");
  if (scenario === "stop") return more.drillStopCommand(o, io);
  if (scenario === "gameday") return more.gamedayCommand(o, io);
  const knobs = more.faultKnobs(scenario, o, io);
  if (typeof knobs === "number") return knobs;
  const { renderDrill } = await import("../drills/report.ts");
  const { parseDuration } = await import("../config/units.ts");
  const durationMs = parseDuration(o.duration ?? "60s");
  const problem = durationMs === undefined ? undefined : drillDurationProblem(durationMs);
  if (durationMs === undefined || problem !== undefined) {
    io.stderr.write(`llmsup drill: --duration expects a duration from 1ms to 1h such as "30s", found ${JSON.stringify(o.duration)}${problem ? ` (${problem})` : ""}\n`);
    return EXIT.USAGE;
  }
  return withDaemon(o, io, async (socket) => {
    const q = new URLSearchParams({ duration_ms: String(durationMs), ...(o.route ? { route: o.route } : {}), ...Object.fromEntries(knobs), ...(o.traffic === false ? { traffic: "0" } : {}) });
    if (!o.json) io.stderr.write(`drill ${scenario}: holding the failure for ${o.duration ?? "60s"}, then waiting for recovery…\n`);
    const r = await callDaemon<import("../drills/report.ts").DrillReport & { error?: { code: string; message: string } }>(socket, "POST", `/drills/${encodeURIComponent(scenario)}?${q}`, durationMs + 15 * 60_000);
    const refused = refusedToAct(io, `drill ${scenario}`, r, o.json);
    if (refused !== undefined) return refused;
    if (r.status !== 200) {
      if (o.json) writeJson(io, r.body);
      else io.stderr.write(`llmsup drill ${scenario}: ${r.body.error?.code}: ${r.body.error?.message}\n`);
      return r.status === 404 || r.status === 400 ? EXIT.USAGE : EXIT.UNAVAILABLE;
    }
    if (o.json) writeJson(io, r.body);
    else io.stdout.write(renderDrill(r.body));
    return r.body.verdict === "pass" ? EXIT.OK : EXIT.FAILURE;
  });
}

interface ClearedJson {
  readonly kind: string;
  readonly gpu: number | null;
  readonly bus_id: string | null;
  readonly reason: string;
  readonly clear_reason: string;
}

/**
 * `llmsup gpus clear <gpu>|--all [--reason TEXT]`: the operator's word to the
 * running daemon that a GPU's event faults (XIDs, ECC error rises) are dealt
 * with; they clear now, each with "cleared by the operator: TEXT". Exit 0,
 * also when there was nothing to clear (it says so); 64 for an unknown GPU
 * (LLMSUP_E_GPU_UNKNOWN) or a bad command line.
 */
export async function gpusClearCommand(gpu: string | undefined, o: TargetOptions & { all?: boolean; reason?: string; json?: boolean }, io: Io): Promise<number> {
  if ((gpu === undefined) === (o.all !== true) || (gpu !== undefined && !/^\d+$/.test(gpu))) {
    io.stderr.write(`llmsup gpus clear: name one GPU by its index (\`llmsup gpus clear 0\`) or every GPU (\`llmsup gpus clear --all\`)\n`);
    return EXIT.USAGE;
  }
  const which = gpu ?? "all";
  const q = new URLSearchParams(o.reason !== undefined ? { reason: o.reason } : {});
  return withDaemon(o, io, async (socket) => {
    const r = await callDaemon<{ ok?: boolean; gpu?: number | null; cleared?: ClearedJson[]; error?: { code: string; message: string } }>(socket, "POST", `/gpus/${which}/clear${q.size > 0 ? `?${q}` : ""}`);
    const refused = refusedToAct(io, `gpus clear ${which}`, r, o.json);
    if (refused !== undefined) return refused;
    if (o.json) writeJson(io, r.body);
    if (r.status !== 200) {
      if (!o.json) io.stderr.write(`llmsup gpus clear ${which}: ${r.body.error?.code}: ${r.body.error?.message}\n`);
      return r.status === 404 || r.status === 400 ? EXIT.USAGE : EXIT.FAILURE;
    }
    if (o.json) return EXIT.OK;
    const cleared = r.body.cleared ?? [];
    const whom = gpu === undefined ? "every GPU" : `GPU ${gpu}`;
    if (cleared.length === 0) io.stdout.write(`${whom}: no event fault to clear (faults read from nvidia-smi clear by themselves once it reads them gone)\n`);
    else {
      io.stdout.write(`${whom}: cleared ${cleared.length} fault${cleared.length === 1 ? "" : "s"}:\n`);
      for (const f of cleared) io.stdout.write(`  ${f.kind}: ${f.reason}\n`);
      io.stdout.write(`  (${cleared[0]!.clear_reason})\n`);
    }
    return EXIT.OK;
  });
}
