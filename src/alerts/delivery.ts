/**
 * Delivery: takes messages from one channel's outbox in order, one at a time,
 * through that channel's transport (SMTP, Alertmanager, a webhook); retries
 * with exponential backoff while the receiver is down; moves a message the
 * receiver refused for good aside; records what happened for status and the
 * log. One Courier per channel, each over its own outbox. Runs in the
 * background only: nothing here is awaited by the code that raised an alert.
 */
import type { Logger } from "../log/logger.ts";
import type { Clock, TimerHandle } from "../platform/clock.ts";
import { doublingDelay } from "../time/backoff.ts";
import { describeFailure, type DeliveryFailure } from "./failure.ts";
import type { DropRecord, Outbox, OutboxMessage } from "./outbox.ts";

/** How one channel delivers a message. Never rejects: failures come back as values. */
export interface Transport {
  /** The channel's name in status and logs: smtp, alertmanager, or the webhook's name. */
  readonly channel: string;
  /** Where it delivers, for logs: "smtp.example.com:587 (starttls)", "http://127.0.0.1:9093". */
  readonly target: string;
  /** `dropped`: messages the outbox bound dropped and no delivered message has reported yet. */
  send(msg: OutboxMessage, ctx: { readonly dropped?: DropRecord; readonly signal: AbortSignal }): Promise<TransportResult>;
  /** Closes connections; `force` also ends one in the middle of a delivery. */
  close(force?: boolean): void;
}

/** `detail`: what the receiver said, for the delivery's log line. */
export type TransportResult = { readonly ok: true; readonly detail?: Readonly<Record<string, unknown>> } | { readonly ok: false; readonly failure: DeliveryFailure };

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
  /** Dropped for the outbox bound and not yet reported in a delivered message. */
  readonly dropped?: DropRecord;
  /** Failed attempts in a row (0 once a mail got through). */
  readonly failures: number;
  /** Failed attempts since start. */
  readonly failedAttempts: number;
  readonly lastError?: { readonly at: number; readonly failure: DeliveryFailure };
  readonly lastDeliveredAt?: number;
  /** When the next attempt is due while backing off. */
  readonly nextAttemptAt?: number;
}

export interface CourierOptions {
  readonly outbox: Outbox;
  readonly transport: Transport;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly outboxMax: number;
  readonly retry?: RetryPolicy;
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
  get channel(): string {
    return this.o.transport.channel;
  }

  async enqueue(msg: Omit<OutboxMessage, "id">): Promise<string> {
    const { id, dropped, unwritten } = await this.o.outbox.add(msg);
    const channel = this.channel;
    if (unwritten) {
      this.o.logger.error(
        { event: "alert.outbox.unwritable", channel, id, dir: this.o.outbox.dir, err: unwritten },
        `cannot write the ${channel} alert outbox in ${this.o.outbox.dir} (${unwritten}); the message is kept in memory only and is lost if llmsup stops before it is delivered`,
      );
    }
    if (dropped > 0) {
      this.o.logger.warn(
        { event: "alert.outbox.dropped", channel, dropped, pending: this.o.outbox.size, outbox_max: this.o.outboxMax },
        `${channel} alert outbox full (outbox_max ${this.o.outboxMax}): dropped the ${dropped === 1 ? "oldest message" : `${dropped} oldest messages`}; the next delivered message says so`,
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
    this.o.transport.close(true);
  }

  private async run(): Promise<void> {
    const { outbox, transport, clock, logger } = this.o;
    const channel = transport.channel;
    try {
      while (!this.closed) {
        const msg = await outbox.claim();
        if (!msg) break;
        const drops = outbox.dropped;
        this.sending = new AbortController();
        const started = clock.now();
        const r = await transport.send(msg, { dropped: drops, signal: this.sending.signal });
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
            { event: "alert.delivered", channel, id: msg.id, kind: msg.kind, subject_key: msg.subjectKey, ...r.detail, ms: clock.now() - started, pending: outbox.size - 1 },
            `alert delivered via ${channel}: ${msg.subject}`,
          );
          await outbox.done(msg.id);
          if (drops) await outbox.ackDrops(drops.count);
        } else if (r.failure.messageRejected) {
          this.rejected++;
          this.lastError = { at: clock.now(), failure: r.failure };
          logger.error(
            { event: "alert.rejected", channel, id: msg.id, kind: msg.kind, code: r.failure.llmsupCode, failure: r.failure, dir: `${outbox.dir}/rejected` },
            `${transport.target} refused an alert for good (${describeFailure(r.failure)}); kept in ${outbox.dir}/rejected: ${msg.subject}`,
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
            { event: "alert.delivery.failed", channel, code: r.failure.llmsupCode, failure: r.failure, target: transport.target, attempt: this.failures, retry_in_ms: delay, pending: outbox.size },
            `cannot deliver alerts via ${channel} (${transport.target}): ${describeFailure(r.failure)}; ${outbox.size} waiting in the outbox, next try in ${Math.round(delay / 1000)}s`,
          );
          break;
        }
        this.o.onProgress?.();
      }
    } catch (e) {
      logger.error({ event: "alert.delivery.error", channel, err: (e as Error).message }, `alert delivery via ${channel} stopped on an unexpected error: ${(e as Error).message}`);
    } finally {
      this.running = false;
      this.o.onProgress?.();
    }
  }
}
