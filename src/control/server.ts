/**
 * The control socket: a unix socket (restrictive mode, optional group; never
 * TCP) with the small JSON API the CLI speaks. Every mutating call is logged
 * with the uid the client reports.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { unlink } from "node:fs/promises";
import { isLlmsupError } from "../errors/error.ts";
import type { Logger } from "../log/logger.ts";
import { listenUnix } from "../platform/unix-socket.ts";
import { filterFromQuery, matches, type EventFilter } from "./event-filter.ts";
import type { HistoryEntry } from "../daemon/state-store.ts";
import type { DrainAnswer } from "../daemon/drains.ts";
import type { DrillSpec } from "../drills/drill.ts";
import { DRILL_SCENARIOS, type DrillReport, type DrillScenario } from "../drills/report.ts";
import { clearedFaultJson } from "../gpu/report.ts";
import type { ClearedFault } from "../gpu/types.ts";

export type BackendOp = "start" | "stop" | "restart" | "reset";

/** What the control socket may ask of the daemon: a narrow port, not the daemon object. */
export interface ControlApi {
  status(): unknown;
  reload(): Promise<{ readonly ok: boolean }>;
  drill(spec: DrillSpec): Promise<DrillReport>;
  /** Runs an operation on a managed backend; its snapshot afterwards. Throws LLMSUP_E_BACKEND_UNKNOWN / _NOT_MANAGED. */
  operate(backend: string, op: BackendOp): Promise<unknown>;
  /** Checks the backend exists (throws as `operate` does). */
  check(backend: string): void;
  /** Takes any configured backend (managed or remote) out of rotation, or puts it back; `by` names the operator. Its drain and the requests still on it. Throws LLMSUP_E_BACKEND_UNKNOWN. */
  drain(backend: string, on: boolean, by: string): DrainAnswer;
  /** A backend's drain and the requests still on it, changing nothing (`llmsup drain --wait` polls it). Throws LLMSUP_E_BACKEND_UNKNOWN. */
  drainState(backend: string): DrainAnswer;
  logTail(backend: string, n: number): Promise<readonly string[]>;
  followOutput(backend: string, fn: (text: string) => void): () => void;
  /** The event history (oldest first) matching a filter, and its new entries as they come. */
  events(filter: EventFilter): readonly HistoryEntry[];
  followEvents(fn: (e: HistoryEntry) => void): () => void;
  /** The operator's word that GPU `gpu`'s (null: every GPU's) event faults (XIDs, ECC rises) are dealt with: they clear now with `reason`; what cleared. Throws LLMSUP_E_GPU_UNKNOWN. */
  clearGpuFaults(gpu: number | null, reason: string, by: string): readonly ClearedFault[];
}

const OPS = new Set(["start", "stop", "restart", "reset"]);

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function fail(res: ServerResponse, e: unknown): void {
  if (isLlmsupError(e)) {
    const status = e.code === "LLMSUP_E_BACKEND_UNKNOWN" || e.code === "LLMSUP_E_GPU_UNKNOWN" ? 404 : e.code === "LLMSUP_E_BACKEND_NOT_MANAGED" || e.code === "LLMSUP_E_DRILL_REFUSED" || e.code === "LLMSUP_E_BACKEND_HELD" ? 409 : 500;
    send(res, status, { error: { code: e.code, message: e.message } });
  } else send(res, 500, { error: { code: "LLMSUP_E_INTERNAL", message: (e as Error).message } });
}

export class ControlServer {
  private server?: Server;
  private readonly api: ControlApi;
  private readonly log: Logger;
  private socketPath?: string;

  constructor(api: ControlApi, log: Logger) {
    this.api = api;
    this.log = log.child({ component: "control" });
  }

