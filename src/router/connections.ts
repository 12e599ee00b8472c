/**
 * Bounded clients: how long a client may take over its
 * headers and its whole request, how long an idle keep-alive connection stays
 * open, and how many connections the router holds at once (one cap over the
 * unix socket and the TCP listener together). The decisions are pure
 * functions of the configuration; ClientConnections is the thin shell that
 * counts sockets and sends a refused one on its way.
 */
import { STATUS_CODES, type Server } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { RouterConfig } from "../config/types.ts";
import type { Clock, TimerHandle } from "../platform/clock.ts";

/** Retry-After (seconds) of the `overloaded` answer: connections come and go quickly. */
export const OVERLOADED_RETRY_AFTER_S = 1;

/** How long a connection beyond the cap may take to send its first request (to be answered 503) before it is closed unanswered. */
export const REFUSED_GRACE_MS = 1_000;

/** The options of node:http createServer that bound a client. */
export interface ServerBounds {
  /** The whole request, headers and body (router.client_body_timeout); past it, 408 and the connection closes (answerClientError). */
  readonly requestTimeout: number;
  /** The request's headers, from the connection's start for its first request (router.header_timeout, at most requestTimeout). */
  readonly headersTimeout: number;
  /** An idle keep-alive connection is closed after this (router.keepalive_timeout), as its Keep-Alive header says. */
  readonly keepAliveTimeout: number;
  /** How often Node checks the first two (30s by default, too coarse for short ones). */
  readonly connectionsCheckingInterval: number;
  /** Requests per connection: not limited; the bounds above are what stop a connection from being held. */
  readonly maxRequestsPerSocket: 0;
}

/** The server options for the router's settings. Pure. */
export function serverBounds(r: Pick<RouterConfig, "client_body_timeout" | "header_timeout" | "keepalive_timeout">): ServerBounds {
  const requestTimeout = r.client_body_timeout;
  // Node refuses a header timeout longer than the request timeout; the shorter bound wins anyway.
  const headersTimeout = Math.min(r.header_timeout, requestTimeout);
  return {
    requestTimeout,
    headersTimeout,
    keepAliveTimeout: r.keepalive_timeout,
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(headersTimeout / 4))),
    maxRequestsPerSocket: 0,
  };
}

/** The status of a request node:http could not read, by its error code (as node's own answer picks it); 400 for the rest. */
const CLIENT_ERROR_STATUS: Readonly<Record<string, number>> = { ERR_HTTP_REQUEST_TIMEOUT: 408, HPE_HEADER_OVERFLOW: 431, HPE_CHUNK_EXTENSIONS_OVERFLOW: 413 };

/** How long a connection answered for a request it could not send stays half-open, its further bytes read and dropped. */
export const CLIENT_ERROR_GRACE_MS = 1_000;

/**
 * A request node:http could not read (too slow, malformed, too large), answered as node would — 408, 431, 413
 * or 400 with Connection: close — but the connection is half-closed after the answer and what the client still
 * sends is read and dropped until it closes (at most CLIENT_ERROR_GRACE_MS). Node's own handler destroys the
 * socket at once: a client still sending (a slow one dripping headers) then gets a reset that can overtake
 * the answer, and is never told why. Nothing is written once an answer on the connection has begun.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  const answering = (socket as { _httpMessage?: { headersSent?: boolean } | null })._httpMessage?.headersSent === true;
  if (err.code === "ECONNRESET" || !socket.writable || answering) return void socket.destroy();
  const status = CLIENT_ERROR_STATUS[err.code ?? ""] ?? 400;
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n\r\n`);
  // No more parsing (as node does on an upgrade): the bytes still coming are read and dropped.
  socket.removeAllListeners("data");
  socket.resume();
  const cut = setTimeout(() => socket.destroy(), CLIENT_ERROR_GRACE_MS);
  cut.unref();
  socket.once("close", () => clearTimeout(cut));
}

/** Whether a new connection is served when `open` are served already and at most `max` may be. Pure. */
export function admitConnection(open: number, max: number): boolean {
  return open < max;
}

/**
 * The router's client connections, over every listener it serves: the ones
 * served, counted against router.max_connections, and the ones refused
 * (beyond the cap), which get `overloaded` to their first request and are
 * closed, or are closed unanswered after REFUSED_GRACE_MS.
 */
export class ClientConnections {
  private readonly served = new Set<Socket>();
  private readonly refused = new Map<Socket, TimerHandle>();
  private readonly clock: Clock;
  private readonly max: () => number;
  private readonly onRefused: () => void;

  /** `max`: read at each new connection, so a reload's router.max_connections applies at once. */
  constructor(clock: Clock, max: () => number, onRefused: () => void = () => undefined) {
    this.clock = clock;
    this.max = max;
    this.onRefused = onRefused;
  }

  /** Counts the connections `server` accepts. */
  watch(server: Server): void {
    server.on("connection", (socket: Socket) => this.accept(socket));
  }

  private accept(socket: Socket): void {
    if (admitConnection(this.served.size, this.max())) {
      this.served.add(socket);
      socket.once("close", () => this.served.delete(socket));
      return;
    }
    this.onRefused();
    const timer = this.clock.setTimeout(() => socket.destroy(), REFUSED_GRACE_MS);
    this.refused.set(socket, timer);
    socket.once("close", () => {
      timer.cancel();
      this.refused.delete(socket);
    });
  }

  /** Whether `socket` came beyond the cap (its request is answered `overloaded`). */
  isRefused(socket: Socket): boolean {
    return this.refused.has(socket);
  }

  /** Connections served now (those refused not counted). */
  get open(): number {
    return this.served.size;
  }

  /** Destroys every connection, served or refused: the end of a shutdown's drain. */
  destroyAll(): void {
    for (const s of this.served) s.destroy();
    for (const s of this.refused.keys()) s.destroy();
  }
}
