/**
 * The alerter: what the daemon calls. `notify(event)` returns at once; the
 * policy, rendering, the outbox write and delivery all happen afterwards, in
 * order, in the background. State (policy, outbox) lives under
 * <state_dir>/alerts/, so a new Alerter over the same directory carries on
 * where the last one stopped; `reconcile(live)` then settles that state with
 * what is true now (reconcile.ts).
 *
 * Channels: mail (SMTP, when [alerts] to is set), Alertmanager
 * ([alerts.alertmanager]) and each [[alerts.webhook]]. Each has its own outbox
 * and Courier, so a receiver that is down holds up only its own messages.
 * Mail and webhooks get the messages the policy plans (the rate cap
 * included); Alertmanager gets the state of each subject (alertmanager.ts).
 */
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { AlertsConfig } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import { within, type Clock, type TimerHandle } from "../platform/clock.ts";
import { webhookChannelName } from "../config/checks.ts";
import { activeAlerts, alertChanges, alertmanagerTransport, type QueuedAlert } from "./alertmanager.ts";
import { Courier, type DeliveryStatus, type RetryPolicy, type Transport } from "./delivery.ts";
import { classifyAlert, type AlertEvent, type AlertSeverity } from "./events.ts";
import { readJson, writeJsonAtomic } from "../platform/json-file.ts";
import { messageAlertName, plannedFacts } from "./labels.ts";
import { mailTransport, type MailerFactory } from "./mailer.ts";
import { Outbox } from "./outbox.ts";
import { noticePayload, webhookPayload, webhookTransport } from "./webhook.ts";
import { decide, initialPolicyState, nextWake, parsePolicyState, tick, type PlannedMail, type PolicyConfig, type PolicyState } from "./policy.ts";
import { reconcile, type LiveState } from "./reconcile.ts";
import { renderMail, type RenderedMail } from "./render.ts";
import { renderSnapshot, type SnapshotProvider } from "./snapshot.ts";

export interface AlerterOptions {
  readonly config: AlertsConfig;
  /** The host name mails name ([daemon] hostname, resolved). */
  readonly hostname: string;
  /** [daemon] state_dir; the alerter keeps its files in <state_dir>/alerts. */
  readonly stateDir: string;
  readonly logger: Logger;
  /** The policy's clock: coalescing windows, the hourly cap, retry times. */
  readonly clock: Clock;
  /**
   * Real time, for the deadlines of waits on the outside world (flush waiting
   * on the SMTP server, the status snapshot's provider), whatever clock the
   * policy runs on; the daemon's clock in the daemon, the real one in tests.
   */
  readonly ioClock: Clock;
  /** Where password_env is looked up. */
  readonly env: NodeJS.ProcessEnv;
  /** The status snapshot each mail carries. */
  readonly snapshot?: SnapshotProvider;
  readonly snapshotTimeoutMs?: number;
  /** IANA zone for times in mails; the process's own by default. */
  readonly timeZone?: string;
  readonly retry?: RetryPolicy;
  /** Builds the transport from [alerts.smtp] (createMailer, from the composition root). */
  readonly mailer: MailerFactory;
}

export type ChannelKind = "mail" | "alertmanager" | "webhook";

/** One channel's delivery, for status and metrics. */
export interface ChannelStatus extends DeliveryStatus {
  /** smtp, alertmanager, or the webhook's name. */
  readonly channel: string;
  readonly kind: ChannelKind;
  /** Where it delivers (no secret in it). */
  readonly target: string;
}

/** The channels together (counts summed, the latest error, the soonest retry), and each one. */
export interface AlerterStatus extends DeliveryStatus {
  readonly enabled: boolean;
  /** Events received and not yet through the policy. */
  readonly queued: number;
  /** Mails the hourly cap is holding back. */
  readonly held: number;
  readonly channels: readonly ChannelStatus[];
}

interface Channel {
  readonly kind: ChannelKind;
  readonly courier: Courier;
  readonly target: string;
}

type Work =
  | { readonly event: AlertEvent }
  | { readonly tick: true }
  | { readonly live: LiveState }
  | { readonly resend: true }
  | { readonly mail: RenderedMail; readonly kind: string; readonly severity: AlertSeverity };

const DISABLED_STATUS: AlerterStatus = { enabled: false, queued: 0, held: 0, pending: 0, delivered: 0, rejected: 0, failures: 0, failedAttempts: 0, channels: [] };