  async listen(socket: string, mode: number, group: string): Promise<void> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => fail(res, e));
    });
    await listenUnix(server, socket, { mode, group, log: this.log, what: "control socket" });
    this.server = server;
    this.socketPath = socket;
  }

  /** Who the client says it is: its user name, else its uid. */
  private who(req: IncomingMessage): string {
    const user = req.headers["x-llmsup-user"];
    const uid = req.headers["x-llmsup-uid"];
    return typeof user === "string" && user !== "" ? user : typeof uid === "string" && uid !== "" ? `uid ${uid}` : "an unknown user";
  }

  private audit(req: IncomingMessage, action: string, target?: string): void {
    const uid = req.headers["x-llmsup-uid"];
    this.log.info({ event: "control.command", action, target, uid: typeof uid === "string" ? Number(uid) : null, user: req.headers["x-llmsup-user"] ?? null }, `control: ${action}${target ? ` ${target}` : ""} (uid ${uid ?? "unknown"})`);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://control");
    const parts = url.pathname.split("/").filter(Boolean);
    const d = this.api;
    if (req.method === "GET" && url.pathname === "/status") return send(res, 200, d.status());
    if (req.method === "POST" && url.pathname === "/reload") {
      this.audit(req, "reload");
      const r = await d.reload();
      return send(res, r.ok ? 200 : 422, r);
    }
    if (req.method === "POST" && parts[0] === "drills" && parts[1]) {
      const scenario = parts[1];
      if (!(DRILL_SCENARIOS as readonly string[]).includes(scenario)) return send(res, 404, { error: { code: "LLMSUP_E_USAGE", message: `no drill ${scenario} (drills: ${DRILL_SCENARIOS.join(", ")})` } });
      this.audit(req, `drill ${scenario}`, url.searchParams.get("route") ?? undefined);
      const report = await d.drill({
        scenario: scenario as DrillScenario,
        route: url.searchParams.get("route") ?? undefined,
        durationMs: Number(url.searchParams.get("duration_ms") ?? 60_000),
      });
      return send(res, 200, report);
    }
    if (req.method === "GET" && url.pathname === "/events") {
      const filter = filterFromQuery(url.searchParams);
      const past = d.events(filter);
      if (url.searchParams.get("follow") !== "1") return send(res, 200, { events: past });
      // One JSON object a line: the past, then each new event that matches, until the client goes.
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      for (const e of past) res.write(`${JSON.stringify(e)}\n`);
      const off = d.followEvents((e) => {
        if (matches(e, filter)) res.write(`${JSON.stringify(e)}\n`);
      });
      res.on("close", off);
      return;
    }
    // POST /gpus/<index|all>/clear?reason=TEXT: `llmsup gpus clear`.
    if (req.method === "POST" && parts[0] === "gpus" && parts[1] && parts[2] === "clear" && parts.length === 3) {
      const which = decodeURIComponent(parts[1]);
      if (which !== "all" && !/^\d+$/.test(which)) return send(res, 400, { error: { code: "LLMSUP_E_USAGE", message: `a GPU is named by its index (or "all"), not "${which}"` } });
      const gpu = which === "all" ? null : Number(which);
      this.audit(req, "gpus clear", which);
      const cleared = d.clearGpuFaults(gpu, url.searchParams.get("reason") ?? "", this.who(req));
      return send(res, 200, { ok: true, gpu, cleared: cleared.map(clearedFaultJson) });
    }
    if (parts[0] === "backends" && parts[1]) {
      const name = decodeURIComponent(parts[1]);
      if (req.method === "POST" && parts[2] && OPS.has(parts[2])) {
        const op = parts[2] as BackendOp;
        d.check(name);
        this.audit(req, op, name);
        // Stops and restarts can take stop_timeout: answer once the operation is under way or done.
        return send(res, 200, { ok: true, backend: await d.operate(name, op) });
      }
      if (req.method === "POST" && (parts[2] === "drain" || parts[2] === "undrain")) {
        this.audit(req, parts[2], name);
        return send(res, 200, { ok: true, ...d.drain(name, parts[2] === "drain", this.who(req)) });
      }
      if (req.method === "GET" && parts[2] === "drain") return send(res, 200, { ok: true, ...d.drainState(name) });
      if (req.method === "GET" && parts[2] === "logs") {
        const n = Math.max(1, Math.min(1000, Number(url.searchParams.get("n") ?? 50) || 50));
        d.check(name);
        const lines = await d.logTail(name, n);
        if (url.searchParams.get("follow") !== "1") return send(res, 200, { backend: name, lines });
        res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
        for (const l of lines) res.write(`${l}\n`);
        const off = d.followOutput(name, (text) => res.write(text));
        res.on("close", off);
        return;
      }
    }
    send(res, 404, { error: { code: "LLMSUP_E_USAGE", message: `no control endpoint ${req.method} ${url.pathname}` } });
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
    if (this.socketPath) await unlink(this.socketPath).catch(() => undefined);
  }
}
