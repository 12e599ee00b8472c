/** What went wrong delivering an alert on any channel (SMTP, Alertmanager, a webhook), with llmsup's stable code. Pure. */
import type { ErrorCode } from "../errors/registry.ts";

export interface DeliveryFailure {
  /** The transport's own code: nodemailer's (EAUTH, ESOCKET, …), the OS's (ECONNREFUSED), or HTTP_<status>. */
  readonly code: string;
  /** The reply code, when the receiver answered (535, 550, 503, 400, …). */
  readonly responseCode?: number;
  /** The receiver's reply, as it said it (cut short, scrubbed of secrets). */
  readonly response?: string;
  /** The SMTP command in flight (AUTH PLAIN, RCPT TO, DATA, CONN), or the HTTP request line. */
  readonly command?: string;
  /** The OS-level cause (ECONNREFUSED, DEPTH_ZERO_SELF_SIGNED_CERT, …). */
  readonly cause?: string;
  readonly message: string;
  /** llmsup's stable error code for it. */
  readonly llmsupCode: ErrorCode;
  /** The receiver refused this message for good: sending the same one again cannot help. */
  readonly messageRejected: boolean;
}

/** One line for logs and the CLI: "EAUTH 535 Authentication failed (AUTH PLAIN)", "HTTP_503 503 service unavailable [POST http://…]". */
export function describeFailure(f: DeliveryFailure): string {
  const said = f.response ?? f.message;
  return [f.code, f.responseCode !== undefined && !said.startsWith(String(f.responseCode)) ? String(f.responseCode) : undefined, said, f.cause && !said.includes(f.cause) ? `(${f.cause})` : undefined, f.command && f.command !== "API" && f.command !== "CONN" ? `[${f.command}]` : undefined]
    .filter((s): s is string => s !== undefined)
    .join(" ");
}
