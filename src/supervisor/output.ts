/**
 * A backend's output. A managed backend writes its stdout and stderr straight
 * into its own log file (an O_APPEND descriptor it inherits, no pipe llmsup
 * owns: llmsup's death never hands it SIGPIPE, and the file goes on across a
 * daemon restart); llmsup follows the file for the last lines (status, exit
 * evidence, alert mails, `llmsup logs -f`) and rotates it by copy and
 * truncate at its size cap. When the file cannot be written the process gets
 * pipes instead and its output is kept in memory only.
 */
import { appendFile, copyFile, mkdir, open as openFile, rename, rm, stat, truncate, type FileHandle } from "node:fs/promises";
import { StringDecoder } from "node:string_decoder";
import path from "node:path";
import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import type { Clock, TimerHandle } from "../platform/clock.ts";

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

/** How often the log file is read for new output. */
export const FOLLOW_EVERY_MS = 250;
/** Most bytes read from the file in one pass (a burst is read over several). */
const READ_MAX = 1024 * 1024;
/** How much of an existing file is read at start, for the tail (`llmsup logs` after a daemon restart). */
const PRIME_BYTES = 64 * 1024;

/** The log file and its rotations: `file`, `file.1` … `file.<keep>`. */
export class LogFile {
  readonly file: string;
  /** The size cap and the rotations kept: a reload may change them. */
  maxBytes: number;
  keep: number;

  constructor(file: string, maxBytes: number, keep: number) {
    this.file = file;
    this.maxBytes = maxBytes;
    this.keep = keep;
  }

  /** Makes sure the file can be appended to (creating it and its directory); throws why not. */
  async prepare(): Promise<void> {
    await mkdir(path.dirname(this.file), { recursive: true });
    await appendFile(this.file, "");
  }

  /** A descriptor for a child's stdout and stderr (O_APPEND: every write lands at the end, whoever else writes). */
  async forChild(): Promise<FileHandle> {
    return openFile(this.file, "a");
  }

  /**
   * Copies the file to file.1 (older ones shifted, the oldest dropped) and
   * truncates it: the writer's O_APPEND descriptor goes on at the new end.
   * What is written between the copy and the truncation is lost (a few
   * lines at most, at a busy moment).
   */
  async rotate(): Promise<void> {
    if (this.keep > 0) {
      await rm(`${this.file}.${this.keep}`, { force: true });
      for (let i = this.keep - 1; i >= 1; i--) await rename(`${this.file}.${i}`, `${this.file}.${i + 1}`).catch(() => undefined);
      await copyFile(this.file, `${this.file}.1`);
    }
    await truncate(this.file, 0);
  }
}

interface Reader {
  handle: FileHandle;
  ino: number;
  offset: number;
  /** Keeps a character split between two reads whole. */
  readonly decoder: StringDecoder;
}

/**
 * Everything one backend prints, across its generations (and across daemon
 * restarts, through the file): the tail, the followers of `llmsup logs -f`,
 * the file.
 */
export class BackendOutput {
  readonly tail = new LineTail(200);
  readonly file: LogFile;
  private readonly clock: Clock;
  private readonly followers = new Set<(text: string) => void>();
  private prepared?: Promise<boolean>;
  /** The file as llmsup reads it. */
  private reader?: Reader;
  private timer?: TimerHandle;
  private reading: Promise<void> = Promise.resolve();
  private appending: Promise<void> = Promise.resolve();
  /** Lines noted and appended, not yet read back from the file (they are in the tail already). */
  private readonly echoes: string[] = [];
  /** An unfinished line read from the file. */
  private partial = "";
  private closed = false;
  /** Set when the file cannot be written or read: output is then kept in memory only. */
  error?: string;

  constructor(file: LogFile, clock: Clock) {
    this.file = file;
    this.clock = clock;
  }

  /** Prepares the file the first time (true when it can be written); one that cannot leaves the output in memory only. */
  open(onUnwritable: (e: Error) => void): Promise<boolean> {
    this.prepared ??= this.file.prepare().then(
      async () => {
        await this.startReading();
        return true;
      },
      (e: Error) => {
        this.error = e.message;
        onUnwritable(e);
        return false;
      },
    );
    return this.prepared;
  }

  /** A descriptor for the next process's stdout and stderr; undefined when the file cannot be written (give it pipes). */
  async forChild(): Promise<FileHandle | undefined> {
    if (!(await this.prepared)) return undefined;
    return this.file.forChild().catch((e: Error) => {
      this.error = e.message;
      return undefined;
    });
  }

  /** Follows the output, a stamped line at a time; returns the unsubscribe. */
  follow(fn: (text: string) => void): () => void {
    this.followers.add(fn);
    return () => this.followers.delete(fn);
  }

