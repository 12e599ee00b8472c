/**
 * Watches the kernel log for XIDs and "fallen off the bus": /dev/kmsg, else
 * `journalctl -k -f -o json --lines=0`, else nothing (said once).
 *
 * kmsg is opened non-blocking and polled, so no libuv thread ever sits in a
 * blocking read. It starts at the end, as lseek(SEEK_END) would: everything
 * readable at open time is read and thrown away before watching begins —
 * boot history is not news. (Skipping by sequence number would need the
 * newest sequence number first, which kmsg only gives by reading to the end
 * anyway; the discard window is the few milliseconds of that drain.) The
 * journal reader starts at the end by asking for no backlog (--lines=0).
 *
 * The kmsg path and the journal command are injectable: tests feed a file, a
 * FIFO or a fake command. Lines that are not kmsg records are read as bare
 * messages, so a plain dmesg-style file works too.
 */
import { constants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import type { Clock, TimerHandle } from "../platform/clock.ts";
import { LineSplitter, MAX_LOG_LINE } from "./line-splitter.ts";
import type { ChildHandle, ProgramSpawner } from "./spawn.ts";
import { parseJournalLine, parseKernelMessage, parseKmsgRecord, type KernelGpuEvent } from "./xid.ts";

export type KernelLogMode = "auto" | "kmsg" | "journal" | "off";

export type KernelLogStatus =
  | { readonly source: "kmsg"; readonly path: string }
  | { readonly source: "journal"; readonly command: readonly string[] }
  | { readonly source: "off" }
  | { readonly source: "unavailable"; readonly reason: string };

export const DEFAULT_KMSG = "/dev/kmsg";
export const DEFAULT_JOURNAL_COMMAND: readonly string[] = ["journalctl", "-k", "-f", "-o", "json", "--lines=0"];

export interface KernelLogOptions {
  readonly mode: KernelLogMode;
  readonly kmsgPath?: string;
  readonly journalCommand?: readonly string[];
  /** Starts the journal reader (spawnChild, from the composition root). */
  readonly spawn: ProgramSpawner;
  readonly clock: Clock;
  /** Pause between polls of kmsg when nothing is new, ms. */
  readonly pollMs?: number;
  /** A journalctl that ends sooner than this after starting is taken as unusable, ms. */
  readonly journalMinLifeMs?: number;
  readonly onEvent: (event: KernelGpuEvent) => void;
  /** Where the watcher reads from, each time that changes (unavailable is reported once). */
  readonly onStatus: (status: KernelLogStatus) => void;
  /** Records lost (kmsg overran), lines not understood: for debug logs. */
  readonly onNote?: (note: string) => void;
}

const READ_SIZE = 16 * 1024;
const MAX_DRAIN_READS = 200_000;

export class KernelLogWatcher {
  readonly #o: KernelLogOptions;
  readonly #clock: Clock;
  #status: KernelLogStatus | undefined;
  #stopped = false;
  #file: FileHandle | undefined;
  #timer: TimerHandle | undefined;
  #journal: ChildHandle | undefined;
  #lastSeq: number | undefined;

  constructor(options: KernelLogOptions) {
    this.#o = options;
    this.#clock = options.clock;
  }

  get status(): KernelLogStatus | undefined {
    return this.#status;
  }

  /** Chooses the source and starts watching; resolves with the status once it is known. */
  async start(): Promise<KernelLogStatus> {
    this.#stopped = false;
    const mode = this.#o.mode;
    if (mode === "off") return this.#setStatus({ source: "off" });
    let kmsgProblem: string | undefined;
    if (mode === "auto" || mode === "kmsg") {
      kmsgProblem = await this.#openKmsg();
      if (kmsgProblem === undefined) return this.#status as KernelLogStatus;
      if (mode === "kmsg") return this.#setStatus({ source: "unavailable", reason: kmsgProblem });
    }
    return this.#startJournal(kmsgProblem);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#journal?.kill("SIGTERM");
    this.#journal?.abandon();
    const file = this.#file;
    this.#file = undefined;
    await file?.close().catch(() => undefined);
  }

  #setStatus(status: KernelLogStatus): KernelLogStatus {
    const was = this.#status;
    this.#status = status;
    if (!(was?.source === "unavailable" && status.source === "unavailable")) this.#o.onStatus(status);
    return status;
  }

  // ---- /dev/kmsg ---------------------------------------------------------

  async #openKmsg(): Promise<string | undefined> {
    const path = this.#o.kmsgPath ?? DEFAULT_KMSG;
    try {
      this.#file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
      this.#kmsgLines = new LineSplitter();
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      return `cannot read ${path}: ${err.code ?? err.message}`;
    }
    // Start at the end: what is there already is history.
    const drained = await this.#readAvailable(false);
    if (drained !== undefined) {
      await this.#file?.close().catch(() => undefined);
      this.#file = undefined;
      return `cannot read ${path}: ${drained}`;
    }
    this.#setStatus({ source: "kmsg", path });
    this.#schedule();
    return undefined;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = this.#clock.setTimeout(() => void this.#poll(), this.#o.pollMs ?? 1_000);
  }

  async #poll(): Promise<void> {
    if (this.#stopped || !this.#file) return;
    const problem = await this.#readAvailable(true);
    if (problem !== undefined && !this.#stopped) {
      this.#setStatus({ source: "unavailable", reason: `reading ${this.#o.kmsgPath ?? DEFAULT_KMSG} failed: ${problem}` });
      await this.#file?.close().catch(() => undefined);
      this.#file = undefined;
      return;
    }
    this.#schedule();
  }

  /** Cuts kmsg reads into lines (a FIFO or a file may end a read inside a line, or inside a character). */
  #kmsgLines = new LineSplitter();

  /** Reads until nothing more is there now; returns a problem, or undefined. */
  async #readAvailable(deliver: boolean): Promise<string | undefined> {
    const buffer = Buffer.alloc(READ_SIZE);
    for (let reads = 0; reads < MAX_DRAIN_READS; reads++) {
      const file = this.#file;
      if (!file || this.#stopped) return undefined;
      let n: number;
      try {
        ({ bytesRead: n } = await file.read(buffer, 0, READ_SIZE, null));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "EAGAIN" || code === "EWOULDBLOCK") return undefined;
        // The ring buffer overwrote records we had not read yet; reading goes on after them.
        if (code === "EPIPE") {
          this.#o.onNote?.("kernel log records were overwritten before they were read");
          continue;
        }
        return code ?? (e as Error).message;
      }
      if (n === 0) return undefined;
      const { lines, skipped } = this.#kmsgLines.pushBytes(buffer.subarray(0, n));
      if (deliver) this.#skipped(skipped);
      for (const line of lines) this.#kmsgLine(line, deliver);
    }
    return undefined;
  }

  #skipped(count: number): void {
    if (count > 0) this.#o.onNote?.(`${count} kernel log line${count === 1 ? "" : "s"} longer than ${MAX_LOG_LINE} characters skipped`);
  }

  #kmsgLine(line: string, deliver: boolean): void {
    if (line === "" || line.startsWith(" ")) return; // dictionary continuation lines
    const record = parseKmsgRecord(line);
    if (record) {
      if (this.#lastSeq !== undefined && record.seq <= this.#lastSeq) return;
      if (deliver && this.#lastSeq !== undefined && record.seq > this.#lastSeq + 1) {
        this.#o.onNote?.(`${record.seq - this.#lastSeq - 1} kernel log records were lost`);
      }
      this.#lastSeq = record.seq;
    }
    if (!deliver) return;
    const event = parseKernelMessage(record ? record.message : line);
    if (event) this.#o.onEvent(event);
  }

  // ---- journalctl ----------------------------------------------------------

  #startJournal(kmsgProblem: string | undefined): KernelLogStatus {
    const command = this.#o.journalCommand ?? DEFAULT_JOURNAL_COMMAND;
    const [file, ...args] = command;
    if (!file) return this.#setStatus({ source: "unavailable", reason: "no journal command" });
    const started = this.#clock.now();
    const child = this.#o.spawn(file, args);
    this.#journal = child;
    const output = new LineSplitter();
    let said = "";
    let entries = 0;
    child.onOutput((chunk) => {
      const { lines, skipped } = output.push(chunk);
      this.#skipped(skipped);
      for (const line of lines) {
        const message = parseJournalLine(line);
        if (message === undefined) {
          if (said.length < 500) said += `${line.trim()} `;
          continue;
        }
        entries++;
        const event = parseKernelMessage(message);
        if (event) this.#o.onEvent(event);
      }
    });
    void child.exited.then((exit) => {
      if (this.#stopped || this.#journal !== child) return;
      this.#journal = undefined;
      const lived = this.#clock.now() - started;
      const why = exit.error ? `${file}: ${exit.error.code ?? exit.error.message}` : `${command.join(" ")} exited with status ${exit.code ?? exit.signal}${said ? `: ${said.trim()}` : ""}`;
      if (lived < (this.#o.journalMinLifeMs ?? 5_000) && entries === 0) {
        this.#setStatus({ source: "unavailable", reason: [kmsgProblem, why].filter(Boolean).join("; ") });
        return;
      }
      // It worked for a while: start it again after a pause.
      this.#o.onNote?.(`${why}; restarting it`);
      this.#timer = this.#clock.setTimeout(() => {
        if (!this.#stopped) this.#startJournal(kmsgProblem);
      }, this.#o.pollMs ?? 1_000);
    });
    return this.#status?.source === "journal" ? this.#status : this.#setStatus({ source: "journal", command });
  }
}