/** The channels summed up: what the status line and the verdict read. */
export function overall(channels: readonly DeliveryStatus[]): DeliveryStatus {
  const sum = (f: (s: DeliveryStatus) => number) => channels.reduce((n, s) => n + f(s), 0);
  const latest = <T>(pick: (s: DeliveryStatus) => T | undefined, at: (v: T) => number): T | undefined =>
    channels.map(pick).filter((v): v is T => v !== undefined).sort((a, b) => at(b) - at(a))[0];
  const drops = channels.map((s) => s.dropped).filter((d) => d !== undefined);
  const next = channels.map((s) => s.nextAttemptAt).filter((t) => t !== undefined);
  return {
    pending: sum((s) => s.pending),
    delivered: sum((s) => s.delivered),
    rejected: sum((s) => s.rejected),
    dropped: drops.length ? { count: drops.reduce((n, d) => n + d.count, 0), first: Math.min(...drops.map((d) => d.first)), last: Math.max(...drops.map((d) => d.last)) } : undefined,
    failures: Math.max(0, ...channels.map((s) => s.failures)),
    failedAttempts: sum((s) => s.failedAttempts),
    lastError: latest((s) => s.lastError, (e) => e.at),
    lastDeliveredAt: latest((s) => s.lastDeliveredAt, (t) => t),
    nextAttemptAt: next.length ? Math.min(...next) : undefined,
  };
}

export class Alerter {
  private readonly o: AlerterOptions;
  private readonly clock: Clock;
  private readonly cfg: PolicyConfig;
  private readonly channels: readonly Channel[];
  private readonly mail: Courier | undefined;
  private readonly alertmanager: Courier | undefined;
  private readonly webhooks: readonly Courier[];
  private readonly policyFile: string;
  private policy: PolicyState;
  private readonly work: Work[] = [];
  private draining = false;
  /** The drain in progress, for close() to wait on. */
  private drained: Promise<void> = Promise.resolve();
  private closed = false;
  private wake: { at: number; timer: TimerHandle } | undefined;
  private resendTimer: TimerHandle | undefined;
  private waiters = new Set<() => void>();

  private constructor(o: AlerterOptions, channels: readonly Channel[], policy: PolicyState) {
    this.o = o;
    this.clock = o.clock;
    this.cfg = { coalesceWindowMs: o.config.coalesce_window, maxPerHour: o.config.max_per_hour };
    this.channels = channels;
    this.mail = channels.find((c) => c.kind === "mail")?.courier;
    this.alertmanager = channels.find((c) => c.kind === "alertmanager")?.courier;
    this.webhooks = channels.filter((c) => c.kind === "webhook").map((c) => c.courier);
    this.policy = policy;
    this.policyFile = path.join(o.stateDir, "alerts", "policy.json");
  }

  /**
   * Opens the alerter: reads every channel's secret (LLMSUP_E_SECRET_UNREADABLE when one
   * cannot be read), picks up each channel's outbox and the policy state, and starts
   * delivering what an earlier run left. With alerts disabled it reads nothing and every
   * notify is dropped.
   */
  static async open(o: AlerterOptions): Promise<Alerter> {
    if (!o.config.enabled) return new Alerter(o, [], initialPolicyState());
    const dir = path.join(o.stateDir, "alerts");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const c = o.config;
    const transports: { kind: ChannelKind; transport: Transport; outbox: string }[] = [];
    try {
      if (c.to.length > 0 || c.critical_to.length > 0) {
        const mailer = await o.mailer(c, { env: o.env, clientName: o.hostname });
        transports.push({ kind: "mail", transport: mailTransport(mailer, { host: o.hostname, outboxMax: c.outbox_max, timeZone: o.timeZone }), outbox: "outbox" });
      }
      if (c.alertmanager) transports.push({ kind: "alertmanager", transport: await alertmanagerTransport(c.alertmanager, o.clock), outbox: "outbox-alertmanager" });
      for (const [i, w] of c.webhook.entries()) {
        const name = webhookChannelName(w, i);
        transports.push({ kind: "webhook", transport: await webhookTransport(w, name, o.ioClock), outbox: `outbox-${name}` });
      }
    } catch (e) {
      for (const t of transports) t.transport.close(true);
      throw e;
    }
    const saved = await readJson(path.join(dir, "policy.json")).catch(() => undefined);
    const policy = parsePolicyState(saved);
    if (saved !== undefined && !policy) o.logger.warn({ event: "alert.policy.reset", file: path.join(dir, "policy.json") }, "alert policy state unreadable; starting afresh");
    let self: Alerter | undefined;
    const channels: Channel[] = [];
    for (const t of transports) {
      const outbox = await Outbox.open(dir, c.outbox_max, t.outbox);
      const courier = new Courier({ outbox, transport: t.transport, clock: o.clock, logger: o.logger, outboxMax: c.outbox_max, retry: o.retry, onProgress: () => self?.progressed() });
      channels.push({ kind: t.kind, courier, target: t.transport.target });
      if (outbox.size > 0) {
        o.logger.info({ event: "alert.outbox.resumed", channel: t.transport.channel, pending: outbox.size, dir: outbox.dir }, `${outbox.size} alert message(s) for ${t.transport.channel} left in the outbox; delivering`);
        courier.kick();
      }
    }
    self = new Alerter(o, channels, policy ?? initialPolicyState());
    self.schedule();
    self.scheduleResend();
    return self;
  }

