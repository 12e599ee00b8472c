/**
 * The webhook channel: every alert message (the ones mail gets, after the
 * policy and the rate cap) POSTed as one JSON document, signed.
 *
 * Body (version 1): { version, id, kind, state: firing|resolved|notice,
 * severity, subject (the policy subject key, "" for none), box, labels (as
 * Alertmanager's), summary, what, why, action, text (the mail body), at (ISO
 * time the message was written), dropped? ({count, first, last} when the
 * outbox bound dropped older messages) }.
 *
 * Headers:
 *   X-Llmsup-Timestamp: <unix seconds when this attempt was sent>
 *   X-Llmsup-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
 *   X-Llmsup-Delivery:  <message id; the same on every retry of a message>
 * A receiver recomputes the HMAC over the timestamp header, a dot and the raw
 * body bytes with the shared secret, compares in constant time, and refuses a
 * timestamp more than 5 minutes from its own clock (replay); the delivery id
 * lets it drop a retry it already took.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { AlertsConfig } from "../config/types.ts";
import type { Clock } from "../platform/clock.ts";
import type { Transport } from "./delivery.ts";
import type { AlertSeverity } from "./events.ts";
import { postJson } from "./http-post.ts";
import type { MessageFacts } from "./labels.ts";
import type { DropRecord, OutboxMessage } from "./outbox.ts";
import { readSecretFile } from "./secret.ts";

export type WebhookConfig = AlertsConfig["webhook"][number];

export const WEBHOOK_VERSION = 1;
export const TIMESTAMP_HEADER = "X-Llmsup-Timestamp";
export const SIGNATURE_HEADER = "X-Llmsup-Signature";
export const DELIVERY_HEADER = "X-Llmsup-Delivery";
/** How far a receiver should let a timestamp be from its own clock. */
export const REPLAY_WINDOW_S = 300;

/** What the outbox keeps for a webhook message (the body less what is set when it is sent). */
export interface WebhookPayload extends MessageFacts {
  readonly version: number;
  readonly kind: string;
  readonly subject: string;
  readonly box: string;
  readonly text: string;
  readonly at: string;
}

export interface WebhookBody extends WebhookPayload {
  readonly id: string;
  readonly dropped?: DropRecord;
}

export function webhookPayload(facts: MessageFacts, o: { kind: string; subjectKey: string; box: string; text: string; at: number }): WebhookPayload {
  return { version: WEBHOOK_VERSION, kind: o.kind, ...facts, subject: o.subjectKey, box: o.box, text: o.text, at: new Date(o.at).toISOString() };
}

export function webhookBody(msg: OutboxMessage, dropped: DropRecord | undefined): WebhookBody {
  return { ...(msg.payload as WebhookPayload), id: msg.id, ...(dropped ? { dropped } : {}) };
}

/** The signature header's value for a body sent at `timestamp` (unix seconds). */
export function sign(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

/** What a receiver does: true when the signature is right and the timestamp within the replay window of `nowS`. */
export function verifySignature(secret: string, headers: { timestamp: string | undefined; signature: string | undefined }, body: string, nowS: number): boolean {
  const ts = Number(headers.timestamp);
  if (!headers.timestamp || !Number.isInteger(ts) || Math.abs(nowS - ts) > REPLAY_WINDOW_S || !headers.signature) return false;
  const want = Buffer.from(sign(secret, ts, body));
  const got = Buffer.from(headers.signature);
  return want.length === got.length && timingSafeEqual(want, got);
}

/** A message for a webhook that is about no planned mail (the digest, test-alert). */
export function noticePayload(o: { kind: string; alertname: string; severity: AlertSeverity; box: string; summary: string; what: string; text: string; at: number }): WebhookPayload {
  return webhookPayload(
    { state: "notice", severity: o.severity, labels: { alertname: o.alertname, box: o.box, severity: o.severity }, summary: o.summary, what: o.what, why: null, action: null },
    { kind: o.kind, subjectKey: "", box: o.box, text: o.text, at: o.at },
  );
}

/** The channel's transport; reads secret_file (LLMSUP_E_SECRET_UNREADABLE). `clock` gives the timestamp of each attempt. */
export async function webhookTransport(w: WebhookConfig, channel: string, clock: Clock): Promise<Transport> {
  const secret = await readSecretFile(w.secret_file, `the webhook secret from alerts.webhook (${channel}) secret_file`);
  const controller = new AbortController();
  return {
    channel,
    target: w.url,
    async send(msg, { dropped, signal }) {
      const body = JSON.stringify(webhookBody(msg, dropped));
      const timestamp = Math.floor(clock.now() / 1000);
      const r = await postJson(w.url, body, {
        headers: { [TIMESTAMP_HEADER]: String(timestamp), [SIGNATURE_HEADER]: sign(secret, timestamp, body), [DELIVERY_HEADER]: msg.id },
        timeoutMs: w.timeout,
        signal: AbortSignal.any([signal, controller.signal]),
        secrets: [secret],
      });
      return r.ok ? { ok: true, detail: { status: r.status } } : r;
    },
    close(force) {
      if (force) controller.abort();
    },
  };
}
