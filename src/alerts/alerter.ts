/**
 * The alerter: what the daemon calls. `notify(event)` returns at once; the
 * policy, rendering, the outbox write and delivery all happen afterwards, in
 * order, in the background. State (policy, outbox) lives under
 * <state_dir>/alerts/, so a new Alerter over the same directory carries on
 * where the last one stopped; `reconcile(live)` then settles that state with
 * what is true now (reconcile.ts).
 */
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { AlertsConfig } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import { within, type Clock, type TimerHandle } from "../platform/clock.ts";
import { Courier, type DeliveryStatus, type RetryPolicy } from "./delivery.ts";
import { classifyAlert, type AlertEvent, type AlertSeverity } from "./events.ts";
import { readJson, writeJsonAtomic } from "../platform/json-file.ts";
import type { MailerFactory } from "./mailer.ts";
import { Outbox } from "./outbox.ts";
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

export interface AlerterStatus extends DeliveryStatus {
  readonly enabled: boolean;
  /** Events received and not yet through the policy. */
  readonly queued: number;
  /** Mails the hourly cap is holding back. */
  readonly held: number;
}

type Work =
  | { readonly event: AlertEvent }
  | { readonly tick: true }
  | { readonly live: LiveState }
  | { readonly mail: RenderedMail; readonly kind: string; readonly severity: AlertSeverity };

const DISABLED_STATUS: AlerterStatus = { enabled: false, queued: 0, held: 0, pending: 0, delivered: 0, rejected: 0, failures: 0, failedAttempts: 0 };

export class Alerter {
  private readonly o: AlerterOptions;
  private readonly clock: Clock;
  private readonly cfg: PolicyConfig;
  private readonly courier: Courier | undefined;
  private readonly policyFile: string;
  private policy: PolicyState;
  private readonly work: Work[] = [];
  private draining = false;
  /** The drain in progress, for close() to wait on. */
  private drained: Promise<void> = Promise.resolve();
  private closed = false;
  private wake: { at: number; timer: TimerHandle } | undefined;
  private waiters = new Set<() => void>();

  private constructor(o: AlerterOptions, courier: Courier | undefined, policy: PolicyState) {
    this.o = o;
    this.clock = o.clock;
    this.cfg = { coalesceWindowMs: o.config.coalesce_window, maxPerHour: o.config.max_per_hour };
    this.courier = courier;
    this.policy = policy;
    this.policyFile = path.join(o.stateDir, "alerts", "policy.json");
  }

  /**
   * Opens the alerter: reads the SMTP password (LLMSUP_E_SECRET_UNREADABLE when it cannot),
   * picks up the outbox and policy state, and starts delivering what an earlier run left.
   * With alerts disabled it reads nothing and every notify is dropped.
   */
  static async open(o: AlerterOptions): Promise<Alerter> {
    if (!o.config.enabled) return new Alerter(o, undefined, initialPolicyState());
    const dir = path.join(o.stateDir, "alerts");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const clock = o.clock;
    const mailer = await o.mailer(o.config, { env: o.env, clientName: o.hostname });
    const outbox = await Outbox.open(dir, o.config.outbox_max);
    const saved = await readJson(path.join(dir, "policy.json")).catch(() => undefined);
    const policy = parsePolicyState(saved);
    if (saved !== undefined && !policy) o.logger.warn({ event: "alert.policy.reset", file: path.join(dir, "policy.json") }, "alert policy state unreadable; starting afresh");
    let self: Alerter | undefined;
    const courier = new Courier({
      outbox,
      mailer,
      clock,
      logger: o.logger,
      outboxMax: o.config.outbox_max,
      host: o.hostname,
      retry: o.retry,
      timeZone: o.timeZone,
      onProgress: () => self?.progressed(),
    });
    self = new Alerter(o, courier, policy ?? initialPolicyState());
    if (outbox.size > 0) {
      o.logger.info({ event: "alert.outbox.resumed", pending: outbox.size, dir: outbox.dir }, `${outbox.size} alert mail(s) left in the outbox; delivering`);
      courier.kick();
    }
    self.schedule();
    return self;
  }