  /**
   * A line llmsup says about the backend (a spawn failure, a new generation),
   * kept with its output: in the tail and to followers at once, appended to
   * the file (where reading it back is skipped).
   */
  note(line: string): void {
    this.take(`${line}\n`);
    if (!this.reader || this.error) return;
    this.echoes.push(line);
    this.appending = this.appending.then(() =>
      appendFile(this.file.file, `${line}\n`).catch(() => {
        const i = this.echoes.indexOf(line);
        if (i >= 0) this.echoes.splice(i, 1);
      }),
    );
  }

  /**
   * Drains a process's pipes (when it got pipes, not the file) into the tail
   * and the followers. Resolves once both pipes have ended (or failed).
   */
  attach(stdout: Readable, stderr: Readable): Promise<void> {
    const drain = (s: Readable) => {
      s.on("data", (chunk: Buffer) => this.take(chunk.toString("utf8")));
      // An error on a pipe must not bring the daemon down.
      s.on("error", () => undefined);
      return finished(s, { writable: false }).catch(() => undefined);
    };
    return Promise.all([drain(stdout), drain(stderr)]).then(() => undefined);
  }

  /** Reads what the file has that the tail has not yet (before an exit is judged: the last lines are evidence). */
  catchUp(): Promise<void> {
    this.reading = this.reading
      .then(() => this.appending)
      .then(() => this.readNew())
      .catch((e: Error) => void (this.error = e.message));
    return this.reading;
  }

  /** Stops following the file. */
  async close(): Promise<void> {
    this.closed = true;
    this.timer?.cancel();
    await this.catchUp();
    await this.reader?.handle.close().catch(() => undefined);
    this.reader = undefined;
  }

  private take(text: string): void {
    for (const l of this.tail.push(text, this.clock.now())) for (const f of this.followers) f(`${stamped(l)}\n`);
  }

  /**
   * Text read from the file: whole lines, less llmsup's own lines read back.
   * The unfinished line waits here, not in the tail, so that a line llmsup
   * notes meanwhile never joins the end of one the backend has not finished.
   */
  private fromFile(text: string): void {
    const parts = (this.partial + text).split("\n");
    this.partial = parts.pop() ?? "";
    if (this.partial.length > 8192) {
      parts.push(this.partial);
      this.partial = "";
    }
    let out = "";
    for (const line of parts) {
      if (this.echoes[0] === line) this.echoes.shift();
      else out += `${line}\n`;
    }
    if (out) this.take(out);
  }

  /** Opens the file for reading; the last part of what it already holds primes the tail (dated by the file's last change). */
  private async startReading(): Promise<void> {
    const handle = await openFile(this.file.file, "r");
    const st = await handle.stat();
    const from = Math.max(0, st.size - PRIME_BYTES);
    this.reader = { handle, ino: st.ino, offset: st.size, decoder: new StringDecoder("utf8") };
    if (st.size > 0) {
      const buf = Buffer.alloc(st.size - from);
      await handle.read(buf, 0, buf.length, from);
      let text = buf.toString("utf8");
      if (from > 0) text = text.slice(text.indexOf("\n") + 1);
      // Earlier lines: not sent to followers (they ask for what comes next).
      this.tail.push(text.endsWith("\n") || text === "" ? text : `${text}\n`, st.mtimeMs);
    }
  }

  /**
   * Reads the file every FOLLOW_EVERY_MS while a process writes into it
   * (on), or no longer (off: it exited, and catchUp() read its last lines).
   */
  following(on: boolean): void {
    this.timer?.cancel();
    this.timer = undefined;
    if (on && !this.closed && this.reader) this.schedule();
  }

  private schedule(): void {
    const timer = (this.timer = this.clock.setTimeout(() => {
      void this.catchUp().finally(() => {
        if (this.timer === timer) this.schedule();
      });
    }, FOLLOW_EVERY_MS));
  }

  private async readNew(): Promise<void> {
    const r = this.reader;
    if (!r) return;
    const st = await stat(this.file.file).catch(() => undefined);
    if (st && st.ino !== r.ino) {
      // Replaced under us (an outside rotation by rename): finish the old one, then read the new from its start.
      await this.drain(r, Infinity);
      await r.handle.close().catch(() => undefined);
      this.reader = { handle: await openFile(this.file.file, "r"), ino: st.ino, offset: 0, decoder: r.decoder };
      return this.readNew();
    }
    const size = (await r.handle.stat()).size;
    // Truncated (our own rotation or someone's copytruncate): go on from its start.
    if (size < r.offset) r.offset = 0;
    await this.drain(r, size);
    if (size > this.file.maxBytes) {
      await this.file.rotate();
      r.offset = 0;
    }
  }

  private async drain(r: Reader, upTo: number): Promise<void> {
    for (;;) {
      const buf = Buffer.alloc(READ_MAX);
      const { bytesRead } = await r.handle.read(buf, 0, Math.min(READ_MAX, Math.max(0, upTo - r.offset)), r.offset);
      if (bytesRead <= 0) return;
      r.offset += bytesRead;
      this.fromFile(r.decoder.write(buf.subarray(0, bytesRead)));
      if (bytesRead < READ_MAX) return;
    }
  }
}
