/**
 * The routing socket: OpenAI-compatible HTTP on a unix socket and/or a TCP
 * listener (127.0.0.1 by default; any other address only with API keys).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import path from "node:path";
import type { Config } from "../config/types.ts";
import { parseHostPort } from "../config/fields.ts";
import { isLoopbackHost } from "../config/checks.ts";
import { LlmsupError } from "../errors/error.ts";
import type { Logger } from "../log/logger.ts";
import { within } from "../platform/clock.ts";
import { adoptListenFd, describeInherited, type InheritedAddress, type ListenFd } from "../platform/listen-fds.ts";
import { LISTEN_BACKLOG, listenUnix } from "../platform/unix-socket.ts";
import { keyMatches, loadApiKeys } from "./api-keys.ts";
import { answerClientError, ClientConnections, OVERLOADED_RETRY_AFTER_S, serverBounds } from "./connections.ts";
import { BodyTooLarge, readBody, sendError, sendJson } from "./http.ts";
import type { RouterMetrics } from "./metrics.ts";
import { readiness, readyRouteParam } from "./readiness.ts";
import type { Endpoint, Router } from "./router.ts";
import { validateRequest } from "./validate.ts";

const ENDPOINTS: Record<string, Endpoint> = {
  "/v1/chat/completions": "chat",
  "/v1/completions": "completion",
  "/v1/embeddings": "embedding",
};

export interface Listening {
  readonly socket?: string;
  readonly tcp?: { readonly host: string; readonly port: number };
  /** The sockets systemd passed (socket activation), served instead of bound; absent without activation. */
  readonly activated?: readonly ActivatedSocket[];
}

/** A socket systemd passed, and what llmsup made of it. */
export interface ActivatedSocket {
  readonly fd: number;
  readonly name?: string;
  /** The unix path, or host:port. */
  readonly address: string;
  /** Whether router.socket or router.listen names it; one that neither names is served all the same. */
  readonly configured: boolean;
}

/** Options of RouterServer.listen. */
export interface ListenOptions {
  /** Another unix socket than router.socket; null: none. */
  readonly socket?: string | null;
  /** Another TCP address than router.listen; "": none. */
  readonly listen?: string;
  /** Listening sockets systemd passed (parseListenFds/takeListenFds in platform/listen-fds.ts). */
  readonly inherited?: readonly ListenFd[];
}

const WILDCARD_HOSTS = new Set(["", "0.0.0.0", "::"]);

function loopbackAddress(host: string): boolean {
  return isLoopbackHost(host.replace(/^::ffff:/i, ""));
}

/** Whether the socket bound to `a` is the listener `want` (router.listen) describes: the same port, and the same host, a wildcard, or loopback both. */
function sameTcpListener(want: { host: string; port: number }, a: { host: string; port: number }): boolean {
  if (want.port !== a.port) return false;
  const w = want.host.replace(/^::ffff:/i, "").toLowerCase();
  const h = a.host.replace(/^::ffff:/i, "").toLowerCase();
  return w === h || WILDCARD_HOSTS.has(w) || WILDCARD_HOSTS.has(h) || (isLoopbackHost(w) && isLoopbackHost(h));
}

const GONE_CODES = new Set(["ECONNRESET", "EPIPE", "ERR_STREAM_PREMATURE_CLOSE", "ERR_STREAM_DESTROYED", "ERR_STREAM_WRITE_AFTER_END", "ABORT_ERR"]);

/** An error that is the client's going away (its connection closed or reset), not a fault of llmsup. */
export function clientWentAway(req: IncomingMessage, res: ServerResponse, e: unknown): boolean {
  const err = e as { code?: string; name?: string; message?: string } | undefined;
  const abortShaped = err !== undefined && (GONE_CODES.has(err.code ?? "") || err.name === "AbortError" || err.message === "aborted");
  return abortShaped && (req.destroyed || res.destroyed || req.socket?.destroyed === true);
}

export class RouterServer {
  private readonly servers: Server[] = [];
  private keys: Buffer[] = [];
  private router: Router;
  private config: Config;
  private readonly log: Logger;
  private readonly metrics?: RouterMetrics;
  private inFlight = 0;
  private readonly connections: ClientConnections;

  /** Requests being answered now. */
  get requestsInFlight(): number {
    return this.inFlight;
  }

  /** Client connections held now, over every listener (those refused beyond router.max_connections not counted). */
  get connectionsOpen(): number {
    return this.connections.open;
  }
  /** A non-loopback address being served: API keys cannot be taken away from it by a reload. */
  private exposed: string | undefined;
  private readonly idleWaiters: (() => void)[] = [];
  private draining = false;

