/** A raw request on the control socket: no proof, no client logic — what any local process could send. */
import { request } from "node:http";

export function ask(socket: string, method: string, pathname: string, headers: Record<string, string> = {}): Promise<{ status: number; body: { error?: { code: string; message: string } } & Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, method, path: pathname, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (d: string) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as never }));
    });
    req.on("error", reject);
    req.end();
  });
}
