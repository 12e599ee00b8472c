/** What went wrong talking SMTP, from nodemailer's error, with llmsup's stable code. Pure. */
import type { ErrorCode } from "../errors/registry.ts";
import { describeFailure, type DeliveryFailure } from "./failure.ts";

/** A failure talking SMTP: the shape every channel's failures share (failure.ts). */
export type SmtpFailure = DeliveryFailure;

const AUTH_CODES = new Set(["EAUTH", "ENOAUTH", "EOAUTH2"]);
const TLS_CODES = new Set(["ETLS", "EREQUIRETLS"]);
const TLS_CAUSE = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL|EPROTO|HOSTNAME|ALTNAME/i;
const MESSAGE_CODES = new Set(["EENVELOPE", "EMESSAGE", "EMAXRECIPIENTS"]);

/** Removes every occurrence of a secret (and its base64 forms, as AUTH PLAIN/LOGIN send it) from a text. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) {
    if (s.length < 3) continue;
    for (const form of [s, Buffer.from(s).toString("base64")]) out = out.split(form).join("[redacted]");
  }
  return out;
}

export function smtpFailure(err: unknown, secrets: readonly string[] = []): SmtpFailure {
  const e = (err && typeof err === "object" ? err : { message: String(err) }) as {
    code?: unknown;
    responseCode?: unknown;
    response?: unknown;
    command?: unknown;
    originalCode?: unknown;
    message?: unknown;
    permanent?: unknown;
    reason?: unknown;
  };
  const code = typeof e.code === "string" && e.code !== "" ? e.code : "EUNKNOWN";
  const responseCode = typeof e.responseCode === "number" ? e.responseCode : undefined;
  const cause = typeof e.originalCode === "string" ? e.originalCode : undefined;
  const clean = (v: unknown) => (typeof v === "string" && v !== "" ? scrub(v.trim(), secrets) : undefined);
  const message = clean(e.message) ?? code;
  let llmsupCode: ErrorCode;
  if (AUTH_CODES.has(code)) llmsupCode = "LLMSUP_E_SMTP_AUTH";
  else if (TLS_CODES.has(code) || (cause !== undefined && TLS_CAUSE.test(cause)) || TLS_CAUSE.test(message.split("\n")[0] ?? "")) llmsupCode = "LLMSUP_E_SMTP_TLS";
  else if (MESSAGE_CODES.has(code) || (responseCode !== undefined && responseCode >= 500 && code !== "ECONNECTION" && code !== "ESOCKET")) llmsupCode = "LLMSUP_E_SMTP_REJECTED";
  else llmsupCode = "LLMSUP_E_SMTP_UNREACHABLE";
  return {
    code,
    responseCode,
    response: clean(e.response),
    command: clean(e.command),
    cause,
    message,
    llmsupCode,
    messageRejected: llmsupCode === "LLMSUP_E_SMTP_REJECTED" && e.permanent !== false && (responseCode === undefined || responseCode >= 500),
  };
}

/** One line for logs and the CLI: "EAUTH 535 Authentication failed (AUTH PLAIN)". */
export const describeSmtpFailure: (f: SmtpFailure) => string = describeFailure;