  constructor(config: Config, router: Router, log: Logger, metrics?: RouterMetrics) {
    this.config = config;
    this.router = router;
    this.log = log.child({ component: "router" });
    this.metrics = metrics;
    this.connections = new ClientConnections(router.clock, () => this.config.router.max_connections, () => metrics?.connectionRefused());
    metrics?.followConnections(() => this.connections.open);
  }

  /**
   * Swaps in the router of a reloaded configuration; requests in flight finish on the old one.
   * The client bounds (header, request and keep-alive timeouts) apply from now on, and so do
   * `keys` (from keysFor) when given.
   */
  setRouter(router: Router, config: Config, keys?: readonly Buffer[]): void {
    this.router = router;
    this.config = config;
    if (keys) this.keys = [...keys];
    const b = serverBounds(config.router);
    for (const s of this.servers) {
      s.requestTimeout = b.requestTimeout;
      s.headersTimeout = b.headersTimeout;
      s.keepAliveTimeout = b.keepAliveTimeout;
    }
  }

  /**
   * The API keys of a configuration about to be applied by a reload, read now (a rotated
   * keys file takes effect): throws what listen() would — an unreadable or empty source —
   * and refuses a configuration without keys while a non-loopback listener serves.
   */
  async keysFor(config: Config): Promise<Buffer[]> {
    const keys = (await loadApiKeys(config)).map((k) => Buffer.from(k));
    if (keys.length === 0 && this.exposed !== undefined) {
      throw new LlmsupError("LLMSUP_E_ROUTER_EXPOSED", `refusing a configuration without API keys while llmsup serves ${this.exposed}: other machines could use every backend; keep router.api_keys_file (or api_keys_env), or restart llmsup listening on 127.0.0.1`, {});
    }
    return keys;
  }

  /**
   * Binds the unix socket and the TCP listener; a non-loopback address without keys is refused.
   *
   * With `inherited` (systemd socket activation) those sockets are served as they are: nothing is
   * bound, unlinked or chmod-ed for them (the .socket unit owns the path, its SocketMode= and
   * SocketGroup=; closing them later leaves the path alone), and clients that connect while llmsup
   * restarts wait in the kernel. One whose address router.socket or router.listen names stands for
   * that listener; one that neither names is served all the same, with a warning: the .socket unit
   * decides what llmsup listens on. Keys are required on a non-loopback TCP socket either way.
   * A configured listener that systemd did not pass is bound as without activation.
   */
  async listen(options: ListenOptions = {}): Promise<Listening> {
    const r = this.config.router;
    const listenAddr = options.listen ?? r.listen;
    const keys = await loadApiKeys(this.config);
    this.keys = keys.map((k) => Buffer.from(k));
    let hp: { host: string; port: number } | undefined;
    if (listenAddr !== "") {
      hp = parseHostPort(listenAddr);
      if (!hp) throw new LlmsupError("LLMSUP_E_LISTEN_FAILED", `router.listen ${JSON.stringify(listenAddr)} is not host:port`, {});
    }
    const socket = options.socket === null ? undefined : (options.socket ?? r.socket);
    const out: { socket?: string; tcp?: { host: string; port: number } } = {};

    const activated: (ActivatedSocket & { bound: InheritedAddress })[] = [];
    for (const lfd of options.inherited ?? []) {
      const a = await adoptListenFd(this.newServer(), lfd);
      const where = `${describeInherited(a)} (passed by systemd as fd ${lfd.fd}${lfd.name ? `, ${lfd.name}` : ""})`;
      let configured: boolean;
      if (a.kind === "tcp") {
        if (!loopbackAddress(a.host) && keys.length === 0) {
          throw new LlmsupError("LLMSUP_E_ROUTER_EXPOSED", `refusing to serve ${where} without API keys: other machines could use every backend; set router.api_keys_file, or ListenStream=127.0.0.1:${a.port} in the .socket unit`, {});
        }
        if (!loopbackAddress(a.host)) this.exposed ??= describeInherited(a);
        configured = hp !== undefined && sameTcpListener(hp, a);
        if (configured) out.tcp ??= { host: a.host, port: a.port };
      } else {
        configured = socket !== undefined && a.path !== undefined && path.resolve(a.path) === path.resolve(socket);
        if (configured) out.socket ??= socket;
      }
      if (!configured) {
        this.log.warn(
          { event: "router.inherited_unconfigured", fd: lfd.fd, name: lfd.name, address: describeInherited(a) },
          `systemd passed ${where}, which neither router.socket nor router.listen names; serving it anyway (the .socket unit decides what llmsup listens on)`,
        );
      }
      activated.push({ fd: lfd.fd, ...(lfd.name ? { name: lfd.name } : {}), address: describeInherited(a), configured, bound: a });
    }

    if (hp && !out.tcp) {
      if (!isLoopbackHost(hp.host) && keys.length === 0) {
        throw new LlmsupError("LLMSUP_E_ROUTER_EXPOSED", `refusing to listen on ${listenAddr} without API keys: other machines could use every backend; set router.api_keys_file or listen on 127.0.0.1`, {});
      }
      if (!isLoopbackHost(hp.host)) this.exposed ??= listenAddr;
      const server = this.newServer();
      const { host, port } = hp;
      await new Promise<void>((resolve, reject) => {
        server.once("error", (e: NodeJS.ErrnoException) => reject(new LlmsupError("LLMSUP_E_LISTEN_FAILED", `cannot listen on ${listenAddr}: ${e.code ?? e.message}`, {}, { cause: e })));
        server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => resolve());
      });
      const a = server.address() as { address: string; port: number };
      out.tcp = { host: a.address, port: a.port };
    }
    if (socket && !out.socket) {
      await listenUnix(this.newServer(), socket, { mode: r.socket_mode, group: r.socket_group, log: this.log, what: "router socket" });
      out.socket = socket;
    } else if (socket && r.socket_group) {
      this.log.info({ event: "router.socket_group_ignored", path: socket, group: r.socket_group }, `router.socket_group does not apply to ${socket}: systemd passed it, with the SocketUser=/SocketGroup=/SocketMode= of its .socket unit`);
    }
    // Sockets no setting names still serve clients (and drills need a unix path).
    for (const a of activated) {
      if (a.configured) continue;
      if (a.bound.kind === "unix" && a.bound.path !== undefined) out.socket ??= a.bound.path;
      if (a.bound.kind === "tcp") out.tcp ??= { host: a.bound.host, port: a.bound.port };
    }

