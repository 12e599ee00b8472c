/**
 * Delivery: takes messages from the outbox in order, one at a time, through the
 * mailer; retries with exponential backoff while SMTP is down; records what
 * happened for status and the log. Runs in the background only: nothing here
 * is awaited by the code that raised an alert.
 */
import type { Logger } from "../log/logger.ts";
import type { Clock, TimerHandle } from "../platform/clock.ts";
import { doublingDelay } from "../time/backoff.ts";
import type { Mailer } from "./mailer.ts";
import type { DropRecord, Outbox, OutboxMessage } from "./outbox.ts";
import { droppedNote } from "./render.ts";
import { describeSmtpFailure, type SmtpFailure } from "./smtp-failure.ts";

export interface RetryPolicy {
  /** First delay after a failed attempt; doubles per failure. */
  readonly baseMs: number;
  readonly maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { baseMs: 5_000, maxMs: 5 * 60_000 };

export interface DeliveryStatus {
  /** Messages in the outbox, the one being sent included. */
  readonly pending: number;
  readonly delivered: number;
  /** Refused for good by the server (kept in outbox/rejected/). */
  readonly rejected: number;
  /** Dropped for the outbox bound and not yet reported in a delivered mail. */
  readonly dropped?: DropRecord;
  /** Failed attempts in a row (0 once a mail got through). */
  readonly failures: number;
  /** Failed attempts since start. */
  readonly failedAttempts: number;
  readonly lastError?: { readonly at: number; readonly failure: SmtpFailure };
  readonly lastDeliveredAt?: number;
  /** When the next attempt is due while backing off. */
  readonly nextAttemptAt?: number;
}

export interface CourierOptions {
  readonly outbox: Outbox;
  readonly mailer: Mailer;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly outboxMax: number;
  readonly host: string;
  readonly retry?: RetryPolicy;
  readonly timeZone?: string;
  /** Called whenever a delivery attempt ends (for flush waiters). */
  readonly onProgress?: () => void;
}

export class Courier {
  private readonly o: CourierOptions;
  private readonly retry: RetryPolicy;
  private running = false;
  private closed = false;
  private retryTimer: TimerHandle | undefined;
  private nextAttemptAt: number | undefined;
  private sending: AbortController | undefined;
  private delivered = 0;
  private rejected = 0;
  private failures = 0;
  private failedAttempts = 0;
  private lastError: DeliveryStatus["lastError"];
  private lastDeliveredAt: number | undefined;

  constructor(options: CourierOptions) {
    this.o = options;
    this.retry = options.retry ?? DEFAULT_RETRY;
  }

  /** Writes a message to the outbox (resolves once it is on disk) and starts delivery. */
  async enqueue(msg: Omit<OutboxMessage, "id">): Promise<string> {
    const { id, dropped, unwritten } = await this.o.outbox.add(msg);
    if (unwritten) {
      this.o.logger.error(
        { event: "alert.outbox.unwritable", id, dir: this.o.outbox.dir, err: unwritten },
        `cannot write the alert outbox in ${this.o.outbox.dir} (${unwritten}); the mail is kept in memory only and is lost if llmsup stops before it is delivered`,
      );
    }
    if (dropped > 0) {
      this.o.logger.warn(
        { event: "alert.outbox.dropped", dropped, pending: this.o.outbox.size, outbox_max: this.o.outboxMax },
        `alert outbox full (outbox_max ${this.o.outboxMax}): dropped the ${dropped === 1 ? "oldest message" : `${dropped} oldest messages`}; the next delivered mail says so`,
      );
    }
    this.kick();
    return id;
  }

  /** Starts the delivery loop unless it runs or waits out a backoff. */
  kick(): void {
    if (this.running || this.closed || this.retryTimer) return;
    this.running = true;
    void this.run();
  }

  /** Ends a backoff wait and tries at once (housekeeping, shutdown flush). */
  retryNow(): void {
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
    this.nextAttemptAt = undefined;
    this.kick();
  }

