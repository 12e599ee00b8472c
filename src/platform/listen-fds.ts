/**
 * systemd socket activation (sd_listen_fds(3)): the listening sockets a
 * `.socket` unit holds and passes to the service, so that clients connecting
 * while llmsup restarts wait in the kernel's backlog instead of being refused.
 *
 * The protocol: `LISTEN_PID` is the pid the sockets are meant for (a child
 * that inherited the variables must ignore them), `LISTEN_FDS` how many there
 * are, starting at fd 3, and `LISTEN_FDNAMES` (optional) their
 * `FileDescriptorName=`s, colon-separated. The variables are removed once
 * read, so that nothing llmsup starts sees them.
 *
 * The pure half parses the variables and /proc/net/unix; the thin half serves
 * an inherited fd with a net.Server and says what it is bound to: a TCP
 * address from the socket itself, a unix path from /proc/net/unix (Node has
 * no getsockname for pipes).
 */
import { readFile, readlink } from "node:fs/promises";
import type { Server } from "node:net";
import { LlmsupError } from "../errors/error.ts";

/** The first fd systemd passes (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;
/** More than this is taken for a malformed LISTEN_FDS: llmsup listens on a handful of sockets, not hundreds. */
export const LISTEN_FDS_MAX = 64;

const VARIABLES = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID"] as const;

/** One socket systemd passed. */
export interface ListenFd {
  readonly fd: number;
  /** Its `FileDescriptorName=` (the socket unit's name when the unit sets none). */
  readonly name?: string;
}

/**
 * What the variables say. `problem` is set when they are meant for this
 * process but malformed: the caller logs it; `fds` is then empty (nothing
 * usable) or, when only the names are off, the fds without names.
 */
export interface ListenFds {
  readonly fds: readonly ListenFd[];
  readonly problem?: string;
}

/**
 * The sockets passed to process `pid`, from `env`. Undefined when there are
 * none for it: no LISTEN_PID, a LISTEN_PID of another process (the variables
 * were inherited from a parent that did not clear them), or LISTEN_FDS=0.
 */
export function parseListenFds(env: NodeJS.ProcessEnv, pid: number): ListenFds | undefined {
  const pidText = env.LISTEN_PID;
  if (pidText === undefined || pidText === "") return undefined;
  if (!/^[1-9]\d{0,9}$/.test(pidText)) return { fds: [], problem: `LISTEN_PID=${JSON.stringify(pidText)} is not a process id; the sockets systemd may have passed are not used` };
  if (Number(pidText) !== pid) return undefined;
  const countText = env.LISTEN_FDS;
  if (countText === undefined) return { fds: [], problem: `LISTEN_PID names this process (${pid}) but LISTEN_FDS is not set; no sockets are taken from systemd` };
  if (!/^\d{1,9}$/.test(countText)) return { fds: [], problem: `LISTEN_FDS=${JSON.stringify(countText)} is not a count of sockets; the sockets systemd may have passed are not used` };
  const count = Number(countText);
  if (count === 0) return undefined;
  if (count > LISTEN_FDS_MAX) return { fds: [], problem: `LISTEN_FDS=${count} is more than the ${LISTEN_FDS_MAX} sockets llmsup takes from systemd; none are used` };
  const fds: ListenFd[] = Array.from({ length: count }, (_, i) => ({ fd: LISTEN_FDS_START + i }));
  const namesText = env.LISTEN_FDNAMES;
  if (namesText === undefined) return { fds };
  const names = namesText.split(":");
  if (names.length !== count) {
    return { fds, problem: `LISTEN_FDNAMES has ${names.length} name(s) for ${count} socket(s) (${JSON.stringify(namesText)}); the sockets are used without names` };
  }
  return { fds: fds.map((f, i) => (names[i] ? { fd: f.fd, name: names[i] } : f)) };
}

/** Removes the activation variables from `env`, so that processes llmsup starts do not inherit them. */
export function clearListenFdsEnv(env: NodeJS.ProcessEnv): void {
  for (const v of VARIABLES) delete env[v];
}

