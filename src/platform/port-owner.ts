/**
 * Who holds a TCP port, from Linux /proc alone, so that a backend's readiness
 * can be tied to the process llmsup spawned or adopted: a health check that
 * answers on the backend's port proves nothing when an orphan (a previous
 * generation, another user's server) is the one listening there.
 *
 * The pure half parses /proc/net/tcp{,6}, decides which listening sockets take
 * the connections a probe makes to a host, and decides ours / foreign /
 * nobody / unknown from socket inodes. The thin half reads /proc with async fs
 * only (no native addon, no `ss` or `lsof`): the tables, the `socket:[inode]`
 * links under /proc/<pid>/fd, and — only when the listener is not ours — a
 * bounded scan of every process's fds to name the holder.
 *
 * /proc/net/tcp is the table of the reader's network namespace: a backend in
 * a container with its own namespace shows here only through whatever holds
 * the published port in ours (docker-proxy, say), which reads as foreign.
 */
import { open, readdir, readFile, readlink } from "node:fs/promises";
import { isIPv4, isIPv6 } from "node:net";
import { groupMembers } from "./procfs.ts";

/** One listening socket from /proc/net/tcp or /proc/net/tcp6. */
export interface ListeningSocket {
  /** The bound address as text: `0.0.0.0`, `127.0.0.1`, `::`, `::1`, `::ffff:127.0.0.1`, … */
  readonly localAddress: string;
  readonly port: number;
  /** The socket's inode: what /proc/<pid>/fd/N links to as `socket:[inode]`. */
  readonly inode: number;
  /** The effective uid of the process that created the socket. */
  readonly uid: number;
}

/** TCP_LISTEN in the `st` column (include/net/tcp_states.h). */
const LISTEN = "0A";

/**
 * The listening sockets of /proc/net/tcp (`family` 4) or /proc/net/tcp6 (6).
 * Columns: `sl local_address rem_address st tx_queue:rx_queue tr:tm->when
 * retrnsmt uid timeout inode …`; an address is hex 32-bit words each in host
 * (little-endian) byte order, then `:` and the port in hex. Rows that do not
 * parse are skipped (the header among them).
 */
export function parseProcNetTcp(text: string, family: 4 | 6): ListeningSocket[] {
  const out: ListeningSocket[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== LISTEN || !/^\d+:$/.test(f[0] ?? "")) continue;
    const [addrHex, portHex] = (f[1] ?? "").split(":");
    if (addrHex === undefined || portHex === undefined || !/^[0-9A-Fa-f]{4}$/.test(portHex)) continue;
    const localAddress = family === 4 ? hexToIpv4(addrHex) : hexToIpv6(addrHex);
    const uid = Number(f[7]);
    const inode = Number(f[9]);
    if (localAddress === undefined || !Number.isSafeInteger(uid) || !Number.isSafeInteger(inode)) continue;
    out.push({ localAddress, port: parseInt(portHex, 16), inode, uid });
  }
  return out;
}

/** The four bytes of a little-endian hex word, in network order. */
function wordBytes(hex: string): number[] {
  const n = parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];
}

function hexToIpv4(hex: string): string | undefined {
  return /^[0-9A-Fa-f]{8}$/.test(hex) ? wordBytes(hex).join(".") : undefined;
}

function hexToIpv6(hex: string): string | undefined {
  if (!/^[0-9A-Fa-f]{32}$/.test(hex)) return undefined;
  const bytes = [0, 8, 16, 24].flatMap((i) => wordBytes(hex.slice(i, i + 8)));
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  return formatIpv6(groups);
}