  get busy(): boolean {
    return this.running;
  }

  status(): DeliveryStatus {
    return {
      pending: this.o.outbox.size,
      delivered: this.delivered,
      rejected: this.rejected,
      dropped: this.o.outbox.dropped,
      failures: this.failures,
      failedAttempts: this.failedAttempts,
      lastError: this.lastError,
      lastDeliveredAt: this.lastDeliveredAt,
      nextAttemptAt: this.nextAttemptAt,
    };
  }

  /** Stops delivering; a send in progress is abandoned (its message stays in the outbox). */
  close(): void {
    this.closed = true;
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
    this.sending?.abort();
    this.o.mailer.close(true);
  }

  private async run(): Promise<void> {
    const { outbox, mailer, clock, logger } = this.o;
    try {
      while (!this.closed) {
        const msg = await outbox.claim();
        if (!msg) break;
        const drops = outbox.dropped;
        const text = drops ? `${droppedNote(drops.count, drops.first, drops.last, this.o.outboxMax, this.o.timeZone)}\n\n${msg.text}` : msg.text;
        this.sending = new AbortController();
        const started = clock.now();
        const r = await mailer.send(
          { to: msg.to, subject: msg.subject, text, messageId: `${msg.id}.llmsup@${this.o.host}`, headers: { "X-Llmsup-Alert": msg.kind, "X-Llmsup-Severity": msg.severity } },
          this.sending.signal,
        );
        this.sending = undefined;
        if (this.closed) {
          if (r.ok) await outbox.done(msg.id);
          else outbox.release(msg.id);
          break;
        }
        if (r.ok) {
          // Counted and logged first: status() never shows a message gone from the outbox but not delivered.
          this.delivered++;
          this.failures = 0;
          this.lastDeliveredAt = clock.now();
          logger.info(
            { event: "alert.delivered", id: msg.id, kind: msg.kind, subject_key: msg.subjectKey, message_id: r.info.messageId, response: r.info.response, rejected: r.info.rejected, ms: clock.now() - started, pending: outbox.size - 1 },
            `alert mail delivered: ${msg.subject}`,
          );
          await outbox.done(msg.id);
          if (drops) await outbox.ackDrops(drops.count);
        } else if (r.failure.messageRejected) {
          this.rejected++;
          this.lastError = { at: clock.now(), failure: r.failure };
          logger.error(
            { event: "alert.rejected", id: msg.id, kind: msg.kind, code: r.failure.llmsupCode, smtp: r.failure, dir: `${outbox.dir}/rejected` },
            `the SMTP server refused an alert mail for good (${describeSmtpFailure(r.failure)}); kept in ${outbox.dir}/rejected: ${msg.subject}`,
          );
          await outbox.reject(msg.id);
        } else {
          outbox.release(msg.id);
          this.failures++;
          this.failedAttempts++;
          this.lastError = { at: clock.now(), failure: r.failure };
          const delay = doublingDelay({ first: this.retry.baseMs, max: this.retry.maxMs }, this.failures - 1);
          this.nextAttemptAt = clock.now() + delay;
          this.retryTimer = clock.setTimeout(() => {
            this.retryTimer = undefined;
            this.nextAttemptAt = undefined;
            this.kick();
          }, delay);
          logger.warn(
            { event: "alert.delivery.failed", code: r.failure.llmsupCode, smtp: r.failure, target: mailer.target, attempt: this.failures, retry_in_ms: delay, pending: outbox.size },
            `cannot deliver alert mail via ${mailer.target}: ${describeSmtpFailure(r.failure)}; ${outbox.size} waiting in the outbox, next try in ${Math.round(delay / 1000)}s`,
          );
          break;
        }
        this.o.onProgress?.();
      }
    } catch (e) {
      logger.error({ event: "alert.delivery.error", err: (e as Error).message }, `alert delivery stopped on an unexpected error: ${(e as Error).message}`);
    } finally {
      this.running = false;
      this.o.onProgress?.();
    }
  }
}
