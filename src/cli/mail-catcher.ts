/**
 * The demo's mail catcher: an SMTP server on 127.0.0.1 that accepts every
 * mail (no TLS, no login) and saves each as a .eml file. It is the thin shell
 * over the `smtp-server` package, a development dependency: it is imported
 * only when the catcher starts, and an installation without it gets a reason
 * instead of a catcher.
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";

export interface CaughtMail {
  /** When it arrived (ms since the epoch). */
  readonly at: number;
  /** The Subject header, decoded. */
  readonly subject: string;
  /** The .eml file it was saved as. */
  readonly file: string;
}

export interface MailCatcher {
  readonly port: number;
  /** Where the mails are saved. */
  readonly dir: string;
  /** Mails caught so far. */
  readonly count: number;
  close(): Promise<void>;
}

/** Why there is no catcher: one line for the operator. */
export interface NoCatcher {
  readonly off: string;
}

/** Unfolds a message's header section and decodes the Subject's RFC 2047 words (what nodemailer writes for non-ASCII). */
export function mailSubject(raw: Buffer): string {
  const text = raw.toString("latin1");
  const end = text.search(/\r?\n\r?\n/);
  const head = (end < 0 ? text : text.slice(0, end)).replace(/\r?\n[ \t]+/g, " ");
  const line = head.split(/\r?\n/).find((l) => /^subject:/i.test(l));
  if (line === undefined) return "(no subject)";
  return headerWords(line.slice(line.indexOf(":") + 1).trim());
}

/** A header value with its RFC 2047 encoded words decoded (`=?utf-8?Q?…?=`, `=?UTF-8?B?…?=`). */
export function headerWords(value: string): string {
  const decode = (charset: string, enc: string, data: string): string => {
    const bytes =
      enc.toUpperCase() === "B"
        ? Buffer.from(data, "base64")
        : Buffer.from(data.replace(/_/g, " ").replace(/=([0-9A-F]{2})/gi, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), "latin1");
    try {
      return new TextDecoder(charset).decode(bytes);
    } catch {
      return bytes.toString("latin1");
    }
  };
  return value
    .replace(/(\?=)\s+(?==\?)/g, "$1") // whitespace between two encoded words is not part of the text
    .replace(/=\?([^?]+)\?([BQ])\?([^?]*)\?=/gi, (_m, charset: string, enc: string, data: string) => decode(charset, enc, data));
}

/** "20261201-231035" (UTC), for file names that sort by arrival. */
function stamp(at: number): string {
  const t = new Date(at).toISOString();
  return `${t.slice(0, 10).replaceAll("-", "")}-${t.slice(11, 19).replaceAll(":", "")}`;
}

type SmtpServerModule = typeof import("smtp-server");

/**
 * Starts the catcher on a free port of 127.0.0.1, saving mails in `dir`; `onMail` hears of each once it is saved.
 * Resolves to `{ off }` when it cannot run (the package is not installed, loopback refuses a port).
 */
export async function startMailCatcher(
  dir: string,
  onMail: (m: CaughtMail) => void,
  load: () => Promise<SmtpServerModule> = () => import("smtp-server"),
): Promise<MailCatcher | NoCatcher> {
  let mod: SmtpServerModule;
  try {
    mod = await load();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") return { off: "the smtp-server package is not installed (`npm install smtp-server` turns them on)" };
    return { off: `the smtp-server package cannot be loaded: ${(e as Error).message}` };
  }
  await mkdir(dir, { recursive: true });
  let count = 0;
  const server = new mod.SMTPServer({
    logger: false,
    secure: false,
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    // The daemon's pooled connection is closed when it stops; a stray one must not hold the demo's exit for long.
    closeTimeout: 1_000,
    onData(stream, _session, cb) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const raw = Buffer.concat(chunks);
        const at = Date.now();
        const n = ++count;
        const file = path.join(dir, `${stamp(at)}-${n}.eml`);
        writeFile(file, raw).then(
          () => {
            cb(null, `saved as ${path.basename(file)}`);
            onMail({ at, subject: mailSubject(raw), file });
          },
          (e: Error) => cb(Object.assign(new Error(`4.3.0 cannot save the mail: ${e.message}`), { responseCode: 451 })),
        );
      });
    },
  });
  // Errors of the listening socket and of client connections: only one while it starts says anything to the demo.
  let starting: ((e: Error) => void) | undefined;
  server.on("error", (e: Error) => starting?.(e));
  const error = await new Promise<Error | undefined>((resolve) => {
    starting = resolve;
    server.listen(0, "127.0.0.1", () => resolve(undefined));
  });
  starting = undefined;
  if (error) return { off: `no port for the mail catcher on 127.0.0.1: ${error.message}` };
  const port = (server.server.address() as { port: number }).port;
  let closing: Promise<void> | undefined;
  return {
    port,
    dir,
    get count() {
      return count;
    },
    close: () => (closing ??= new Promise<void>((resolve) => server.close(() => resolve()))),
  };
}