/** `parseListenFds`, then the variables removed from `env` (sd_listen_fds with unset_environment). */
export function takeListenFds(env: NodeJS.ProcessEnv = process.env, pid: number = process.pid): ListenFds | undefined {
  const found = parseListenFds(env, pid);
  clearListenFdsEnv(env);
  return found;
}

/** One row of /proc/net/unix. */
export interface UnixSocketRow {
  readonly inode: number;
  /** The socket's flags; 0x10000 (__SO_ACCEPTCON) is set on a listening socket. */
  readonly listening: boolean;
  /** 1 = SOCK_STREAM, 2 = SOCK_DGRAM, 5 = SOCK_SEQPACKET. */
  readonly type: number;
  /** The bound path; `@name` for an abstract socket; absent when unbound. */
  readonly path?: string;
}

/** Columns: `Num RefCount Protocol Flags Type St Inode Path`; the path (which may hold spaces) runs to the end of the line. */
export function parseProcNetUnix(text: string): UnixSocketRow[] {
  const out: UnixSocketRow[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*[0-9A-Fa-f]+:\s+[0-9A-Fa-f]+\s+[0-9A-Fa-f]+\s+([0-9A-Fa-f]+)\s+([0-9A-Fa-f]+)\s+[0-9A-Fa-f]+\s+(\d+)(?: (.*))?$/.exec(line);
    if (!m) continue;
    const path = m[4];
    out.push({ inode: Number(m[3]), listening: (parseInt(m[1]!, 16) & 0x10000) !== 0, type: parseInt(m[2]!, 16), ...(path ? { path } : {}) });
  }
  return out;
}

/** The unix socket behind `fd` of this process, from /proc; undefined when it cannot be told. */
export async function unixSocketOf(fd: number, proc = "/proc"): Promise<UnixSocketRow | undefined> {
  const link = await readlink(`${proc}/self/fd/${fd}`).catch(() => undefined);
  const inode = link === undefined ? undefined : /^socket:\[(\d+)\]$/.exec(link)?.[1];
  if (inode === undefined) return undefined;
  const table = await readFile(`${proc}/net/unix`, "utf8").catch(() => "");
  return parseProcNetUnix(table).find((r) => r.inode === Number(inode));
}

/** What an inherited socket is bound to: a unix path (undefined when /proc cannot say) or a TCP address. */
export type InheritedAddress = { readonly kind: "unix"; readonly path?: string } | { readonly kind: "tcp"; readonly host: string; readonly port: number };

/** A label for logs: the unix path or host:port. */
export function describeInherited(a: InheritedAddress): string {
  if (a.kind === "unix") return a.path ?? "a unix socket (path unknown)";
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/**
 * Serves the inherited socket `lfd` with `server` (no bind, no unlink, no
 * chmod: the socket unit owns the address) and says what it is bound to.
 * Something that is not a listening stream socket is LLMSUP_E_LISTEN_FAILED.
 */
export async function adoptListenFd(server: Server, lfd: ListenFd, proc = "/proc"): Promise<InheritedAddress> {
  const label = `fd ${lfd.fd}${lfd.name ? ` (${lfd.name})` : ""}`;
  const fail = (e: NodeJS.ErrnoException) =>
    new LlmsupError("LLMSUP_E_LISTEN_FAILED", `cannot serve the socket systemd passed as ${label}: ${e.code ?? e.message}; the .socket unit must use ListenStream= (a stream socket, listening)`, { fd: lfd.fd, name: lfd.name }, { cause: e });
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => reject(fail(e));
    server.once("error", onError);
    try {
      server.listen({ fd: lfd.fd }, () => {
        server.off("error", onError);
        resolve();
      });
    } catch (e) {
      // Node throws at once for some failures (an fd it already watches, say) instead of emitting "error".
      server.off("error", onError);
      reject(fail(e as NodeJS.ErrnoException));
    }
  });
  const a = server.address();
  if (a !== null && typeof a === "object") return { kind: "tcp", host: a.address, port: a.port };
  if (typeof a === "string" && a !== "") return { kind: "unix", path: a };
  const row = await unixSocketOf(lfd.fd, proc);
  return row?.path ? { kind: "unix", path: row.path } : { kind: "unix" };
}
