/**
 * An upstream answer's body as the router reads it: chunk by chunk (a stream,
 * relayed as it comes) or whole (a JSON answer). Two kinds: a Node stream's
 * (a translated or drilled answer), and one fed straight by undici's
 * dispatcher — no stream object between the socket and the router.
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
  pause(): void;
  resume(): void;
}

/** Bytes a streamed answer may have waiting for its reader before the upstream is paused (as a stream's highWaterMark). */
const HIGH_WATER = 65_536;

/**
 * One request to undici's dispatcher (`Dispatcher.dispatch`): the handler and the body in one object, read
 * whole (`whole()`) or chunk by chunk (iterated: the upstream is paused while HIGH_WATER bytes wait for the
 * reader). `started` is called once at the final status and headers (1xx answers pass), `failed` when the
 * request fails before them; after them, a failure ends the reading with it.
 */
export class DispatchedAnswer implements UpstreamBody {
  status = 0;
  headers: Record<string, string | string[] | undefined> = {};
  private controller: DispatchController | undefined;
  private abortReason: Error | undefined;
  private responded = false;
  /** What came and was not read yet, and its size. */
  private parts: Buffer[] = [];
  private waiting = 0;
  private paused = false;
  /** Read chunk by chunk (iterated), not whole: only such a reader can fall behind and pause the upstream. */
  private reading = false;
  private ended = false;
  private error: Error | undefined;
  /** Readers waiting for more: whole() for the end, an iteration for its next chunk. */
  private wakers: (() => void)[] = [];
  private readonly started: (a: DispatchedAnswer) => void;
  private readonly failed: (e: Error) => void;

  constructor(started: (a: DispatchedAnswer) => void, failed: (e: Error) => void) {
    this.started = started;
    this.failed = failed;
  }

  /** Aborts the request: at once, or as soon as it starts; `failed` or the reading then ends with `reason`. */
  abort(reason: Error): void {
    if (this.ended || this.error !== undefined) return;
    if (this.controller) this.controller.abort(reason);
    else this.abortReason ??= reason;
  }

  async whole(): Promise<Buffer> {
    for (;;) {
      if (this.error !== undefined) throw this.error;
      if (this.ended) break;
      await new Promise<void>((wake) => this.wakers.push(wake));
    }
    const parts = this.parts;
    this.parts = [];
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    this.reading = true;
    return {
      next: () => this.next(),
      return: async () => {
        // Left before the end: nothing more is wanted of it.
        this.destroy();
        return { done: true, value: undefined };
      },
    };
  }

  private async next(): Promise<IteratorResult<Buffer>> {
    for (;;) {
      const chunk = this.parts.shift();
      if (chunk !== undefined) {
        this.waiting -= chunk.length;
        if (this.paused && this.waiting < HIGH_WATER) {
          this.paused = false;
          this.controller?.resume();
        }
        return { done: false, value: chunk };
      }
      if (this.error !== undefined) throw this.error;
      if (this.ended) return { done: true, value: undefined };
      await new Promise<void>((wake) => this.wakers.push(wake));
    }
  }

  destroy(): void {
    this.abort(new DOMException("This operation was aborted", "AbortError"));
  }

  private wake(): void {
    const wakers = this.wakers;
    if (wakers.length === 0) return;
    this.wakers = [];
    for (const w of wakers) w();
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

  onResponseData(controller: DispatchController, chunk: Buffer): void {
    this.parts.push(chunk);
    this.waiting += chunk.length;
    // Only a reader that takes it chunk by chunk can fall behind; whole() takes it all at the end.
    if (this.waiting >= HIGH_WATER && this.wakers.length === 0 && !this.paused && this.reading) {
      this.paused = true;
      controller.pause();
    }
    this.wake();
  }

  onResponseEnd(): void {
    this.ended = true;
    this.controller = undefined;
    this.wake();
  }

  onResponseError(_controller: DispatchController, err: Error): void {
    this.controller = undefined;
    // What came before the failure is still read (then the failure); whole() fails at once.
    if (!this.responded) return this.failed(err);
    this.error = err;
    this.wake();
  }
}
