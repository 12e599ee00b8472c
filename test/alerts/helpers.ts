/** Alert tests: a real SMTP server on loopback, a clock the test moves, configurations. */
import { headerWords } from "../../src/cli/mail-catcher.ts";
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { SMTPServer } from "smtp-server";
import type { AlerterOptions } from "../../src/alerts/alerter.ts";
import { createMailer } from "../../src/alerts/mailer.ts";
import type { AlertsConfig } from "../../src/config/types.ts";
import { realClock } from "../../src/platform/clock.ts";
import { validateConfigText } from "../../src/config/load.ts";
import { AlertBridge } from "../../src/daemon/alert-bridge.ts";

export const SMTP_USER = "llmsup@example.com";
export const SMTP_PASSWORD = "pw-Quartz-7731";

export { ManualClock } from "../helpers/clock.ts";

/** The real SMTP transport, and real time for the waits on it (flush, the snapshot's deadline): what daemon/wire.ts hands the alerter. */
export const realDelivery: Pick<AlerterOptions, "mailer" | "ioClock"> = { mailer: createMailer, ioClock: realClock };

export interface ReceivedMail {
  readonly from: string;
  readonly to: readonly string[];
  readonly subject: string;
  readonly text: string;
  readonly headers: ReadonlyMap<string, string>;
}

export interface TestSmtp {
  readonly port: number;
  readonly mails: ReceivedMail[];
  /** AUTH attempts refused. */
  authFailures: number;
  /** Resolves once `n` mails have arrived (rejects after `ms`). */
  waitFor(n: number, ms?: number): Promise<ReceivedMail[]>;
  close(): Promise<void>;
}

/** Decodes the parts of a message nodemailer writes for a plain-text mail. */
export function parseMail(raw: string): { subject: string; text: string; headers: Map<string, string> } {
  const split = raw.indexOf("\r\n\r\n");
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, " ");
  const body = raw.slice(split + 4);
  const headers = new Map<string, string>();
  for (const line of head.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0) headers.set(line.slice(0, i).toLowerCase(), line.slice(i + 1).trim());
  }
  const cte = (headers.get("content-transfer-encoding") ?? "7bit").toLowerCase();
  let text = body;
  if (cte === "quoted-printable") text = Buffer.from(body.replace(/=\r\n/g, "").replace(/=([0-9A-F]{2})/gi, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), "latin1").toString("utf8");
  else if (cte === "base64") text = Buffer.from(body, "base64").toString("utf8");
  return { subject: headerWords(headers.get("subject") ?? ""), text: text.replace(/\r\n/g, "\n"), headers };
}

/** A real SMTP server on 127.0.0.1 that requires AUTH (plain text allowed on loopback). */
export async function startSmtp(t: { after(fn: () => unknown): void }, options: { port?: number; password?: string } = {}): Promise<TestSmtp> {
  const password = options.password ?? SMTP_PASSWORD;
  const mails: ReceivedMail[] = [];
  const waiters: (() => void)[] = [];
  const state = { authFailures: 0 };
  const server = new SMTPServer({
    logger: false,
    closeTimeout: 50,
    secure: false,
    allowInsecureAuth: true,
    authOptional: false,
    disabledCommands: ["STARTTLS"],
    authMethods: ["PLAIN", "LOGIN"],
    onAuth(auth, _session, cb) {
      if (auth.username === SMTP_USER && auth.password === password) return cb(null, { user: auth.username });
      state.authFailures++;
      cb(Object.assign(new Error("5.7.8 Authentication credentials invalid"), { responseCode: 535 }));
    },
    onRcptTo(address, _session, cb) {
      if (address.address.startsWith("nobody@")) return cb(Object.assign(new Error("5.1.1 No such user here"), { responseCode: 550 }));
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const p = parseMail(Buffer.concat(chunks).toString("latin1"));
        mails.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
          ...p,
        });
        for (const w of waiters.splice(0)) w();
        cb(null, `queued as T${mails.length}`);
      });
    },
  });
  server.listen(options.port ?? 0, "127.0.0.1");
  await once(server.server, "listening");
  const port = (server.server.address() as { port: number }).port;
  let closed = false;
  const close = () =>
    new Promise<void>((resolve) => {
      if (closed) return resolve();
      closed = true;
      server.close(() => resolve());
    });
  t.after(close);
  return {
    port,
    mails,
    get authFailures() {
      return state.authFailures;
    },
    set authFailures(n) {
      state.authFailures = n;
    },
    async waitFor(n, ms = 5_000) {
      const deadline = Date.now() + ms;
      while (mails.length < n) {
        const left = deadline - Date.now();
        if (left <= 0) assert.fail(`expected ${n} mails within ${ms}ms, got ${mails.length}: ${mails.map((m) => m.subject).join(" | ")}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      return mails;
    },
    close,
  };
}

/** A TCP server that accepts connections and never says a word (an SMTP server that hangs). */
export async function startSilentServer(t: { after(fn: () => unknown): void }): Promise<{ port: number; server: Server }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as { port: number }).port, server };
}

/** A whole supervisor.toml whose alerts go to a test SMTP server on loopback. */
export function alertsToml(port: number, extra: { smtp?: string; alerts?: string; to?: readonly string[]; criticalTo?: readonly string[]; password?: string } = {}): string {
  return `[daemon]
hostname = "gpu-box-1"

[alerts]
from = "llmsup@gpu-box-1.example.com"
to = ${JSON.stringify(extra.to ?? ["oncall@example.com"])}
critical_to = ${JSON.stringify(extra.criticalTo ?? ["boss@example.com"])}
${extra.alerts ?? ""}

[alerts.smtp]
host = "127.0.0.1"
port = ${port}
security = "none"
user = "${SMTP_USER}"
${extra.password ?? 'password_env = "LLMSUP_TEST_SMTP_PASSWORD"'}
${extra.smtp?.includes("timeout") ? "" : 'timeout = "2s"'}
${extra.smtp ?? ""}

[[backend]]
name = "cloud"
kind = "openai"
url = "https://api.example.com"

[[route]]
model = "m"
tiers = [{ backend = "cloud", model = "m" }]
`;
}

/** The [alerts] section (enabled) for a test SMTP server, validated like any configuration. */
export function alertsConfig(port: number, extra: Parameters<typeof alertsToml>[1] = {}): AlertsConfig {
  const r = validateConfigText(alertsToml(port, { ...extra, alerts: `enabled = true\n${extra.alerts ?? ""}` }), { hostname: "gpu-box-1" });
  if (!r.ok) assert.fail(`test config invalid:\n${r.problems.map((p) => `${p.path}: ${p.message}`).join("\n")}`);
  return r.config.alerts;
}

export const SMTP_ENV = { LLMSUP_TEST_SMTP_PASSWORD: SMTP_PASSWORD } as const;

/** The daemon's alert bridge over one GPU box: backend llama-gpu0 (llama.cpp, GPU 0, a process) serving route "m", host gpu-box-1. */
export function gpuBoxBridge(): AlertBridge {
  const v = validateConfigText(
    `[[backend]]\nname = "llama-gpu0"\nkind = "llamacpp"\nurl = "http://127.0.0.1:8080"\ngpus = [0]\n  [backend.process]\n  command = ["/opt/llama/llama-server"]\n[[route]]\nmodel = "m"\ntiers = [{ backend = "llama-gpu0", model = "m" }]\n`,
    { hostname: "gpu-box-1" },
  );
  if (!v.ok) assert.fail(v.problems.map((p) => `${p.path}: ${p.message}`).join("\n"));
  return new AlertBridge(v.config);
}
