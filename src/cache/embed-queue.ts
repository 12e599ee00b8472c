/**
 * Prompts waiting for their embedding, computed in the background after the
 * answer went out: a bounded queue (more are dropped, and said so), at most
 * CONCURRENCY requests to embeddings tiers at a time, up to BATCH prompts of
 * one tier per request. Never throws at its caller; results and failures go
 * to the callbacks.
 */
import type { Embedder, EmbeddingTarget } from "./embeddings.ts";

export interface EmbedJob {
  /** The entry's exact key. */
  readonly key: string;
  readonly route: string;
  readonly target: EmbeddingTarget;
  readonly text: string;
  readonly scope: number;
}

export interface EmbedQueueOptions {
  readonly embed: Embedder;
  readonly maxQueued: number;
  readonly concurrency: number;
  readonly batch: number;
  readonly timeoutMs: number;
  readonly onEmbedded: (jobs: readonly EmbedJob[], vectors: readonly number[][]) => void;
  readonly onFailed: (jobs: readonly EmbedJob[], error: unknown) => void;
}

const sameTarget = (a: EmbeddingTarget, b: EmbeddingTarget) => a.backend === b.backend && a.model === b.model;

export class EmbedQueue {
  private readonly o: EmbedQueueOptions;
  private queue: EmbedJob[] = [];
  private inFlight = 0;
  private closed = false;
  private readonly abort = new AbortController();
  private waiters: (() => void)[] = [];

  constructor(o: EmbedQueueOptions) {
    this.o = o;
  }

  get queued(): number {
    return this.queue.length;
  }

  get running(): number {
    return this.inFlight;
  }

  /** Queues a prompt; false when the queue is full or closed (the job is dropped). */
  push(job: EmbedJob): boolean {
    if (this.closed || this.queue.length >= this.o.maxQueued) return false;
    this.queue.push(job);
    // Never on the caller's turn of the event loop.
    setImmediate(() => this.pump());
    return true;
  }

  private pump(): void {
    while (!this.closed && this.inFlight < this.o.concurrency && this.queue.length > 0) {
      const target = this.queue[0]!.target;
      const jobs: EmbedJob[] = [];
      const rest: EmbedJob[] = [];
      for (const j of this.queue) (jobs.length < this.o.batch && sameTarget(j.target, target) ? jobs : rest).push(j);
      this.queue = rest;
      this.inFlight++;
      void this.run(target, jobs);
    }
    this.wake();
  }

  private async run(target: EmbeddingTarget, jobs: readonly EmbedJob[]): Promise<void> {
    try {
      const vectors = await this.o.embed(target, jobs.map((j) => j.text), this.o.timeoutMs, this.abort.signal);
      if (!this.closed) this.o.onEmbedded(jobs, vectors);
    } catch (e) {
      if (!this.closed) this.o.onFailed(jobs, e);
    } finally {
      this.inFlight--;
      this.pump();
    }
  }

  private wake(): void {
    if (this.inFlight > 0 || (this.queue.length > 0 && !this.closed)) return;
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  /** Resolves once nothing is queued or running. */
  idle(): Promise<void> {
    if (this.inFlight === 0 && (this.queue.length === 0 || this.closed)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Drops what waits and abandons what runs. */
  close(): void {
    this.closed = true;
    this.queue = [];
    this.abort.abort();
    this.wake();
  }
}