/** RFC 5952 text of eight 16-bit groups: lower case, the longest run of two or more zero groups as `::`, v4-mapped as `::ffff:a.b.c.d`. */
function formatIpv6(groups: readonly number[]): string {
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const [hi = 0, lo = 0] = groups.slice(6);
    return `::ffff:${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** Eight groups of IPv6 text (`::1`, `fe80::1%eth0`, `::ffff:127.0.0.1`), or undefined. */
function parseIpv6(text: string): number[] | undefined {
  const t = text.replace(/%.*$/, "");
  if (!isIPv6(t)) return undefined;
  const toGroups = (part: string): number[] => {
    if (part === "") return [];
    const out: number[] = [];
    for (const p of part.split(":")) {
      if (p.includes(".")) {
        const b = p.split(".").map(Number);
        out.push((((b[0] ?? 0) << 8) | (b[1] ?? 0)), (((b[2] ?? 0) << 8) | (b[3] ?? 0)));
      } else out.push(parseInt(p, 16));
    }
    return out;
  };
  const halves = t.split("::");
  const head = toGroups(halves[0] ?? "");
  if (halves.length === 1) return head.length === 8 ? head : undefined;
  const tail = toGroups(halves[1] ?? "");
  return [...head, ...Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

/**
 * The local addresses whose listeners take a connection made to `host`, or
 * "any" when that cannot be told without resolving a name (no DNS here).
 * Connecting to 0.0.0.0 or :: reaches the loopback address; a v4 connection
 * is taken by a listener on its address, on 0.0.0.0, on its v4-mapped v6
 * form, or on `::` — which here counts as dual-stack, since /proc does not
 * say which sockets are IPV6_V6ONLY (net.ipv6.bindv6only is 0 by default).
 */
export function acceptingAddresses(host: string | undefined): Set<string> | "any" {
  if (host === undefined) return "any";
  const h = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (h === "localhost") return new Set([...v4Accepting("127.0.0.1"), ...v6Accepting([0, 0, 0, 0, 0, 0, 0, 1])]);
  if (isIPv4(h)) return v4Accepting(h === "0.0.0.0" ? "127.0.0.1" : h);
  const g = parseIpv6(h);
  if (!g) return "any";
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    const [hi = 0, lo = 0] = g.slice(6);
    return v4Accepting(`${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`);
  }
  return v6Accepting(g.every((x) => x === 0) ? [0, 0, 0, 0, 0, 0, 0, 1] : g);
}

function v4Accepting(a: string): Set<string> {
  return new Set([a, "0.0.0.0", "::", `::ffff:${a}`, "::ffff:0.0.0.0"]);
}

function v6Accepting(groups: readonly number[]): Set<string> {
  return new Set([formatIpv6(groups), "::"]);
}

/** The sockets of `sockets` listening on `port` that would take a connection made to `host` (any address when `host` is absent). */
export function listenersFor(sockets: readonly ListeningSocket[], port: number, host?: string): ListeningSocket[] {
  const accepting = acceptingAddresses(host);
  return sockets.filter((s) => s.port === port && (accepting === "any" || accepting.has(s.localAddress)));
}

/** The inode in a /proc/<pid>/fd link target, when it names a socket. */
export function socketInodeOfLink(target: string): number | undefined {
  const m = /^socket:\[(\d+)\]$/.exec(target);
  return m ? Number(m[1]) : undefined;
}

/** One process of ours with the socket inodes it holds, or "unreadable" when we may not read its fds. */
export interface Candidate {
  readonly pid: number;
  readonly inodes: ReadonlySet<number> | "unreadable";
}

export type PortHolder =
  | { readonly state: "ours"; readonly pid: number }
  | { readonly state: "foreign"; readonly pid?: number; readonly comm?: string; readonly uid?: number; readonly inode?: number }
  | { readonly state: "nobody" }
  | { readonly state: "unknown"; readonly why: string };

/**
 * Who holds the port, from the inodes listening there and the sockets of our
 * processes. Ours only when every listener is ours: with SO_REUSEPORT an
 * orphan and the backend can listen side by side, and then a probe may reach
 * either. A listener we cannot place is foreign when every candidate was
 * read, unknown when one was unreadable (it may be that one's). A foreign
 * verdict names the first unplaced inode; finding its pid is the reader's job.
 */
export function portHolder(listeningInodes: readonly number[], candidates: readonly Candidate[]): PortHolder {
  if (listeningInodes.length === 0) return { state: "nobody" };
  const ownerOf = (inode: number) => candidates.find((c) => c.inodes !== "unreadable" && c.inodes.has(inode));
  const stray = listeningInodes.find((i) => ownerOf(i) === undefined);
  if (stray === undefined) return { state: "ours", pid: ownerOf(listeningInodes[0] ?? 0)?.pid ?? 0 };
  const unreadable = candidates.filter((c) => c.inodes === "unreadable").map((c) => c.pid);
  if (unreadable.length > 0) {
    return { state: "unknown", why: `socket inode ${stray} is not among the readable fds of the backend, and the fds of pid ${unreadable.join(", ")} cannot be read` };
  }
  return { state: "foreign", inode: stray };
}

/** The message for an operator, e.g. `port 8000 is held by pid 4242 (python3, uid 1001), not by the backend llmsup started`. */
export function describeHolder(port: number, h: PortHolder): string {
  switch (h.state) {
    case "ours":
      return `port ${port} is held by pid ${h.pid} of the backend llmsup started`;
    case "nobody":
      return `nothing listens on port ${port}`;
    case "unknown":
      return `cannot tell who holds port ${port}: ${h.why}`;
    case "foreign": {
      const detail = [h.comm, h.uid === undefined ? undefined : `uid ${h.uid}`].filter((x) => x !== undefined).join(", ");
      const who = h.pid === undefined ? "another process" : `pid ${h.pid}`;
      return `port ${port} is held by ${who}${detail ? ` (${detail})` : ""}, not by the backend llmsup started`;
    }
  }
}

// ---- thin readers of /proc ------------------------------------------------

const errno = (e: unknown) => (e as NodeJS.ErrnoException | undefined)?.code;

/**
 * Whether `text`, the start of a /proc/net/tcp{,6} table, holds a complete
 * row that is not LISTEN. The kernel lists the listening hash first and the
 * established hash (ESTABLISHED, TIME_WAIT, SYN_RECV, … — never LISTEN)
 * after it, so from that row on nothing more listens.
 */
export function listenSectionEnded(text: string): boolean {
  const lines = text.split("\n");
  lines.pop(); // the last piece is not known to be complete
  return lines.some((line) => {
    const f = line.trim().split(/\s+/);
    return /^\d+:$/.test(f[0] ?? "") && f[3] !== undefined && f[3] !== LISTEN;
  });
}

/**
 * The text of a /proc/net/tcp{,6} table up to the end of its listening
 * section. Each read() of the table walks the kernel's socket hash (a few ms
 * where it is large), and a table of many connections takes one read per
 * 4 KiB: stopping at the first established row keeps a busy host's cost to
 * that of its listeners.
 */
async function readListenSection(path: string): Promise<string> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(64 * 1024);
    let text = "";
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) return text;
      text += buf.toString("latin1", 0, bytesRead);
      if (listenSectionEnded(text)) return text.slice(0, text.lastIndexOf("\n") + 1);
    }
  } finally {
    await fh.close();
  }
}

/** Listening sockets of the reader's network namespace, v4 and v6; throws only when neither table can be read. */
export async function listeningSockets(proc = "/proc"): Promise<ListeningSocket[]> {
  const [v4, v6] = await Promise.allSettled([readListenSection(`${proc}/net/tcp`), readListenSection(`${proc}/net/tcp6`)]);
  if (v4.status === "rejected" && v6.status === "rejected") throw v4.reason;
  return [...(v4.status === "fulfilled" ? parseProcNetTcp(v4.value, 4) : []), ...(v6.status === "fulfilled" ? parseProcNetTcp(v6.value, 6) : [])];
}

/** The sockets listening on `port` that take connections made to `host` (see acceptingAddresses). */
export async function portListeners(port: number, host?: string, proc = "/proc"): Promise<ListeningSocket[]> {
  return listenersFor(await listeningSockets(proc), port, host);
}

/**
 * The socket inodes `pid` holds, from `readlink /proc/<pid>/fd/*`, in fd
 * order a batch at a time. A process that is gone (ENOENT, ESRCH) holds none;
 * one whose fds we may not read (another user's, without CAP_SYS_PTRACE) is
 * "unreadable", never "holds none". An fd closed between the listing and its
 * readlink is skipped. With `until`, reading stops once all of those inodes
 * are seen (a server binds early, so its listener has a low fd): the set is
 * then partial, but holds them all.
 */
export async function socketInodesOf(pid: number, proc = "/proc", until?: ReadonlySet<number>): Promise<Set<number> | "unreadable"> {
  const dir = `${proc}/${pid}/fd`;
  let fds: string[];
  try {
    fds = await readdir(dir);
  } catch (e) {
    return errno(e) === "ENOENT" || errno(e) === "ESRCH" ? new Set() : "unreadable";
  }
  fds.sort((x, y) => Number(x) - Number(y));
  const out = new Set<number>();
  let denied = false;
  const seenAll = () => until !== undefined && until.size > 0 && [...until].every((i) => out.has(i));
  for (let i = 0; i < fds.length && !denied && !seenAll(); i += FD_BATCH) {
    await Promise.all(
      fds.slice(i, i + FD_BATCH).map(async (fd) => {
        try {
          const inode = socketInodeOfLink(await readlink(`${dir}/${fd}`));
          if (inode !== undefined) out.add(inode);
        } catch (e) {
          if (errno(e) === "EACCES" || errno(e) === "EPERM") denied = true;
        }
      }),
    );
  }
  // Access is checked per process, so a denial on one fd means all: what was read is not the whole.
  return denied ? "unreadable" : out;
}

/** How many readlinks of one process's fds are in flight at once (the libuv pool has 4 threads; more only queue). */
const FD_BATCH = 32;

/**
 * The pid of a process holding socket `inode`, scanning /proc/<pid>/fd from
 * the newest pid down, a few processes at a time, and stopping at the first
 * match. Processes whose fds we may not read are passed over; `skip` names
 * pids already known not to hold it. Gives up after `budgetMs`.
 */
export async function findSocketOwner(inode: number, options: { proc?: string; skip?: ReadonlySet<number>; budgetMs?: number; concurrency?: number } = {}): Promise<number | undefined> {
  const proc = options.proc ?? "/proc";
  const deadline = Date.now() + (options.budgetMs ?? 2000);
  let entries: string[];
  try {
    entries = await readdir(proc);
  } catch {
    return undefined;
  }
  const pids = entries.filter((e) => /^\d+$/.test(e)).map(Number).filter((p) => !options.skip?.has(p)).sort((a, b) => b - a);
  const wanted = new Set([inode]);
  let next = 0;
  let found: number | undefined;
  const worker = async () => {
    while (found === undefined && next < pids.length && Date.now() < deadline) {
      const pid = pids[next++] as number;
      const inodes = await socketInodesOf(pid, proc, wanted);
      if (inodes !== "unreadable" && inodes.has(inode)) found ??= pid;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 8) }, worker));
  return found;
}

