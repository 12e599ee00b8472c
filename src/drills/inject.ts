/**
 * The thin shell of router faults (faults.ts decides): the router's upstream
 * attempts and shallow checks pass through here first (Upstreams.faults), and
 * while a fault is in force on their tier they get it — a synthetic answer
 * shaped exactly as a failing server's, a delay, a connection that resets,
 * a refusal — so that classification, breakers, failover, continuation and
 * alerts act as they would on the real failure. One fault at a time; it ends
 * at its time by itself, on stop(), and at daemon shutdown.
 */
import { Cancel } from "../platform/cancel.ts";
import { Readable } from "node:stream";
import { streamBody } from "../router/body.ts";
import type { Logger } from "../log/logger.ts";
import { sleepOn, type Clock, type TimerHandle } from "../platform/clock.ts";
import type { AttemptOutcome, AttemptRequest, TransportFailure, UpstreamFaults } from "../router/upstream.ts";
import { checkFault, degenerateAnswer, faultFor, hits, type ActiveFault, type FaultAction } from "./faults.ts";

type Response = Extract<AttemptOutcome, { kind: "response" }>;

export class FaultInjector implements UpstreamFaults {
  private active: ActiveFault | undefined;
  private timer: TimerHandle | undefined;
  private seq = 0;
  private count = 0;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly told: (summary: string, f: ActiveFault) => void;

  /** `told`: each start and end in words (the daemon's history: a fault's window shows among the events it caused). */
  constructor(clock: Clock, log: Logger, told: (summary: string, f: ActiveFault) => void = () => undefined) {
    this.clock = clock;
    this.log = log;
    this.told = told;
  }

  /** Attempts and checks the fault in force (or the last one) has hit. */
  injected(): number {
    return this.count;
  }

  /** Puts `f` in force until `f.until`; another in force is replaced (the drill desk runs one drill at a time). */
  start(f: ActiveFault): void {
    this.end("replaced");
    this.active = f;
    this.seq = 0;
    this.count = 0;
    this.timer = this.clock.setTimeout(() => this.end("its duration is over"), Math.max(0, f.until - this.clock.now()));
    const summary = `drill ${f.id}: ${f.kind} injected on ${f.backend}/${f.model} in the router until ${new Date(f.until).toISOString()}`;
    this.log.warn({ event: "drill.fault.started", drill: f.id, fault: f.kind, backend: f.backend, model: f.model, until: new Date(f.until).toISOString() }, summary);
    this.told(summary, f);
  }

  /** Ends the fault in force now (`why` in words); false when there was none. */
  end(why: string): boolean {
    const f = this.active;
    this.timer?.cancel();
    this.timer = undefined;
    this.active = undefined;
    if (!f) return false;
    const summary = `drill ${f.id}: ${f.kind} on ${f.backend} lifted (${why}) after ${this.count} injected failure(s)`;
    this.log.warn({ event: "drill.fault.ended", drill: f.id, fault: f.kind, backend: f.backend, injected: this.count, why }, summary);
    this.told(summary, f);
    return true;
  }

  check(backend: { readonly name: string }): { readonly ok: false; readonly detail: string } | undefined {
    const detail = checkFault(this.active, backend.name, this.clock.now());
    if (detail === undefined) return undefined;
    this.count++;
    return { ok: false, detail };
  }

  async attempt(r: AttemptRequest, send: (r: AttemptRequest) => Promise<AttemptOutcome>): Promise<AttemptOutcome> {
    const f = this.active;
    const now = this.clock.now();
    if (!hits(f, r.backend.name, r.tier.model, now)) return send(r);
    const a = faultFor(f, r.backend.name, r.tier.model, this.seq++, now);
    if (a.kind === "pass") return send(r);
    const endpoint = r.path.endsWith("/chat/completions") ? "chat" : r.path.endsWith("/completions") ? "completion" : "embedding";
    // A loop needs text to loop in: an embedding goes through untouched.
    if (a.kind === "loop" && endpoint === "embedding") return send(r);
    this.count++;
    this.log.info({ event: "drill.fault.injected", drill: f.id, fault: f.kind, backend: f.backend, model: r.tier.model, request_id: r.requestId, action: a.kind }, `drill ${f.id}: ${f.kind} on ${f.backend}/${r.tier.model} (request ${r.requestId})`);
    switch (a.kind) {
      case "refuse":
        return { kind: "failure", failure: "connect", detail: a.detail };
      case "http":
        return synthetic(r, a.status, { "content-type": "application/json", ...(a.retryAfterS !== undefined ? { "retry-after": String(a.retryAfterS) } : {}) }, a.body);
      case "loop":
        return synthetic(r, 200, { "content-type": r.stream ? "text/event-stream" : "application/json" }, degenerateAnswer(endpoint as "chat" | "completion", r.tier.model, a.text, r.stream, Math.floor(now / 1000)));
      case "delay":
        return this.delayed(r, a, send);
      case "cut": {
        const up = await send(r);
        return up.kind === "response" && up.status >= 200 && up.status < 300 ? cutAfter(up, a.chunks, a.mark) : up;
      }
    }
  }

