/** HTTP helpers of the simulated servers. */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ErrorBody } from "./kinds/kind.ts";

const MAX_BODY = 32 * 1024 * 1024;

export function send(res: ServerResponse, status: number, body: string, contentType?: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...(contentType ? { "content-type": contentType } : {}), "content-length": Buffer.byteLength(body), ...headers });
  res.end(body);
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  send(res, status, JSON.stringify(body), "application/json", headers);
}

export function errorJson(res: ServerResponse, e: ErrorBody): void {
  json(res, e.status, e.body, e.headers);
}

export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error("body too large"));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** A small seeded PRNG, so fractional faults are repeatable. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