/** /proc/<pid>/comm without its newline, or undefined when gone. */
export async function commOf(pid: number, proc = "/proc"): Promise<string | undefined> {
  try {
    return (await readFile(`${proc}/${pid}/comm`, "utf8")).replace(/\n$/, "");
  } catch {
    return undefined;
  }
}

export interface WhoListensOptions {
  /** Where procfs is mounted (tests point it at a fake tree). */
  readonly proc?: string;
  /** How long the search for a foreign holder's pid may take (default 2 s); without a pid, the verdict still stands. */
  readonly scanBudgetMs?: number;
}

/**
 * The verdict without naming a foreign holder: the two tables, then the fds
 * of `pids` one process at a time, stopping once every listener is placed
 * (in the usual case the first pid, the one that binds, is the only one read).
 */
async function decide(port: number, host: string | undefined, pids: readonly number[], proc: string): Promise<{ verdict: PortHolder; listeners: ListeningSocket[] }> {
  let listeners: ListeningSocket[];
  try {
    listeners = await portListeners(port, host, proc);
  } catch (e) {
    return { verdict: { state: "unknown", why: `cannot read ${proc}/net/tcp: ${(e as Error).message}` }, listeners: [] };
  }
  if (listeners.length === 0) return { verdict: { state: "nobody" }, listeners };
  const unplaced = new Set(listeners.map((l) => l.inode));
  const candidates: Candidate[] = [];
  for (const pid of pids) {
    if (unplaced.size === 0) break;
    const inodes = await socketInodesOf(pid, proc, unplaced);
    candidates.push({ pid, inodes });
    if (inodes !== "unreadable") for (const i of inodes) unplaced.delete(i);
  }
  return { verdict: portHolder(listeners.map((l) => l.inode), candidates), listeners };
}

