/**
 * The Alertmanager channel: alerts posted to Alertmanager's v2 API
 * (POST /api/v2/alerts, a JSON array of {labels, annotations, startsAt,
 * endsAt}) the way Prometheus posts them.
 *
 * Alertmanager wants state, not news: each subject the alert policy holds in a
 * bad state (policy.ts) is one firing alert, its labels from the latest raise
 * (labels.ts), startsAt when the subject entered that state. It is posted when
 * it begins or changes, and again every `resend_interval` while it lasts, each
 * time with endsAt = now + 4 × resend_interval: an llmsup that dies stops
 * re-posting and its alerts resolve by themselves, as Prometheus's do. When the
 * subject is fine again (or moves to a state with other labels: failover →
 * all tiers down) the old alert is posted once more with endsAt = the time it
 * ended. The mail rate cap does not apply: Alertmanager groups and throttles.
 *
 * Notices (daemon started or stopping, a reload refused) have no end of their
 * own: each is posted once as an alert that ends by itself resend_interval
 * after it happened (startsAt = the notice, endsAt = startsAt + resend_interval),
 * so a receiver hears of it once and it never lingers. A notice delivered later
 * than that (Alertmanager was down) arrives already resolved.
 *
 * Messages go through the channel's own outbox like mail: what is queued
 * while Alertmanager is down is posted, in order, when it is back. A firing
 * alert in the outbox carries no endsAt: it is set when the post is made.
 */
import type { AlertsConfig } from "../config/types.ts";
import type { Clock } from "../platform/clock.ts";
import type { Transport } from "./delivery.ts";
import { classifyAlert, type AlertEvent } from "./events.ts";
import { postJson } from "./http-post.ts";
import { alertLabels, eventFacts, labelsKey, TEST_ALERT_NAME, type AlertLabels } from "./labels.ts";
import type { PolicyState, SubjectState } from "./policy.ts";
import { readSecretFile } from "./secret.ts";

export type AlertmanagerConfig = NonNullable<AlertsConfig["alertmanager"]>;

/** How many resend intervals a posted firing alert lasts without being posted again (Prometheus: 4). */
export const RESEND_LIFETIMES = 4;

/** An alert as it waits in the outbox: endsAt null while it fires (set at posting). */
export interface QueuedAlert {
  readonly labels: AlertLabels;
  readonly annotations: Readonly<Record<string, string>>;
  readonly startsAt: string;
  readonly endsAt: string | null;
}

/** Alertmanager's postableAlert. */
export interface PostableAlert {
  readonly labels: AlertLabels;
  readonly annotations: Readonly<Record<string, string>>;
  readonly startsAt: string;
  readonly endsAt: string;
}

const iso = (ms: number) => new Date(ms).toISOString();

function annotations(e: AlertEvent): Record<string, string> {
  const f = eventFacts(e);
  return { summary: f.summary, what: f.what, ...(f.why ? { why: f.why } : {}), action: f.action };
}

/** The firing alert of a subject in a bad state; undefined when it is fine. */
export function firingAlert(s: SubjectState | undefined, box: string): QueuedAlert | undefined {
  if (!s?.bad || !s.latest) return undefined;
  return { labels: alertLabels(s.latest, box), annotations: annotations(s.latest), startsAt: iso(s.stateSince ?? s.outage?.since ?? s.latest.at), endsAt: null };
}

/** A firing alert posted once more as ended at `at` (never before it began). */
function ended(a: QueuedAlert, at: number): QueuedAlert {
  return { ...a, endsAt: iso(Math.max(at, Date.parse(a.startsAt))) };
}

/**
 * What one step of the alert policy means for Alertmanager: subjects that went bad or
 * changed state fire (anew), alerts whose subject is fine again or whose labels changed
 * end at the clear (`now` when no clear event says when), a notice is a short-lived alert.
 */
export function alertChanges(before: PolicyState, after: PolicyState, event: AlertEvent | undefined, now: number, box: string, resendMs: number): QueuedAlert[] {
  const out: QueuedAlert[] = [];
  const keys = new Set([...Object.keys(before.subjects), ...Object.keys(after.subjects)]);
  for (const key of keys) {
    const b = before.subjects[key];
    const a = after.subjects[key];
    const was = firingAlert(b, box);
    const is = firingAlert(a, box);
    if (was && (!is || labelsKey(was.labels) !== labelsKey(is.labels))) {
      const clearedAt = !a?.bad && a?.latest && classifyAlert(a.latest).phase === "clear" ? a.latest.at : now;
      out.push(ended(was, clearedAt));
    }
    if (is && (!was || labelsKey(was.labels) !== labelsKey(is.labels) || b?.state !== a?.state)) out.push(is);
  }
  if (event && classifyAlert(event).phase === "notice") {
    out.push({ labels: alertLabels(event, box), annotations: annotations(event), startsAt: iso(event.at), endsAt: iso(event.at + resendMs) });
  }
  return out;
}

