/**
 * An upstream answer's body as the router reads it: chunk by chunk (a stream,
 * relayed as it comes) or whole (a JSON answer). Two kinds: a Node stream's
 * (undici's for a streamed request, a translated or drilled answer), and one
 * collected straight from undici's dispatcher for a request answered whole —
 * no stream object between the socket and the router on the hot path.
 */
import type { Readable } from "node:stream";

export interface UpstreamBody extends AsyncIterable<Buffer> {
  /** All of it once it has come; rejects when it broke off or was aborted. */
  whole(): Promise<Buffer>;
  /** Stops reading: the upstream request is aborted. */
  destroy(): void;
}

/** The body of a stream: read as it comes, or whole. */
export function streamBody(source: Readable): UpstreamBody {
  return {
    [Symbol.asyncIterator]: () => source[Symbol.asyncIterator]() as AsyncIterator<Buffer>,
    whole: async () => {
      const parts: Buffer[] = [];
      for await (const c of source as AsyncIterable<Buffer | string>) parts.push(typeof c === "string" ? Buffer.from(c) : c);
      return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    },
    destroy: () => void source.destroy(),
  };
}

/** What undici's dispatcher hands a handler to control the request. */
interface DispatchController {
  abort(reason: Error): void;
}

/**
 * One request to undici's dispatcher (`Dispatcher.dispatch`) whose answer is read whole: the handler and
 * the body in one object. `started` is called once at the final status and headers (1xx answers pass),
 * `failed` when the request fails before them; after them, a failure rejects `whole()`.
 */
export class CollectedAnswer implements UpstreamBody {
  status = 0;
  headers: Record<string, string | string[] | undefined> = {};
  private controller: DispatchController | undefined;
  private abortReason: Error | undefined;
  private responded = false;
  private parts: Buffer[] = [];
  private result: Buffer | undefined;
  private error: Error | undefined;
  private waiters: { resolve: (b: Buffer) => void; reject: (e: Error) => void }[] | undefined;

  private readonly started: (a: CollectedAnswer) => void;
  private readonly failed: (e: Error) => void;

  constructor(started: (a: CollectedAnswer) => void, failed: (e: Error) => void) {
    this.started = started;
    this.failed = failed;
  }

  /** Aborts the request: at once, or as soon as it starts; `failed` or `whole()` then ends with `reason`. */
  abort(reason: Error): void {
    if (this.result !== undefined || this.error !== undefined) return;
    if (this.controller) this.controller.abort(reason);
    else this.abortReason ??= reason;
  }

  whole(): Promise<Buffer> {
    if (this.result !== undefined) return Promise.resolve(this.result);
    if (this.error !== undefined) return Promise.reject(this.error);
    return new Promise((resolve, reject) => (this.waiters ??= []).push({ resolve, reject }));
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    yield await this.whole();
  }

  destroy(): void {
    this.abort(new DOMException("This operation was aborted", "AbortError"));
  }

  // ------------------------------------------------------------------ undici's handler interface

  onRequestStart(controller: DispatchController): void {
    if (this.abortReason) controller.abort(this.abortReason);
    else this.controller = controller;
  }

  onResponseStart(_controller: DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return;
    this.status = statusCode;
    this.headers = headers;
    this.responded = true;
    this.started(this);
  }

  onResponseData(_controller: DispatchController, chunk: Buffer): void {
    this.parts.push(chunk);
  }

  onResponseEnd(): void {
    const parts = this.parts;
    this.parts = [];
    this.result = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    this.controller = undefined;
    const waiters = this.waiters;
    this.waiters = undefined;
    if (waiters) for (const w of waiters) w.resolve(this.result);
  }

  onResponseError(_controller: DispatchController, err: Error): void {
    this.parts = [];
    this.controller = undefined;
    if (!this.responded) return this.failed(err);
    this.error = err;
    const waiters = this.waiters;
    this.waiters = undefined;
    if (waiters) for (const w of waiters) w.reject(err);
  }
}