  private get enabled(): boolean {
    return this.channels.length > 0;
  }

  /** Hands an event over. Never throws, never waits. */
  notify(event: AlertEvent): void {
    if (!this.enabled || this.closed) return;
    this.work.push({ event });
    this.drainSoon();
  }

  /**
   * Settles the policy state (carried over from an earlier run, or from before a
   * reload) with what is true now: stale outages are forgotten, removed routes
   * and backends dropped, a mailed outage found over gets its all-clear (see
   * reconcile.ts). Taken in order with the events: call it before the
   * components that report on the live state can report. Never throws, never waits.
   */
  reconcile(live: LiveState): void {
    if (!this.enabled || this.closed) return;
    this.work.push({ live });
    this.drainSoon();
  }

  /** Queues an already written mail (the daily digest), past the policy. Never throws, never waits. */
  send(mail: RenderedMail, kind: string, severity: AlertSeverity = "info"): void {
    if (!this.enabled || this.closed) return;
    this.work.push({ mail, kind, severity });
    this.drainSoon();
  }

  /** Tries the outbox again now instead of at the end of the backoff (the housekeeping job). */
  retryNow(): void {
    for (const c of this.channels) c.courier.retryNow();
  }

  status(): AlerterStatus {
    if (!this.enabled) return DISABLED_STATUS;
    const channels = this.channels.map((c): ChannelStatus => ({ channel: c.courier.channel, kind: c.kind, target: c.target, ...c.courier.status() }));
    return { enabled: true, queued: this.work.length, held: this.policy.held?.mails ?? 0, ...overall(channels), channels };
  }

  /**
   * At shutdown: puts queued events through the policy into the outbox and makes one
   * delivery pass (ending any backoff wait), within `timeoutMs`. Resolves with the
   * status once the outbox is empty, an attempt failed, or time is up; what is left
   * stays on disk for the next start.
   */
  async flush(timeoutMs: number): Promise<AlerterStatus> {
    if (!this.enabled) return this.status();
    const deadline = performance.now() + timeoutMs;
    const couriers = this.channels.map((c) => c.courier);
    for (const c of couriers) c.retryNow();
    const failedBefore = couriers.map((c) => c.status().failedAttempts);
    while (performance.now() < deadline) {
      const settled = this.work.length === 0 && !this.draining;
      // Each channel is done when empty, or when an attempt failed since the flush began.
      const done = couriers.map((c, i) => {
        const s = c.status();
        return s.pending === 0 || (!c.busy && s.failedAttempts > failedBefore[i]!);
      });
      if (settled && done.every(Boolean)) break;
      if (settled) for (const [i, c] of couriers.entries()) if (!done[i] && !c.busy && c.status().nextAttemptAt === undefined) c.kick();
      let wake: () => void = () => undefined;
      const progressed = new Promise<void>((resolve) => {
        wake = resolve;
        this.waiters.add(wake);
      });
      // Real time, whatever clock the policy runs on: what this waits for is the SMTP server.
      await within(this.o.ioClock, progressed, Math.max(1, deadline - performance.now()));
      this.waiters.delete(wake);
    }
    return this.status();
  }

