/**
 * The control socket: a unix socket (restrictive mode, optional group; never
 * TCP) with the small JSON API the CLI speaks. Whoever can connect may read
 * (every GET); a request that acts carries a proof of identity the kernel
 * vouches for (auth.ts, guard.ts), and only root, the daemon's user and the
 * members of [control] admin_group may act. Every command that acts is
 * logged with the proven uid and its user name; every refusal too.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { unlink } from "node:fs/promises";
import { isLlmsupError, LlmsupError } from "../errors/error.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock } from "../platform/clock.ts";
import { listenUnix } from "../platform/unix-socket.ts";
import { accountName, gidOf, type Account } from "../platform/users.ts";
import { authDirFor, PROOF_HEADER, privilegeOf } from "./auth.ts";
import { ControlGuard, prepareAuthDir } from "./guard.ts";
import { actionOf, actionText, decodePath, drillDuration, type Action } from "./request.ts";
import { filterFromQuery, matches, type EventFilter } from "./event-filter.ts";
import type { HistoryEntry } from "../daemon/state-store.ts";
import type { DrainAnswer } from "../daemon/drains.ts";
import type { DrillSpec } from "../drills/drill.ts";
import { DRILL_SCENARIOS, type DrillReport, type DrillScenario } from "../drills/report.ts";
import { faultOptionsFrom, isFaultKind } from "../drills/faults.ts";
import { parseScenarios, type GamedaySpec } from "../drills/gameday.ts";
import { clearedFaultJson } from "../gpu/report.ts";
import type { ClearedFault } from "../gpu/types.ts";

export type BackendOp = "start" | "stop" | "restart" | "reset";

/** What the control socket may ask of the daemon: a narrow port, not the daemon object. */
export interface ControlApi {
  status(): unknown;
  reload(): Promise<{ readonly ok: boolean }>;
  drill(spec: DrillSpec): Promise<DrillReport>;
  /** `llmsup drill gameday` (drills/gameday.ts) and `llmsup drill stop`. */
  gameday?(spec: GamedaySpec): Promise<unknown>;
  drillStop?(): unknown;
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

/** The HTTP status of an error the control socket answers with. */
const HTTP_OF: Partial<Record<string, number>> = {
  LLMSUP_E_BACKEND_UNKNOWN: 404,
  LLMSUP_E_GPU_UNKNOWN: 404,
  LLMSUP_E_BACKEND_NOT_MANAGED: 409,
  LLMSUP_E_DRILL_REFUSED: 409,
  LLMSUP_E_BACKEND_HELD: 409,
  LLMSUP_E_CONTROL_BAD_REQUEST: 400,
  LLMSUP_E_CONTROL_UNAUTHENTICATED: 401,
  LLMSUP_E_CONTROL_FORBIDDEN: 403,
};

function fail(res: ServerResponse, e: unknown): void {
  if (isLlmsupError(e)) send(res, HTTP_OF[e.code] ?? 500, { error: { code: e.code, message: e.message } });
  else send(res, 500, { error: { code: "LLMSUP_E_INTERNAL", message: (e as Error).message } });
}

/** How an operator is named where the daemon records who did something (a drain's "by", a fault's clear): the user name, else the uid. */
const byName = (caller: Account): string => caller.user ?? `uid ${caller.uid}`;

export interface ControlServerOptions {
  /** The daemon's clock: challenges expire on it. */
  readonly clock: Clock;
  /** The daemon's own uid (it may act). */
  readonly daemonUid: number;
}

/** What the control socket is told by [control]. */
export interface ControlListen {
  readonly socket: string;
  readonly mode: number;
  readonly group: string;
  readonly admin_group: string;
}

export class ControlServer {
  private server?: Server;
  private readonly api: ControlApi;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly daemonUid: number;
  private guard?: ControlGuard;
  private socketPath?: string;

  constructor(api: ControlApi, log: Logger, options: ControlServerOptions) {
    this.api = api;
    this.log = log.child({ component: "control" });
    this.clock = options.clock;
    this.daemonUid = options.daemonUid;
  }

