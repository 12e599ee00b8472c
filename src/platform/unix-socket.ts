/** Serving HTTP on a unix socket: stale files replaced, live ones never taken over, mode and group applied. */
import type { Server } from "node:http";
import { chmod, chown, mkdir, unlink } from "node:fs/promises";
import { connect } from "node:net";
import path from "node:path";
import { LlmsupError } from "../errors/error.ts";
import type { Logger } from "../log/logger.ts";
import { gidOf } from "./users.ts";

/** Removes a socket file left by a dead process; refuses when something still listens on it. */
async function clearStaleSocket(file: string, what: string): Promise<void> {
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(file);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
  if (alive) throw new LlmsupError("LLMSUP_E_LISTEN_FAILED", `${what} ${file} is in use by a running process (is another llmsup running with this configuration?)`, { path: file });
  await unlink(file).catch(() => undefined);
}

/**
 * The listen backlog of llmsup's sockets: connections the kernel queues before
 * they are accepted. Node's default (511) makes a burst of clients — a thousand
 * streams opened at once — meet EAGAIN at connect on a unix socket; the kernel
 * caps this at net.core.somaxconn (4096 on current kernels).
 */
export const LISTEN_BACKLOG = 4096;

/** Binds `server` to the unix socket `file` with `mode`, and gives it to `group` when one is named. */
export async function listenUnix(server: Server, file: string, o: { mode: number; group: string; log: Logger; what: string }): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await clearStaleSocket(file, o.what);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) => reject(new LlmsupError("LLMSUP_E_LISTEN_FAILED", `cannot listen on ${file}: ${e.code ?? e.message}`, {}, { cause: e })));
    server.listen({ path: file, backlog: LISTEN_BACKLOG }, () => resolve());
  });
  await chmod(file, o.mode);
  if (!o.group) return;
  const gid = await gidOf(o.group);
  if (gid === undefined) o.log.warn({ event: "socket.group_unknown", group: o.group, path: file }, `group ${o.group} does not exist; ${file} keeps the daemon's group`);
  else await chown(file, -1, gid).catch((e: Error) => o.log.warn({ event: "socket.chown_failed", path: file, err: e.message }, `cannot give ${file} to group ${o.group}`));
}