  /** Stops: no more policy or delivery; what is not delivered stays in the outbox for the next start. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wake?.timer.cancel();
    this.resendTimer?.cancel();
    for (const c of this.channels) c.courier.close();
    await this.drained;
    await this.savePolicy();
    this.progressed();
  }

  private progressed(): void {
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }

  private drainSoon(): void {
    if (this.draining) return;
    this.draining = true;
    this.drained = new Promise((resolve) => setImmediate(() => void this.drain().then(resolve)));
  }

  private async drain(): Promise<void> {
    const before = this.policy;
    try {
      while (this.work.length > 0 && !this.closed) {
        const w = this.work.shift()!;
        if ("mail" in w) {
          await this.enqueueMessage(w.mail, w.kind, w.severity);
          continue;
        }
        if ("resend" in w) {
          await this.resend();
          continue;
        }
        const now = this.clock.now();
        const heldBefore = this.policy.held?.mails ?? 0;
        const prev = this.policy;
        const d = "event" in w ? decide(this.policy, w.event, now, this.cfg) : "live" in w ? this.reconciled(w.live, now) : tick(this.policy, now, this.cfg);
        this.policy = d.state;
        if (this.alertmanager) {
          const changes = alertChanges(prev, d.state, "event" in w ? w.event : undefined, now, this.o.hostname, this.o.config.alertmanager!.resend_interval);
          if (changes.length > 0) await this.enqueueAlerts(changes, "event" in w ? w.event.kind : "live" in w ? "reconcile" : "tick");
        }
        if ("event" in w && d.mails.length === 0) {
          const c = classifyAlert(w.event);
          const held = (this.policy.held?.mails ?? 0) > heldBefore;
          if (held) this.o.logger.warn({ event: "alert.rate_capped", kind: w.event.kind, subject_key: c.subject, max_per_hour: this.cfg.maxPerHour }, `alert held back by the rate cap (${this.cfg.maxPerHour} an hour): ${w.event.kind} ${c.subject}`);
          else this.o.logger.debug({ event: "alert.folded", kind: w.event.kind, subject_key: c.subject }, `alert folded into the next mail: ${w.event.kind} ${c.subject}`);
        }
        if (d.mails.length > 0) {
          const snapshot = await this.snapshot();
          for (const m of d.mails) {
            const rendered = renderMail(m, { host: this.o.hostname, timeZone: this.o.timeZone, snapshot, maxPerHour: this.cfg.maxPerHour });
            await this.enqueue(rendered, mailKind(m), m.severity, m.subject);
            if (this.webhooks.length > 0) {
              const raised = prev.subjects[m.subject]?.bad ? prev.subjects[m.subject]!.latest : undefined;
              const facts = plannedFacts(m, raised, summaryOf(rendered), this.o.hostname);
              await this.enqueueWebhooks(rendered, mailKind(m), m.severity, m.subject, webhookPayload(facts, { kind: mailKind(m), subjectKey: m.subject, box: this.o.hostname, text: rendered.text, at: this.clock.now() }));
            }
          }
        }
      }
      if (this.policy !== before) await this.savePolicy();
    } catch (e) {
      this.o.logger.error({ event: "alert.error", err: (e as Error).message }, `alert processing failed: ${(e as Error).message}`);
    } finally {
      this.draining = false;
      if (this.work.length > 0 && !this.closed) this.drainSoon();
      else this.schedule();
      this.progressed();
    }
  }

  private reconciled(live: LiveState, now: number): ReturnType<typeof reconcile> {
    const r = reconcile(this.policy, live, now, this.cfg);
    const n = (a: string) => r.changes.filter((c) => c.action === a).length;
    if (r.changes.length > 0) {
      this.o.logger.info(
        { event: "alert.reconciled", changes: r.changes },
        `alert state reconciled with the live state: ${n("forgotten")} stale forgotten, ${n("cleared")} all-clear, ${n("settled")} settled, ${n("dropped")} dropped`,
      );
    }
    return r;
  }

  /** Mail only. */
  private async enqueue(mail: RenderedMail, kind: string, severity: AlertSeverity, subjectKey: string): Promise<void> {
    if (!this.mail) return;
    const c = this.o.config;
    const to = [...new Set([...c.to, ...(severity === "critical" ? c.critical_to : [])])];
    if (to.length === 0) return;
    const id = await this.mail.enqueue({ createdAt: this.clock.now(), severity, kind, subjectKey, to, subject: mail.subject, text: mail.text });
    this.o.logger.info({ event: "alert.queued", channel: "smtp", id, kind, severity, subject_key: subjectKey, recipients: to.length }, `alert mail queued: ${mail.subject}`);
  }

