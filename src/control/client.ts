/**
 * The CLI's side of the control socket. Reading needs only the connection;
 * a request that acts first proves who sends it (auth.ts): it asks for a
 * challenge, creates the proof file the kernel stamps with this process's
 * uid, and names the nonce in its request. The daemon believes the file's
 * owner, never anything this side says about itself.
 */
import { request } from "node:http";
import { constants } from "node:fs";
import { lstat, open, unlink } from "node:fs/promises";
import path from "node:path";
import { CHALLENGE_PATH, isNonce, PROOF_HEADER } from "./auth.ts";

export class DaemonUnreachable extends Error {
  readonly socket: string;
  readonly why: string;
  constructor(socket: string, why: string) {
    super(`llmsup is not running (no daemon at ${socket}: ${why})`);
    this.socket = socket;
    this.why = why;
  }
}

export interface ControlAnswer<T = unknown> {
  readonly status: number;
  readonly body: T;
}

function unreachable(socket: string, e: NodeJS.ErrnoException): Error {
  if (e.code === "ENOENT" || e.code === "ECONNREFUSED" || e.code === "ENOTSOCK") return new DaemonUnreachable(socket, e.code);
  if (e.code === "EACCES") return new DaemonUnreachable(socket, "permission denied: run as root or as a member of the control socket's group");
  return e;
}

/** One request and its whole answer, parsed as JSON. */
function exchange<T>(socket: string, method: "GET" | "POST", path: string, headers: Record<string, string>, timeoutMs: number): Promise<ControlAnswer<T>> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path, method, headers, timeout: timeoutMs }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as T });
        } catch {
          reject(new Error(`the daemon answered ${res.statusCode} with something that is not JSON`));
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error(`no answer from the daemon within ${timeoutMs}ms`)));
    req.on("error", (e: NodeJS.ErrnoException) => reject(unreachable(socket, e)));
    req.end();
  });
}

/** A proof made for one request: the header naming it and its file, or why none could be made. */
type Proof = { readonly header: string; readonly file: string } | { readonly problem: string };

/**
 * Asks for a challenge and creates its proof file: exclusively (never an
 * existing file, never through a link), mode 0600, in a directory that is
 * the daemon's kind (a real, sticky directory). A daemon without challenges
 * (an older llmsup) gets no proof, as before.
 */
async function prove(socket: string, timeoutMs: number): Promise<Proof | undefined> {
  const c = await exchange<{ nonce?: unknown; dir?: unknown }>(socket, "POST", CHALLENGE_PATH, {}, timeoutMs);
  if (c.status === 404) return undefined;
  const { nonce, dir } = c.body;
  if (c.status !== 200 || typeof nonce !== "string" || !isNonce(nonce) || typeof dir !== "string" || !path.isAbsolute(dir)) return { problem: `the daemon's challenge was not usable (HTTP ${c.status})` };
  const st = await lstat(dir).catch((e: NodeJS.ErrnoException) => e);
  if (st instanceof Error) return { problem: `cannot reach the auth directory ${dir}: ${st.code ?? st.message}` };
  // 0o1000: the sticky bit.
  if (!st.isDirectory() || (st.mode & 0o1000) === 0) return { problem: `${dir} is not the daemon's auth directory (a sticky directory)` };
  const file = path.join(dir, nonce);
  try {
    const fh = await open(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600);
    await fh.close();
  } catch (e) {
    return { problem: `cannot create the proof file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` };
  }
  return { header: nonce, file };
}

/**
 * A request to the daemon and its JSON answer. A POST acts: it goes with a
 * proof of this process's identity; when none could be made the request goes
 * without, and the daemon's refusal says why.
 */
export async function callDaemon<T = unknown>(socket: string, method: "GET" | "POST", path: string, timeoutMs = 120_000): Promise<ControlAnswer<T>> {
  if (method === "GET") return exchange<T>(socket, method, path, {}, timeoutMs);
  const proof = await prove(socket, timeoutMs);
  const headers: Record<string, string> = proof && "header" in proof ? { [PROOF_HEADER]: proof.header } : {};
  try {
    const r = await exchange<T>(socket, method, path, headers, timeoutMs);
    const error = (r.body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    if (proof && "problem" in proof && error?.code === "LLMSUP_E_CONTROL_UNAUTHENTICATED" && typeof error.message === "string") {
      return { status: r.status, body: { ...(r.body as Record<string, unknown>), error: { ...error, message: `${error.message} (this client: ${proof.problem})` } } as T };
    }
    return r;
  } finally {
    // The daemon removes the file once it has read it; this covers an answer that never came.
    if (proof && "file" in proof) await unlink(proof.file).catch(() => undefined);
  }
}

/** Streams the daemon's plain-text answer (logs -f) to `out` until it closes. */
export function streamFromDaemon(socket: string, path: string, out: NodeJS.WritableStream): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path, method: "GET" }, (res) => {
      if (res.statusCode !== 200) {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () => reject(new Error(text)));
        return;
      }
      res.pipe(out, { end: false });
      res.on("end", () => resolve(0));
    });
    req.on("error", (e: NodeJS.ErrnoException) => reject(unreachable(socket, e)));
    req.end();
  });
}