  /** Hands an event over. Never throws, never waits. */
  notify(event: AlertEvent): void {
    if (!this.courier || this.closed) return;
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
    if (!this.courier || this.closed) return;
    this.work.push({ live });
    this.drainSoon();
  }

  /** Queues an already written mail (the daily digest), past the policy. Never throws, never waits. */
  send(mail: RenderedMail, kind: string, severity: AlertSeverity = "info"): void {
    if (!this.courier || this.closed) return;
    this.work.push({ mail, kind, severity });
    this.drainSoon();
  }

  /** Tries the outbox again now instead of at the end of the backoff (the housekeeping job). */
  retryNow(): void {
    this.courier?.retryNow();
  }

  status(): AlerterStatus {
    if (!this.courier) return DISABLED_STATUS;
    return { enabled: true, queued: this.work.length, held: this.policy.held?.mails ?? 0, ...this.courier.status() };
  }

  /**
   * At shutdown: puts queued events through the policy into the outbox and makes one
   * delivery pass (ending any backoff wait), within `timeoutMs`. Resolves with the
   * status once the outbox is empty, an attempt failed, or time is up; what is left
   * stays on disk for the next start.
   */
  async flush(timeoutMs: number): Promise<AlerterStatus> {
    const courier = this.courier;
    if (!courier) return this.status();
    const deadline = performance.now() + timeoutMs;
    courier.retryNow();
    const failedBefore = courier.status().failedAttempts;
    while (performance.now() < deadline) {
      const s = courier.status();
      const settled = this.work.length === 0 && !this.draining;
      if (settled && s.pending === 0) break;
      if (settled && !courier.busy && s.failedAttempts > failedBefore) break;
      if (settled && !courier.busy && s.nextAttemptAt === undefined) courier.kick();
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
    this.courier?.close();
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
          await this.enqueue(w.mail, w.kind, w.severity, "");
          continue;
        }
        const now = this.clock.now();
        const heldBefore = this.policy.held?.mails ?? 0;
        const d = "event" in w ? decide(this.policy, w.event, now, this.cfg) : "live" in w ? this.reconciled(w.live, now) : tick(this.policy, now, this.cfg);
        this.policy = d.state;
        if ("event" in w && d.mails.length === 0) {
          const c = classifyAlert(w.event);
          const held = (this.policy.held?.mails ?? 0) > heldBefore;
          if (held) this.o.logger.warn({ event: "alert.rate_capped", kind: w.event.kind, subject_key: c.subject, max_per_hour: this.cfg.maxPerHour }, `alert held back by the rate cap (${this.cfg.maxPerHour} an hour): ${w.event.kind} ${c.subject}`);
          else this.o.logger.debug({ event: "alert.folded", kind: w.event.kind, subject_key: c.subject }, `alert folded into the next mail: ${w.event.kind} ${c.subject}`);
        }
        if (d.mails.length > 0) {
          const snapshot = await this.snapshot();
          for (const m of d.mails) await this.enqueue(renderMail(m, { host: this.o.hostname, timeZone: this.o.timeZone, snapshot, maxPerHour: this.cfg.maxPerHour }), mailKind(m), m.severity, m.subject);
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

  private async enqueue(mail: RenderedMail, kind: string, severity: AlertSeverity, subjectKey: string): Promise<void> {
    const c = this.o.config;
    const to = [...new Set([...c.to, ...(severity === "critical" ? c.critical_to : [])])];
    const id = await this.courier!.enqueue({ createdAt: this.clock.now(), severity, kind, subjectKey, to, subject: mail.subject, text: mail.text });
    this.o.logger.info({ event: "alert.queued", id, kind, severity, subject_key: subjectKey, recipients: to.length }, `alert mail queued: ${mail.subject}`);
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
    if (this.closed || !this.courier) return;
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
    if (!this.courier) return;
    try {
      await writeJsonAtomic(this.policyFile, this.policy);
    } catch (e) {
      this.o.logger.warn({ event: "alert.policy.unwritable", file: this.policyFile, err: (e as Error).message }, `cannot save alert policy state: ${(e as Error).message}`);
    }
  }
}

function mailKind(m: PlannedMail): string {
  return m.type === "event" && m.event ? m.event.kind : m.type;
}