    const label = (a: InheritedAddress) => (a.kind === "tcp" ? `http://${describeInherited(a)}` : describeInherited(a));
    const served = new Set<string>();
    if (out.socket) served.add(out.socket);
    if (out.tcp) served.add(label({ kind: "tcp", ...out.tcp }));
    if (activated.length === 0) {
      this.log.info({ event: "router.listening", ...out }, `routing on ${[...served].join(" and ")}`);
      return out;
    }
    for (const a of activated) served.add(label(a.bound));
    const inherited = activated.map(({ bound: _bound, ...a }) => a);
    this.log.info({ event: "router.listening", ...out, activated: true, inherited }, `routing on ${[...served].join(" and ")} (from systemd: ${inherited.map((a) => a.address).join(", ")})`);
    return { ...out, activated: inherited };
  }

  /**
   * A client is not held forever (connections.ts serverBounds): its headers must arrive within
   * router.header_timeout and the whole request within router.client_body_timeout (Node answers
   * 408 and closes the connection), and an idle keep-alive connection closes after
   * router.keepalive_timeout. The answer itself is not bounded here: a long stream is fine.
   * Connections beyond router.max_connections (every listener together) get `overloaded` and are
   * closed. A reload changes the timeouts (setRouter) and the cap; how often Node checks the first
   * two stays as the listener was created with (at most every second).
   */
  private newServer(): Server {
    const server = createServer(serverBounds(this.config.router), (req, res) => {
      if (this.connections.isRefused(req.socket)) {
        req.resume();
        sendError(res, "overloaded", `llmsup holds router.max_connections (${this.config.router.max_connections}) client connections already; retry shortly, and reuse keep-alive connections`, {
          "retry-after": String(OVERLOADED_RETRY_AFTER_S),
          connection: "close",
        });
        return;
      }
      this.inFlight++;
      res.once("close", () => {
        this.inFlight--;
        if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
      this.handle(req, res).catch((e: unknown) => {
        if (clientWentAway(req, res, e)) {
          // The client hung up (or was too slow and was cut off): nothing is wrong with llmsup.
          this.log.debug({ event: "router.client_gone", method: req.method, path: req.url?.split("?")[0], code: (e as NodeJS.ErrnoException).code }, "the client went away before its answer");
          if (!res.destroyed) res.destroy();
          return;
        }
        this.log.error({ event: "router.internal_error", err: (e as Error).stack ?? String(e) }, "internal error while routing");
        if (!res.headersSent) sendError(res, "internal_error", "internal error in llmsup (LLMSUP_E_INTERNAL); the log has the details");
        else res.destroy();
      });
    });
    server.on("clientError", answerClientError);
    this.connections.watch(server);
    this.servers.push(server);
    return server;
  }

  private authorised(req: IncomingMessage): boolean {
    if (this.keys.length === 0) return true;
    const auth = req.headers.authorization ?? "";
    const m = /^Bearer\s+(.+)$/i.exec(auth);
    const key = m?.[1] ?? (typeof req.headers["x-api-key"] === "string" ? req.headers["x-api-key"] : "");
    return key !== "" && keyMatches(key, this.keys);
  }

  /** GET /health/ready[?route=<model>] (readiness.ts): the named route, else the default one; an unknown name is unknown_route. */
  private ready(res: ServerResponse, query: string): void {
    const name = readyRouteParam(query);
    const route = name === undefined ? this.router.defaultRoute() : this.config.routes.find((r) => r.model === name);
    if (name !== undefined && !route) {
      return sendError(res, "unknown_route", `No route ${JSON.stringify(name)} is configured: route= takes a [[route]] model exactly (GET /v1/models lists them); leave it out for the default route`);
    }
    const state = route ? this.router.model.snapshot().find((r) => r.model === route.model) : undefined;
    const a = readiness({
      route: route?.model,
      serving: route ? this.router.servingTier(route) : -1,
      phase: state?.phase ?? "settled",
      tiers: route ? route.tiers.map((t) => this.router.model.admission(t)) : [],
      draining: this.draining,
    });
    sendJson(res, a.status, a.body, a.status === 503 ? { "cache-control": "no-store", "retry-after": "5" } : { "cache-control": "no-store" });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const p = q >= 0 ? url.slice(0, q) : url;
    if (this.draining) res.setHeader("connection", "close");
    if (req.method === "GET") {
      if (p === "/health") return sendJson(res, 200, { status: "ok" });
      if (p === "/health/ready") return this.ready(res, q >= 0 ? url.slice(q + 1) : "");
      if (p === "/metrics" && this.metrics) {
        if (!this.config.router.metrics_public && !this.authorised(req)) return sendError(res, "invalid_api_key", "Missing or invalid API key (Authorization: Bearer …): /metrics needs one while the router has keys, unless router.metrics_public = true");
        const text = await this.metrics.registry.metrics();
        res.writeHead(200, { "content-type": this.metrics.registry.contentType });
        res.end(text);
        return;
      }
      if (p === "/v1/models") {
        if (!this.authorised(req)) return sendError(res, "invalid_api_key", "Missing or invalid API key (Authorization: Bearer …)");
        return sendJson(res, 200, {
          object: "list",
          data: this.config.routes.filter((r) => r.model !== "*").map((r) => ({ id: r.model, object: "model", created: 0, owned_by: "llmsup" })),
        });
      }
    }
    const endpoint = ENDPOINTS[p];
    if (!endpoint) return sendError(res, "not_found", `No endpoint ${req.method} ${p}`);
    if (req.method !== "POST") return sendError(res, "method_not_allowed", `${p} takes POST`);
    if (!this.authorised(req)) return sendError(res, "invalid_api_key", "Missing or invalid API key (Authorization: Bearer …)");
    if (this.draining) return sendError(res, "shutting_down", "llmsup is shutting down; retry shortly", { "retry-after": "5" });
    let raw: Buffer;
    try {
      raw = await readBody(req, this.config.router.max_body);
    } catch (e) {
      if (e instanceof BodyTooLarge) return sendError(res, "request_too_large", `Request body larger than router.max_body (${this.config.router.max_body} bytes)`, { connection: "close" });
      throw e;
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(raw.toString("utf8")) as Record<string, unknown>;
      if (!body || typeof body !== "object" || Array.isArray(body)) throw new Error("the body must be a JSON object");
    } catch (e) {
      return sendError(res, "invalid_json", `Invalid JSON body: ${(e as Error).message}`);
    }
    const valid = validateRequest(endpoint, body);
    if (!valid.ok) return sendError(res, "invalid_request", valid.message, {}, { param: valid.param });
    await this.router.handle(req, res, endpoint, body);
  }

  /**
   * Stops accepting and closes idle connections; resolves when in-flight requests finished or `ms`
   * passed (on the router's clock). A request still arriving (a slow body) counts as in flight:
   * it is waited for up to `ms`, then close() cuts it off with the rest.
   */
  async drain(ms: number): Promise<boolean> {
    this.draining = true;
    for (const s of this.servers) s.close();
    for (const s of this.servers) s.closeIdleConnections();
    if (this.inFlight === 0) return true;
    const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    return within(this.router.clock, idle, ms);
  }

  /** Closes the listeners and destroys every client connection, whatever it is doing. */
  async close(): Promise<void> {
    this.draining = true;
    const closed = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const s of this.servers) s.closeAllConnections();
    this.connections.destroyAll();
    await Promise.all(closed);
    this.servers.length = 0;
  }
}