/**
 * Who holds `port` for connections to `host`, given `pids`, the processes of
 * our backend (its process group: see whoListensInGroup), the likeliest
 * binder first. The cheap part runs always (see decide); the scan of every
 * process for a foreign holder's pid runs only when the listener is not ours.
 */
export async function whoListens(port: number, host: string | undefined, pids: readonly number[], options: WhoListensOptions = {}): Promise<PortHolder> {
  const proc = options.proc ?? "/proc";
  const { verdict, listeners } = await decide(port, host, pids, proc);
  if (verdict.state !== "foreign" || verdict.inode === undefined) return verdict;
  const inode = verdict.inode;
  const uid = listeners.find((l) => l.inode === inode)?.uid;
  const pid = await findSocketOwner(inode, { proc, skip: new Set(pids), ...(options.scanBudgetMs === undefined ? {} : { budgetMs: options.scanBudgetMs }) });
  const comm = pid === undefined ? undefined : await commOf(pid, proc);
  return {
    state: "foreign",
    ...(pid === undefined ? {} : { pid }),
    ...(comm === undefined ? {} : { comm }),
    ...(uid === undefined ? {} : { uid }),
    inode,
  };
}

/**
 * whoListens for a backend's process group `pgid` (the group leader and its
 * live members: a launcher's child may be the one that binds). The leader is
 * read first, and the group is listed from /proc only when the leader does
 * not hold every listener.
 */
export async function whoListensInGroup(port: number, host: string | undefined, pgid: number, options: Omit<WhoListensOptions, "proc"> = {}): Promise<PortHolder> {
  const first = await decide(port, host, [pgid], "/proc");
  if (first.verdict.state === "ours" || first.verdict.state === "nobody") return first.verdict;
  const members = (await groupMembers(pgid)).map((s) => s.pid).filter((p) => p !== pgid);
  return whoListens(port, host, [pgid, ...members], options);
}
