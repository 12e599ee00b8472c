/**
 * Cutting a log stream (kmsg reads, journalctl output) into lines, holding a
 * bounded amount of it. Pure (state in the object): which lines come out
 * never depends on how the text was cut into pieces.
 */
import { StringDecoder } from "node:string_decoder";

/** The longest line kept, in characters: far above a kernel record (about 1 KiB) or a journal entry (a few KiB). */
export const MAX_LOG_LINE = 1024 * 1024;

export interface Lines {
  /** The lines the piece finished, without their "\n". */
  readonly lines: string[];
  /** Lines longer than the limit that the piece finished: skipped whole, never held. */
  readonly skipped: number;
}

export class LineSplitter {
  readonly #max: number;
  #partial = "";
  /** The unfinished line grew past the limit: the rest of it is dropped up to its "\n". */
  #skipping = false;
  /** Keeps a character whose bytes are split between two reads whole. */
  readonly #decoder = new StringDecoder("utf8");

  constructor(maxLine = MAX_LOG_LINE) {
    this.#max = maxLine;
  }

  /** Feeds bytes as read (a character may be split between two reads). */
  pushBytes(bytes: Uint8Array): Lines {
    return this.push(this.#decoder.write(bytes));
  }

  /** Feeds text; returns the lines it finished. Each character is looked at once, and at most `maxLine` are held. */
  push(text: string): Lines {
    const lines: string[] = [];
    let skipped = 0;
    let at = 0;
    for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", at)) {
      const piece = text.slice(at, nl);
      at = nl + 1;
      const line = this.#partial + piece;
      this.#partial = "";
      if (this.#skipping || line.length > this.#max) skipped++;
      else lines.push(line);
      this.#skipping = false;
    }
    if (!this.#skipping && at < text.length) {
      this.#partial += text.slice(at);
      if (this.#partial.length > this.#max) {
        this.#partial = "";
        this.#skipping = true;
      }
    }
    return { lines, skipped };
  }

  /** Characters held: the unfinished line. */
  get held(): number {
    return this.#partial.length;
  }
}
