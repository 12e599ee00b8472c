/** The CLI's side of the control socket. */
import { request } from "node:http";
import { userInfo } from "node:os";

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

function identity(): Record<string, string> {
  try {
    return { "x-llmsup-uid": String(process.getuid?.() ?? ""), "x-llmsup-user": userInfo().username };
  } catch {
    return {};
  }
}

export function callDaemon<T = unknown>(socket: string, method: "GET" | "POST", path: string, timeoutMs = 120_000): Promise<ControlAnswer<T>> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path, method, headers: identity(), timeout: timeoutMs }, (res) => {
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
    req.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT" || e.code === "ECONNREFUSED" || e.code === "ENOTSOCK") reject(new DaemonUnreachable(socket, e.code));
      else if (e.code === "EACCES") reject(new DaemonUnreachable(socket, "permission denied: run as root or as a member of the control socket's group"));
      else reject(e);
    });
    req.end();
  });
}

/** Streams the daemon's plain-text answer (logs -f) to `out` until it closes. */
export function streamFromDaemon(socket: string, path: string, out: NodeJS.WritableStream): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path, method: "GET", headers: identity() }, (res) => {
      if (res.statusCode !== 200) {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () => reject(new Error(text)));
        return;
      }
      res.pipe(out, { end: false });
      res.on("end", () => resolve(0));
    });
    req.on("error", (e: NodeJS.ErrnoException) => reject(e.code === "ENOENT" || e.code === "ECONNREFUSED" ? new DaemonUnreachable(socket, e.code) : e));
    req.end();
  });
}
