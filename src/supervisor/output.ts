/**
 * A backend's output: every byte it prints goes to its own size-capped,
 * rotated log file, and the last lines stay in memory for status and alert
 * mails. The pipes are always drained: if the disk cannot keep up, lines are
 * dropped (and counted) rather than the child blocked.
 */
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";

/** The last `capacity` lines of a stream of chunks, each with the time llmsup read it. */
export class LineTail {
  private readonly lines: { at: number; text: string }[] = [];
  private partial = "";
  private partialAt = 0;
  private readonly capacity: number;

  constructor(capacity = 200) {
    this.capacity = capacity;
  }

  /** Adds a chunk read at `at`; returns the lines it completed. */
  push(chunk: string, at = 0): { at: number; text: string }[] {
    if (this.partial === "") this.partialAt = at;
    const text = this.partial + chunk;
    const parts = text.split("\n");
    this.partial = parts.pop() ?? "";
    if (this.partial.length > 8192) {
      parts.push(this.partial);
      this.partial = "";
    }
    const done = parts.map((p, i) => ({ at: i === 0 ? this.partialAt : at, text: p.replace(/\r$/, "") }));
    if (this.partial !== "") this.partialAt = at;
    for (const l of done) {
      this.lines.push(l);
      if (this.lines.length > this.capacity) this.lines.shift();
    }
    return done;
  }

  /** The last `n` lines the backend printed (llmsup's own markers left out), then the unfinished one: evidence for exits and mails. */
  last(n = this.capacity): string[] {
    return this.entries(Infinity).filter((l) => !l.text.startsWith(MARKER)).slice(-n).map((l) => l.text);
  }

  /** The same lines, each after the time it was read (`llmsup logs`). */
  lastStamped(n = this.capacity): string[] {
    return this.entries(n).map(stamped);
  }

  private entries(n: number): { at: number; text: string }[] {
    return (this.partial === "" ? this.lines : [...this.lines, { at: this.partialAt, text: this.partial }]).slice(-n);
  }
}

/** How llmsup's own marker lines in a backend's log begin. */
export const MARKER = "──── llmsup:";

/** `2026-12-01T23:10:35.123Z  the line` */
export function stamped(l: { at: number; text: string }): string {
  return `${new Date(l.at).toISOString()}  ${l.text}`;
}

/** Most bytes buffered for the file before new output is dropped. */
const MAX_BUFFERED = 4 * 1024 * 1024;

/** Appends to `file`, rotating it to file.1 … file.N when it passes `maxBytes`. */
export class RotatingLog {
  readonly file: string;
  private readonly maxBytes: number;
  private readonly keep: number;
  private stream?: WriteStream;
  private size = 0;
  private rotating?: Promise<void>;
  private pending: Buffer[] = [];
  dropped = 0;
  /** Set when the file cannot be written; output still reaches the tail. */
  error?: string;

  constructor(file: string, maxBytes: number, keep: number) {
    this.file = file;
    this.maxBytes = maxBytes;
    this.keep = keep;
  }

  async open(): Promise<void> {
    await mkdir(path.dirname(this.file), { recursive: true });
    this.size = await stat(this.file).then((s) => s.size, () => 0);
    this.openStream();
  }

  private openStream(): void {
    const s = createWriteStream(this.file, { flags: "a" });
    s.on("error", (e) => {
      this.error = e.message;
    });
    this.stream = s;
  }

  write(chunk: Buffer): void {
    if (this.rotating) {
      if (this.pending.reduce((n, b) => n + b.length, 0) + chunk.length > MAX_BUFFERED) this.dropped += chunk.length;
      else this.pending.push(chunk);
      return;
    }
    const s = this.stream;
    if (!s || this.error) return;
    if (this.size > 0 && this.size + chunk.length > this.maxBytes) {
      // Rotate first, so the newest output is always in the file itself.
      this.pending.push(chunk);
      this.rotating = this.rotate().finally(() => {
        this.rotating = undefined;
        const queued = this.pending;
        this.pending = [];
        for (const b of queued) this.write(b);
      });
      return;
    }
    if (s.writableLength > MAX_BUFFERED) {
      this.dropped += chunk.length;
      return;
    }
    s.write(chunk);
    this.size += chunk.length;
  }

  private async rotate(): Promise<void> {
    const old = this.stream;
    this.stream = undefined;
    if (old) await new Promise<void>((r) => old.end(r));
    try {
      if (this.keep <= 0) await rm(this.file, { force: true });
      else {
        await rm(`${this.file}.${this.keep}`, { force: true });
        for (let i = this.keep - 1; i >= 1; i--) await rename(`${this.file}.${i}`, `${this.file}.${i + 1}`).catch(() => undefined);
        await rename(this.file, `${this.file}.1`);
      }
    } catch (e) {
      this.error = (e as Error).message;
    }
    this.size = 0;
    this.openStream();
  }

  async close(): Promise<void> {
    while (this.rotating) await this.rotating;
    const s = this.stream;
    this.stream = undefined;
    if (s) await new Promise<void>((r) => s.end(r));
  }
}

/**
 * Everything one backend prints, across its generations: the log file (opened
 * once, before the first spawn), the tail, and the followers of `llmsup logs -f`.
 */
export class BackendOutput {
  readonly tail = new LineTail(200);
  readonly file: RotatingLog;
  private opened?: Promise<void>;
  private readonly followers = new Set<(text: string) => void>();
  private readonly now: () => number;

  constructor(file: RotatingLog, now: () => number = Date.now) {
    this.file = file;
    this.now = now;
  }

  /** Opens the log file the first time; a file that cannot be written leaves the output in memory only. */
  open(onUnwritable: (e: Error) => void): Promise<void> {
    this.opened ??= this.file.open().catch(onUnwritable);
    return this.opened;
  }

  /** Follows the output, a stamped line at a time; returns the unsubscribe. */
  follow(fn: (text: string) => void): () => void {
    this.followers.add(fn);
    return () => this.followers.delete(fn);
  }

  /** A line llmsup says about the backend (a spawn failure, a new generation), kept with its output: file, tail, followers. */
  note(line: string): void {
    this.take(Buffer.from(`${line}\n`));
  }

  private take(chunk: Buffer): void {
    this.file.write(chunk);
    for (const l of this.tail.push(chunk.toString("utf8"), this.now())) for (const f of this.followers) f(`${stamped(l)}\n`);
  }

  /**
   * Drains a process's pipes into the file, the tail and the followers.
   * Resolves once both pipes have ended (or failed): after that, nothing the
   * process printed is still on its way.
   */
  attach(stdout: Readable, stderr: Readable): Promise<void> {
    const drain = (s: Readable) => {
      s.on("data", (chunk: Buffer) => this.take(chunk));
      // An error on a pipe must not bring the daemon down.
      s.on("error", () => undefined);
      return finished(s, { writable: false }).catch(() => undefined);
    };
    return Promise.all([drain(stdout), drain(stderr)]).then(() => undefined);
  }
}