  async listen(c: ControlListen): Promise<void> {
    // The auth directory is ready before the first request can come.
    const dir = authDirFor(c.socket);
    await prepareAuthDir(dir, process.getuid?.() ?? 0);
    this.guard = new ControlGuard({ dir, clock: this.clock, daemonUid: this.daemonUid, adminGroup: c.admin_group });
    if (c.admin_group !== "" && (await gidOf(c.admin_group)) === undefined) {
      this.log.warn({ event: "control.admin_group_unknown", group: c.admin_group }, `[control] admin_group ${c.admin_group} does not exist: only root and the daemon's user may act until it does`);
    }
    const server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => fail(res, e));
    });
    await listenUnix(server, c.socket, { mode: c.mode, group: c.group, log: this.log, what: "control socket" });
    this.server = server;
    this.socketPath = c.socket;
  }

  /** The caller of an acting request, proven and allowed to do `what`; a refusal is logged and thrown. */
  private async caller(req: IncomingMessage, what: Action): Promise<Account> {
    const guard = this.guard!;
    const id = await guard.identify(req.headers[PROOF_HEADER]);
    if (!id.ok) {
      this.log.warn({ event: "control.refused", action: what.action, target: what.target, uid: null, user: null, code: "LLMSUP_E_CONTROL_UNAUTHENTICATED", reason: id.why }, `control: refused ${actionText(what)} from an unproven caller: ${id.why}`);
      throw new LlmsupError("LLMSUP_E_CONTROL_UNAUTHENTICATED", `${actionText(what)} refused: ${id.why}`);
    }
    const allowed = await guard.authorise(id.caller, actionText(what));
    if (!allowed.ok) {
      this.log.warn({ event: "control.refused", action: what.action, target: what.target, uid: id.caller.uid, user: id.caller.user ?? null, code: "LLMSUP_E_CONTROL_FORBIDDEN", reason: allowed.message }, `control: refused ${actionText(what)} to ${accountName(id.caller)}: not allowed to act`);
      throw new LlmsupError("LLMSUP_E_CONTROL_FORBIDDEN", allowed.message, { uid: id.caller.uid });
    }
    return id.caller;
  }

  /** The audit line of a command that acts, with the caller the kernel vouched for. */
  private audit(caller: Account, action: string, target?: string): void {
    this.log.info({ event: "control.command", action, target, uid: caller.uid, user: caller.user ?? null }, `control: ${action}${target ? ` ${target}` : ""} by ${accountName(caller)}`);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://control");
    const decoded = decodePath(url.pathname);
    if (!decoded.ok) throw new LlmsupError("LLMSUP_E_CONTROL_BAD_REQUEST", decoded.message);
    const parts = decoded.value;
    const method = req.method ?? "GET";
    const need = privilegeOf(method, url.pathname);
    if (need === "challenge") return send(res, 200, this.guard!.challenge());
    // Who acts is settled before anything else is looked at.
    const caller = need === "act" ? await this.caller(req, actionOf(method, parts, url.searchParams)) : undefined;
    const d = this.api;
    if (method === "GET" && url.pathname === "/status") return send(res, 200, d.status());
    if (caller && method === "POST" && url.pathname === "/reload") {
      this.audit(caller, "reload");
      const r = await d.reload();
      return send(res, r.ok ? 200 : 422, r);
    }
    // POST /drills/stop, POST /drills/gameday?route&scenarios&duration_ms&traffic=0 (and a fault's knobs).
    if (caller && method === "POST" && parts[0] === "drills" && parts[1] === "stop" && d.drillStop) {
      this.audit(caller, "drill stop");
      return send(res, 200, d.drillStop());
    }
    if (caller && method === "POST" && parts[0] === "drills" && parts[1] === "gameday" && d.gameday) {
      const q = url.searchParams;
      const duration = drillDuration(q.get("duration_ms") ?? "30000");
      if (!duration.ok) throw new LlmsupError("LLMSUP_E_CONTROL_BAD_REQUEST", duration.message);
      this.audit(caller, "drill gameday", q.get("route") ?? undefined);
      const card = await d.gameday({ route: q.get("route") ?? undefined, durationMs: duration.value, traffic: q.get("traffic") !== "0", fault: faultOptionsFrom(q), ...(q.get("scenarios") ? { scenarios: parseScenarios(q.get("scenarios")!) } : {}) });
      return send(res, 200, card);
    }
    if (caller && method === "POST" && parts[0] === "drills" && parts[1]) {
      const scenario = parts[1];
      if (!(DRILL_SCENARIOS as readonly string[]).includes(scenario)) return send(res, 404, { error: { code: "LLMSUP_E_USAGE", message: `no drill ${scenario} (drills: ${DRILL_SCENARIOS.join(", ")})` } });
      const duration = drillDuration(url.searchParams.get("duration_ms"));
      if (!duration.ok) throw new LlmsupError("LLMSUP_E_CONTROL_BAD_REQUEST", duration.message);
      this.audit(caller, `drill ${scenario}`, url.searchParams.get("route") ?? undefined);
      const report = await d.drill({
        scenario: scenario as DrillScenario,
        route: url.searchParams.get("route") ?? undefined,
        durationMs: duration.value,
        ...(isFaultKind(scenario) ? { fault: faultOptionsFrom(url.searchParams) } : {}),
        traffic: url.searchParams.get("traffic") !== "0",
      });
      return send(res, 200, report);
    }
    if (method === "GET" && url.pathname === "/events") {
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
    if (caller && method === "POST" && parts[0] === "gpus" && parts[1] && parts[2] === "clear" && parts.length === 3) {
      const which = parts[1];
      if (which !== "all" && !/^\d+$/.test(which)) return send(res, 400, { error: { code: "LLMSUP_E_USAGE", message: `a GPU is named by its index (or "all"), not "${which}"` } });
      const gpu = which === "all" ? null : Number(which);
      this.audit(caller, "gpus clear", which);
      const cleared = d.clearGpuFaults(gpu, url.searchParams.get("reason") ?? "", byName(caller));
      return send(res, 200, { ok: true, gpu, cleared: cleared.map(clearedFaultJson) });
    }
    if (parts[0] === "backends" && parts[1]) {
      const name = parts[1];
      if (caller && method === "POST" && parts[2] && OPS.has(parts[2])) {
        const op = parts[2] as BackendOp;
        d.check(name);
        this.audit(caller, op, name);
        // Stops and restarts can take stop_timeout: answer once the operation is under way or done.
        return send(res, 200, { ok: true, backend: await d.operate(name, op) });
      }
      if (caller && method === "POST" && (parts[2] === "drain" || parts[2] === "undrain")) {
        this.audit(caller, parts[2], name);
        return send(res, 200, { ok: true, ...d.drain(name, parts[2] === "drain", byName(caller)) });
      }
      if (method === "GET" && parts[2] === "drain") return send(res, 200, { ok: true, ...d.drainState(name) });
      if (method === "GET" && parts[2] === "logs") {
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
    send(res, 404, { error: { code: "LLMSUP_E_USAGE", message: `no control endpoint ${method} ${url.pathname}` } });
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