/** Every alert firing now, for the periodic re-post. */
export function activeAlerts(state: PolicyState, box: string): QueuedAlert[] {
  return Object.values(state.subjects)
    .map((s) => firingAlert(s, box))
    .filter((a): a is QueuedAlert => a !== undefined);
}

/** The alerts of an outbox message as posted at `now`: a firing one ends RESEND_LIFETIMES resend intervals from now. */
export function toPost(alerts: readonly QueuedAlert[], now: number, resendMs: number): PostableAlert[] {
  return alerts.map((a) => ({ labels: a.labels, annotations: a.annotations, startsAt: a.startsAt, endsAt: a.endsAt ?? iso(Math.max(now, Date.parse(a.startsAt)) + RESEND_LIFETIMES * resendMs) }));
}

/** The alert `llmsup test-alert` posts: fires now, ends by itself after resend_interval. */
export function testAlert(box: string, at: number, resendMs: number): QueuedAlert {
  return {
    labels: { alertname: TEST_ALERT_NAME, box, severity: "info" },
    annotations: { summary: `test alert from llmsup on ${box}`, what: "A test alert sent by `llmsup test-alert`: if a receiver got it, alerts from llmsup reach it.", action: "Nothing to do." },
    startsAt: iso(at),
    endsAt: iso(at + resendMs),
  };
}

/** `${url}/api/v2/alerts`, keeping a path prefix the URL has (an Alertmanager behind --web.route-prefix). */
export function alertsEndpoint(url: string): string {
  const u = new URL(url);
  u.pathname = `${u.pathname.replace(/\/+$/, "")}/api/v2/alerts`;
  return u.toString();
}

/** The Authorization header from bearer_token_file or username + password_file; reads the files (LLMSUP_E_SECRET_UNREADABLE). */
export async function alertmanagerAuth(c: AlertmanagerConfig): Promise<{ headers: Record<string, string>; secrets: string[] }> {
  if (c.bearer_token_file) {
    const token = await readSecretFile(c.bearer_token_file, "the Alertmanager bearer token from alerts.alertmanager.bearer_token_file");
    return { headers: { authorization: `Bearer ${token}` }, secrets: [token] };
  }
  if (c.username && c.password_file) {
    const pass = await readSecretFile(c.password_file, "the Alertmanager password from alerts.alertmanager.password_file");
    const basic = Buffer.from(`${c.username}:${pass}`).toString("base64");
    return { headers: { authorization: `Basic ${basic}` }, secrets: [pass, basic] };
  }
  return { headers: {}, secrets: [] };
}

/**
 * The channel's transport: posts a message's alerts to every configured Alertmanager
 * (the members of a cluster each get every alert, as from Prometheus); delivered when
 * one accepted them, refused for good only when every one refused for good.
 */
export async function alertmanagerTransport(c: AlertmanagerConfig, clock: Clock): Promise<Transport> {
  const auth = await alertmanagerAuth(c);
  const endpoints = c.url.map(alertsEndpoint);
  const controller = new AbortController();
  return {
    channel: "alertmanager",
    target: c.url.join(", "),
    async send(msg, { signal }) {
      const body = JSON.stringify(toPost((msg.payload as QueuedAlert[] | undefined) ?? [], clock.now(), c.resend_interval));
      const results = await Promise.all(endpoints.map((url) => postJson(url, body, { headers: auth.headers, timeoutMs: c.timeout, signal: AbortSignal.any([signal, controller.signal]), secrets: auth.secrets })));
      const accepted = endpoints.filter((_, i) => results[i]!.ok);
      if (accepted.length > 0) return { ok: true, detail: { accepted, alerts: (msg.payload as unknown[] | undefined)?.length ?? 0 } };
      const failures = results.map((r) => (r.ok ? undefined : r.failure)).filter((f) => f !== undefined);
      // Refused for good only when no member might take it later.
      return { ok: false, failure: failures.find((f) => !f.messageRejected) ?? failures[0]! };
    },
    close(force) {
      if (force) controller.abort();
    },
  };
}
