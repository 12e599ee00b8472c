/**
 * The thin shell around nodemailer: a transport built from [alerts.smtp], the
 * password read once from its file or variable, every outcome turned into a
 * value (never a throw). The password reaches nodemailer and nothing else: no
 * log line, no error message (failures are scrubbed of it). nodemailer is
 * loaded with the first mailer: a daemon that sends no mail never holds it.
 */
import type { AlertsConfig } from "../config/types.ts";
import { LlmsupError } from "../errors/error.ts";
import type { Transport } from "./delivery.ts";
import { droppedNote } from "./render.ts";
import { readSecretFile } from "./secret.ts";
import { scrub, smtpFailure, type SmtpFailure } from "./smtp-failure.ts";

export interface OutgoingMail {
  readonly to: readonly string[];
  readonly subject: string;
  readonly text: string;
  /** A stable Message-ID (without brackets) so a retried mail is recognisable as the same one. */
  readonly messageId?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface SentInfo {
  readonly messageId: string;
  /** The server's final reply ("250 OK: queued as …"). */
  readonly response: string;
  readonly accepted: readonly string[];
  readonly rejected: readonly string[];
}

export type SendResult = { readonly ok: true; readonly info: SentInfo } | { readonly ok: false; readonly failure: SmtpFailure };

export interface Mailer {
  /** "smtp.example.com:587 (starttls)". */
  readonly target: string;
  /** Never rejects: failures come back as values. */
  send(mail: OutgoingMail, signal?: AbortSignal): Promise<SendResult>;
  /** Closes the transport; `force` also ends a connection in the middle of a delivery. */
  close(force?: boolean): void;
}

export interface MailerOptions {
  /** Where password_env is looked up. */
  readonly env: NodeJS.ProcessEnv;
  /** A pooled transport (the daemon) or one connection per send (test-alert). Default true. */
  readonly pool?: boolean;
  /** Name sent with EHLO; the host name. */
  readonly clientName?: string;
}

/** Builds a transport from [alerts]: createMailer (below), handed down from the composition root; tests may hand a fake. */
export type MailerFactory = (alerts: AlertsConfig, options: MailerOptions) => Promise<Mailer>;

/** Reads the SMTP password named by password_file or password_env; undefined when none is configured. */
export async function readSmtpPassword(smtp: AlertsConfig["smtp"], env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (smtp.password_file) return readSecretFile(smtp.password_file, "the SMTP password from alerts.smtp.password_file");
  if (smtp.password_env) {
    const pass = env[smtp.password_env];
    if (pass === undefined || pass === "") throw new LlmsupError("LLMSUP_E_SECRET_UNREADABLE", `the environment variable ${smtp.password_env} (alerts.smtp.password_env) is not set`, { variable: smtp.password_env });
    return pass;
  }
  return undefined;
}

export function smtpTarget(smtp: AlertsConfig["smtp"]): string {
  return `${smtp.host}:${smtp.port} (${smtp.security})`;
}

/** Builds the transport; throws LLMSUP_E_SECRET_UNREADABLE when the password cannot be read. */
export async function createMailer(alerts: AlertsConfig, options: MailerOptions): Promise<Mailer> {
  const smtp = alerts.smtp;
  const pass = await readSmtpPassword(smtp, options.env);
  const secrets = pass ? [pass, `\u0000${smtp.user ?? ""}\u0000${pass}`] : [];
  const common = {
    host: smtp.host,
    port: smtp.port,
    secure: smtp.security === "tls",
    requireTLS: smtp.security === "starttls",
    ignoreTLS: smtp.security === "none",
    auth: smtp.user && pass !== undefined ? { user: smtp.user, pass } : undefined,
    name: options.clientName,
    connectionTimeout: smtp.timeout,
    greetingTimeout: smtp.timeout,
    socketTimeout: smtp.timeout,
    dnsTimeout: smtp.timeout,
    socketCloseTimeout: 1_000,
    tls: { rejectUnauthorized: smtp.tls_reject_unauthorized },
    logger: false,
    debug: false,
  };
  const { default: nodemailer } = await import("nodemailer");
  // maxRequeues 0: llmsup's outbox does the retrying, with backoff, and wants to hear of each failure.
  const transport =
    options.pool === false
      ? nodemailer.createTransport(common)
      : nodemailer.createTransport({ ...common, pool: true, maxConnections: 1, maxRequeues: 0, idleTimeout: 60_000 });
  const from = alerts.from;
  return {
    target: smtpTarget(smtp),
    async send(mail, signal) {
      try {
        const info = await transport.sendMail({
          from,
          to: [...mail.to],
          subject: mail.subject,
          text: mail.text,
          messageId: mail.messageId ? `<${mail.messageId}>` : undefined,
          headers: { "Auto-Submitted": "auto-generated", ...mail.headers },
          signal,
        });
        return {
          ok: true,
          info: {
            messageId: info.messageId,
            response: scrub(info.response ?? "", secrets),
            accepted: (info.accepted ?? []).map(String),
            rejected: (info.rejected ?? []).map(String),
          },
        };
      } catch (e) {
        return { ok: false, failure: smtpFailure(e, secrets) };
      }
    },
    close(force = false) {
      const t = transport.transporter as { close?: (o?: { force?: boolean }) => void };
      if (t.close) t.close({ force });
      else transport.close();
    },
  };
}

/** The mail channel's transport for a Courier: the outbox's drop note first, a stable Message-ID, the kind and severity as headers. */
export function mailTransport(mailer: Mailer, o: { readonly host: string; readonly outboxMax: number; readonly timeZone?: string }): Transport {
  return {
    channel: "smtp",
    target: mailer.target,
    async send(msg, { dropped, signal }) {
      const text = dropped ? `${droppedNote(dropped.count, dropped.first, dropped.last, o.outboxMax, o.timeZone)}\n\n${msg.text}` : msg.text;
      const r = await mailer.send(
        { to: msg.to, subject: msg.subject, text, messageId: `${msg.id}.llmsup@${o.host}`, headers: { "X-Llmsup-Alert": msg.kind, "X-Llmsup-Severity": msg.severity } },
        signal,
      );
      return r.ok ? { ok: true, detail: { message_id: r.info.messageId, response: r.info.response, rejected: r.info.rejected } } : r;
    },
    close: (force) => mailer.close(force),
  };
}