  private async enqueueWebhooks(mail: RenderedMail, kind: string, severity: AlertSeverity, subjectKey: string, payload: unknown): Promise<void> {
    for (const courier of this.webhooks) {
      const id = await courier.enqueue({ createdAt: this.clock.now(), severity, kind, subjectKey, to: [], subject: mail.subject, text: mail.text, payload });
      this.o.logger.info({ event: "alert.queued", channel: courier.channel, id, kind, severity, subject_key: subjectKey }, `alert queued for ${courier.channel}: ${mail.subject}`);
    }
  }

  /** A written mail past the policy (the digest): mail, and a notice to each webhook. */
  private async enqueueMessage(mail: RenderedMail, kind: string, severity: AlertSeverity): Promise<void> {
    await this.enqueue(mail, kind, severity, "");
    if (this.webhooks.length === 0) return;
    const summary = summaryOf(mail);
    const payload = noticePayload({ kind, alertname: messageAlertName(kind), severity, box: this.o.hostname, summary, what: summary, text: mail.text, at: this.clock.now() });
    await this.enqueueWebhooks(mail, kind, severity, "", payload);
  }

  private async enqueueAlerts(alerts: readonly QueuedAlert[], why: string): Promise<void> {
    const firing = alerts.filter((a) => a.endsAt === null).length;
    const names = [...new Set(alerts.map((a) => a.labels.alertname))].join(", ");
    const id = await this.alertmanager!.enqueue({ createdAt: this.clock.now(), severity: "info", kind: why, subjectKey: "", to: [], subject: `${alerts.length} alert(s): ${names}`, text: "", payload: alerts });
    this.o.logger.info({ event: "alert.queued", channel: "alertmanager", id, kind: why, alerts: alerts.length, firing }, `alerts queued for alertmanager: ${firing} firing, ${alerts.length - firing} ended (${names})`);
  }

  /** The periodic re-post of the firing alerts; skipped while the outbox still holds posts (their alerts are posted with a fresh endsAt when it drains). */
  private async resend(): Promise<void> {
    if (!this.alertmanager || this.alertmanager.status().pending > 0) return;
    const active = activeAlerts(this.policy, this.o.hostname);
    if (active.length > 0) await this.enqueueAlerts(active, "resend");
  }

  private scheduleResend(): void {
    const am = this.o.config.alertmanager;
    if (!this.alertmanager || !am || this.closed) return;
    this.resendTimer = this.clock.setTimeout(() => {
      this.work.push({ resend: true });
      this.drainSoon();
      this.scheduleResend();
    }, am.resend_interval);
  }

  /** The status snapshot, or nothing when the provider fails or is slow. */
  private async snapshot(): Promise<string[] | undefined> {
    const provider = this.o.snapshot;
    if (!provider) return undefined;
    try {
      const taken = Promise.resolve().then(provider);
      // Real time, like flush: what this waits for is the provider, not the policy.
      if (!(await within(this.o.ioClock, taken, this.o.snapshotTimeoutMs ?? 2_000))) return undefined;
      const s = await taken;
      return s === undefined ? undefined : renderSnapshot(s);
    } catch (e) {
      this.o.logger.warn({ event: "alert.snapshot.failed", err: (e as Error).message }, `status snapshot for an alert mail failed: ${(e as Error).message}`);
      return undefined;
    }
  }

  /** Arms the timer for the policy's next tick (end of a coalescing window, the rate cap freeing up). */
  private schedule(): void {
    if (this.closed || !this.enabled) return;
    const at = nextWake(this.policy, this.cfg);
    if (this.wake && this.wake.at === at) return;
    this.wake?.timer.cancel();
    this.wake = undefined;
    if (at === undefined) return;
    const timer = this.clock.setTimeout(() => {
      this.wake = undefined;
      this.work.push({ tick: true });
      this.drainSoon();
    }, at - this.clock.now());
    this.wake = { at, timer };
  }

  private async savePolicy(): Promise<void> {
    if (!this.enabled) return;
    try {
      await writeJsonAtomic(this.policyFile, this.policy);
    } catch (e) {
      this.o.logger.warn({ event: "alert.policy.unwritable", file: this.policyFile, err: (e as Error).message }, `cannot save alert policy state: ${(e as Error).message}`);
    }
  }
}

/** A mail's subject without its "[llmsup] <host>: " prefix: the summary the HTTP channels carry. */
function summaryOf(mail: RenderedMail): string {
  return mail.subject.replace(/^\[llmsup\] [^:]*: /, "");
}

function mailKind(m: PlannedMail): string {
  return m.type === "event" && m.event ? m.event.kind : m.type;
}