  /** The answer `a.ms` later; a delay past the tier's first-token (or whole) deadline is that timeout, as the real wait would end. */
  private async delayed(r: AttemptRequest, a: Extract<FaultAction, { kind: "delay" }>, send: (r: AttemptRequest) => Promise<AttemptOutcome>): Promise<AttemptOutcome> {
    const budget = Math.min(r.tier.ttft_timeout, r.tier.total_timeout, r.remainingMs);
    const wait = Math.min(a.ms, budget);
    try {
      await sleepOn(this.clock, wait, r.evacuation ? Cancel.any(r.clientSignal, r.evacuation) : r.clientSignal);
    } catch {
      if (r.evacuation?.aborted && !r.clientSignal.aborted) return { kind: "failure", failure: "evacuated", detail: String(r.evacuation.reason) };
      return { kind: "failure", failure: "aborted", detail: "the client went away" };
    }
    if (a.ms >= budget) {
      const failure: TransportFailure = budget === r.tier.ttft_timeout ? "ttft_timeout" : "total_timeout";
      const detail = failure === "ttft_timeout" ? `no answer within ttft_timeout ${r.tier.ttft_timeout}ms ${a.mark}` : `no complete answer within total_timeout ${r.tier.total_timeout}ms ${a.mark}`;
      return { kind: "failure", failure, detail };
    }
    return send({ ...r, tier: { ...r.tier, ttft_timeout: r.tier.ttft_timeout - wait, total_timeout: r.tier.total_timeout - wait }, remainingMs: r.remainingMs - wait });
  }
}

/** An answer no server sent, shaped as one: status, headers, body. */
function synthetic(r: AttemptRequest, status: number, headers: Record<string, string>, text: string): Response {
  const body = streamBody(Readable.from([Buffer.from(text)]));
  let abortedBy: TransportFailure | undefined;
  return {
    kind: "response",
    status,
    headers,
    body,
    abort: (why = "aborted") => {
      abortedBy ??= why;
      body.destroy();
    },
    abortedBy: () => abortedBy,
    evacuatedBecause: () => (abortedBy === "evacuated" ? String(r.evacuation?.reason) : undefined),
    done: () => undefined,
    errorText: async () => text,
    scrub: (t) => t,
  };
}

/** The connection reset error a cut shows, as the socket layer names it. */
function resetError(mark: string): Error {
  return Object.assign(new Error(`other side closed ${mark}`), { code: "ECONNRESET" });
}

/** The real answer, its connection reset after `chunks` SSE events (a whole answer: after half its bytes). */
export function cutAfter(up: Response, chunks: number, mark: string): Response {
  const sse = String(up.headers["content-type"] ?? "").includes("text/event-stream");
  const source = up.body as AsyncIterable<Buffer>;
  async function* cut(): AsyncGenerator<Buffer> {
    if (!sse) {
      const parts: Buffer[] = [];
      for await (const c of source) parts.push(c);
      const all = Buffer.concat(parts);
      yield all.subarray(0, Math.floor(all.length / 2));
      throw resetError(mark);
    }
    let events = 0;
    let prev = -1;
    if (chunks === 0) {
      up.body.destroy();
      throw resetError(mark);
    }
    for await (const c of source) {
      for (let i = 0; i < c.length; i++) {
        const b = c[i]!;
        if (b === 0x0d) continue;
        if (b === 0x0a && prev === 0x0a) {
          prev = -1;
          if (++events < chunks) continue;
          yield c.subarray(0, i + 1);
          up.body.destroy();
          throw resetError(mark);
        }
        prev = b;
      }
      yield c;
    }
  }
  return { ...up, body: streamBody(Readable.from(cut(), { objectMode: false })) };
}

