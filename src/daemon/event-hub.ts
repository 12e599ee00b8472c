/**
 * Where the daemon's events go: every subscriber (drills, tests) and the
 * embedder's consumer, each isolated so one that throws never stops the
 * others or the daemon. Plus the two bounded memories the daemon keeps of
 * what happened: the operator's history (status, digest) and a day of alerts
 * (drill reports, digest).
 */
import type { AlertEvent } from "../alerts/events.ts";
import type { Logger } from "../log/logger.ts";
import type { HistoryEntry } from "./state-store.ts";

export class EventHub<E> {
  private readonly listeners = new Set<(e: E) => void>();
  private readonly log: Logger;

  constructor(log: Logger, consumer?: (e: E) => void) {
    this.log = log;
    if (consumer) this.listeners.add(consumer);
  }

  subscribe(fn: (e: E) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(e: E): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.log.error({ event: "daemon.event_consumer_failed", err: (err as Error).message }, "an event consumer failed");
      }
    }
  }
}

/** The operator's history: the newest `max` entries; followers hear of each new one. */
export class History {
  private entries: HistoryEntry[];
  private readonly max: number;
  private readonly followers = new Set<(h: HistoryEntry) => void>();

  constructor(initial: readonly HistoryEntry[], max = 500) {
    this.max = max;
    this.entries = initial.slice(-max);
  }

  add(h: HistoryEntry): void {
    this.entries.push(h);
    if (this.entries.length > this.max) this.entries.splice(0, this.entries.length - this.max);
    for (const f of this.followers) f(h);
  }

  follow(fn: (h: HistoryEntry) => void): () => void {
    this.followers.add(fn);
    return () => this.followers.delete(fn);
  }

  all(): readonly HistoryEntry[] {
    return this.entries;
  }
}

/** The alerts of the last day (at most `max`). */
export class AlertLog {
  private entries: AlertEvent[] = [];
  private readonly max: number;

  constructor(max = 5_000) {
    this.max = max;
  }

  add(a: AlertEvent, now: number): void {
    this.entries.push(a);
    const dayAgo = now - 86_400_000;
    if (this.entries.length > this.max || (this.entries[0] && this.entries[0].at < dayAgo)) this.entries = this.entries.filter((x) => x.at >= dayAgo).slice(-this.max);
  }

  since(at: number): readonly AlertEvent[] {
    return this.entries.filter((a) => a.at >= at);
  }

  all(): readonly AlertEvent[] {
    return this.entries;
  }
}
