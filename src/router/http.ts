/**
 * Small HTTP helpers of the routing socket: OpenAI-shaped errors, JSON
 * answers, bounded bodies. An error is written by its code alone: its HTTP
 * status and `type` come from the registry (src/errors/registry.ts), so a
 * call site cannot pair a code with the wrong status or type.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { WIRE_ERRORS, type HttpWireCode, type StreamWireCode, type WireCode, type WireErrorType } from "../errors/registry.ts";

export interface OpenAIErrorBody {
  readonly error: { readonly message: string; readonly type: WireErrorType; readonly param: string | null; readonly code: WireCode; readonly [k: string]: unknown };
}

/** Fields added to the error object: `param` (null unless a field is to blame) or more; never its message, type or code. */
export interface ErrorExtra {
  readonly param?: string | null;
  readonly message?: never;
  readonly type?: never;
  readonly code?: never;
  readonly [k: string]: unknown;
}

export function openaiError(code: WireCode, message: string, extra: ErrorExtra = {}): OpenAIErrorBody {
  return { error: { message, type: WIRE_ERRORS[code].type, param: null, code, ...extra } };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** An error answer: the code's HTTP status and an OpenAI-shaped body. */
export function sendError(res: ServerResponse, code: HttpWireCode, message: string, headers: Record<string, string> = {}, extra: ErrorExtra = {}): void {
  sendJson(res, WIRE_ERRORS[code].http, openaiError(code, message, extra), headers);
}

/** An error as an SSE event, for a stream already answered 200. */
export function sseError(code: StreamWireCode, message: string): string {
  return `data: ${JSON.stringify(openaiError(code, message))}\n\n`;
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
export async function readText(body: AsyncIterable<Buffer | string>, limit = 65_536): Promise<string> {
  let out = "";
  for await (const chunk of body) {
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
