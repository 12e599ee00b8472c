/** Small HTTP helpers of the routing socket: OpenAI-shaped errors, JSON answers, bounded bodies. */
import type { IncomingMessage, ServerResponse } from "node:http";

export interface OpenAIErrorBody {
  readonly error: { readonly message: string; readonly type: string; readonly param: string | null; readonly code: string | null; readonly [k: string]: unknown };
}

/** `extra` adds fields to the error object, or overrides `param` (null unless a field is to blame). */
export function openaiError(message: string, type: string, code: string | null, extra: Record<string, unknown> = {}): OpenAIErrorBody {
  return { error: { message, type, param: null, code, ...extra } };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, status: number, message: string, type: string, code: string | null, headers: Record<string, string> = {}, extra: Record<string, unknown> = {}): void {
  sendJson(res, status, openaiError(message, type, code, extra), headers);
}

export class BodyTooLarge extends Error {}

/** Reads a request body up to `limit` bytes; rejects with BodyTooLarge beyond it. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.reject(new BodyTooLarge());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners("data");
        req.resume();
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** Reads at most `limit` bytes of an upstream body as text (an error body, say), discarding the rest. */
export async function readText(body: NodeJS.ReadableStream, limit = 65_536): Promise<string> {
  let out = "";
  for await (const chunk of body as AsyncIterable<Buffer | string>) {
    if (out.length < limit) out += typeof chunk === "string" ? chunk : chunk.toString("utf8");
  }
  return out.length > limit ? out.slice(0, limit) : out;
}

export function header(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A header value: printable ASCII kept, anything else percent-encoded (UTF-8). */
export function headerSafe(s: string): string {
  return s.replace(/[^\x20-\x7e]/gu, (c) => encodeURIComponent(c));
}
