/**
 * Relaying one upstream SSE stream to the client, honestly: nothing reaches
 * the client before the first output token (the commit point), so a failure
 * before it can fall over invisibly; after it, a stream never ends as a clean
 * `[DONE]` unless the upstream finished the answer.
 */
import type { ServerResponse } from "node:http";
import type { FailureClass } from "./classify.ts";
import type { Detector, QualityWatch } from "./quality.ts";
import { chunkContent, chunkFinish, chunkHasOutput, chunkHasToolCall, SseReader, type SseChunk } from "./sse.ts";
import { transportFailure, type AttemptOutcome } from "./upstream.ts";

export type RelayResult =
  | { readonly kind: "complete"; readonly content: string; readonly chunks: number; readonly ttftMs?: number }
  /** `detector`: the answer was a model failure (failure "quality"), caught by this detector. */
  | { readonly kind: "failed_before_commit"; readonly failure: FailureClass; readonly detail: string; readonly detector?: Detector }
  /** `toolCalls`: the answer had begun a tool call, whose arguments cannot be carried to another tier. */
  | { readonly kind: "broken_after_commit"; readonly failure: FailureClass; readonly detail: string; readonly content: string; readonly chunks: number; readonly toolCalls: boolean; readonly detector?: Detector }
  | { readonly kind: "client_gone" };

export interface RelayOptions {
  /** Writes the client's response head; called once, at the commit point. */
  readonly commit: () => void;
  /** Already committed: this stream continues an answer another tier started (skip its role chunk). */
  readonly continuing: boolean;
  /** Milliseconds until the first output token must arrive (from the attempt's start). */
  readonly ttftLeftMs: number;
  /** How long to wait after a finish_reason for [DONE] before finalising ourselves. */
  readonly finishGraceMs: number;
  readonly startedAt: number;
  /**
   * What the client gets for one upstream chunk: the chunk itself, others in its place, or nothing
   * (a continuation's seam: repeated text trimmed, usage added up). Chunks returned unchanged go out as
   * the upstream's own bytes; `content` counts what went out.
   */
  readonly rewrite?: (c: SseChunk) => readonly SseChunk[];
  /**
   * The route's model-failure detectors (quality.ts), fed the upstream's text: a detection ends the
   * relay before the chunk that showed it goes out, as a failure "quality". The first token waits
   * until `holdChars` characters of text are in (or the answer finished), so that what they judge
   * the start of an answer by is seen before anything reaches the client.
   */
  readonly quality?: QualityWatch;
}

/** What the streams relayed to one client response have carried so far, for a continuation to judge. */
export interface StreamRecord {
  /** A tool call was begun: its arguments cannot be carried to another tier. */
  toolCalls: boolean;
}

const records = new WeakMap<ServerResponse, StreamRecord>();

/** What the relayed streams carried to `res` (undefined: nothing relayed yet). */
export function streamRecord(res: ServerResponse): Readonly<StreamRecord> | undefined {
  return records.get(res);
}

type Response = Extract<AttemptOutcome, { kind: "response" }>;

/** Writes with backpressure: waits for 'drain' when the client reads slower than the upstream writes. */
async function write(res: ServerResponse, text: string): Promise<void> {
  if (!res.write(text)) {
    await new Promise<void>((resolve) => {
      const done = () => {
        res.off("drain", done);
        res.off("close", done);
        resolve();
      };
      res.on("drain", done);
      res.on("close", done);
    });
  }
}

/**
 * After [DONE] the answer is complete and the client gets its end at once; the upstream's own end of the
 * body (normally in the same read) is still read, so that its keep-alive connection serves the next
 * request instead of being torn down with an aborted request. One that does not end within `graceMs` is aborted.
 */
function drainAfterDone(chunksIn: AsyncIterator<Buffer>, up: Response, graceMs: number): void {
  const timer = setTimeout(() => up.abort("aborted"), graceMs);
  void (async () => {
    try {
      while (!(await chunksIn.next()).done);
    } catch {
      // Cut off after [DONE]: nothing more was wanted of it.
    } finally {
      clearTimeout(timer);
    }
  })();
}

export async function relayStream(res: ServerResponse, up: Response, o: RelayOptions): Promise<RelayResult> {
  const reader = new SseReader();
  let committed = o.continuing;
  const pending: string[] = [];
  let content = "";
  let chunks = 0;
  let toolCalls = false;
  let finishSeen = false;
  let finalising = false;
  let doneSent = false;
  let broken: { failure: FailureClass; detail: string; detector?: Detector } | undefined;
  const hold = o.quality?.holdChars ?? 0;
  let ttftMs: number | undefined;
  let grace: NodeJS.Timeout | undefined;
  const ttft = committed ? undefined : setTimeout(() => up.abort("ttft_timeout"), Math.max(1, o.ttftLeftMs));
  // What one upstream read produced goes out in one write: fewer syscalls, the same bytes.
  let batch = "";
  const out = (text: string) => {
    batch += text;
  };
  const flush = async () => {
    if (batch === "" || res.destroyed) return;
    const b = batch;
    batch = "";
    await write(res, b);
  };

  const commit = () => {
    if (committed) return;
    committed = true;
    if (ttft) clearTimeout(ttft);
    ttftMs ??= performance.now() - o.startedAt;
    o.commit();
    for (const p of pending.splice(0)) out(p);
  };

  // Read by hand, not for-await: after [DONE] the rest of the body is drained rather than destroyed (drainAfterDone).
  const chunksIn = up.body[Symbol.asyncIterator]();
  let afterDone = false;
  let ended = false;
  try {
    outer: for (;;) {
      const next = await chunksIn.next();
      if (next.done) {
        ended = true;
        break;
      }
      const chunk = next.value;
      if (res.destroyed) break;
      for (const item of reader.pushBytes(chunk)) {
        if (item.type === "malformed") {
          broken = { failure: "stream_broken", detail: up.scrub(`malformed chunk from the backend (${item.error})`) };
          up.abort("aborted");
          break outer;
        }
        if (item.type === "other") {
          if (committed) out(item.raw);
          else pending.push(item.raw);
          continue;
        }
        if (item.type === "done") {
          if (!committed && !finishSeen) {
            broken = { failure: "stream_broken", detail: "the stream ended ([DONE]) without any output or finish_reason" };
            break outer;
          }
          commit();
          out(item.raw);
          doneSent = true;
          if (grace) clearTimeout(grace);
          finalising = true;
          afterDone = true;
          break outer;
        }
        const c = item.json;
        if (c.error !== undefined) {
          broken = { failure: "stream_broken", detail: `the backend sent an error mid-stream: ${up.scrub(JSON.stringify(c.error)).slice(0, 300)}` };
          up.abort("aborted");
          break outer;
        }
        const finish = chunkFinish(c);
        const output = chunkHasOutput(c);
        if (output) chunks++;
        if (chunkHasToolCall(c)) toolCalls = true;
        if (o.quality) {
          const d = o.quality.feed(chunkContent(c)) ?? (finish ? o.quality.finish(toolCalls, finish) : undefined);
          if (d) {
            broken = { failure: "quality", detail: d.detail, detector: d.detector };
            up.abort("aborted");
            break outer;
          }
        }
        if (output && !committed && ttftMs === undefined) {
          // The first token is in: time to first token is met, even while the start of the answer is held.
          if (ttft) clearTimeout(ttft);
          ttftMs = performance.now() - o.startedAt;
        }
        // A continuation's own role chunk is skipped: the client already has one.
        const roleOnly = o.continuing && !output && !finish && c.usage == null && chunks === 0;
        for (const x of roleOnly ? [] : o.rewrite ? o.rewrite(c) : [c]) {
          content += chunkContent(x);
          const raw = x === c ? item.raw : `data: ${JSON.stringify(x)}\n\n`;
          if (committed) out(raw);
          else pending.push(raw);
        }
        if (!committed && (finish || (output && (hold === 0 || toolCalls || o.quality!.chars >= hold)))) commit();
        if (finish && !finishSeen) {
          finishSeen = true;
          // Usage may follow the finish chunk; if [DONE] does not come soon, finish the stream ourselves.
          grace = setTimeout(() => {
            finalising = true;
            up.abort("aborted");
          }, o.finishGraceMs);
        }
      }
      await flush();
    }
  } catch (e) {
    if (!finalising && !broken) {
      const why = up.abortedBy() ?? transportFailure(e);
      if (why === "aborted" && res.destroyed) return cleanup({ kind: "client_gone" });
      if (!finishSeen && why === "evacuated") broken = { failure: "evacuated", detail: up.evacuatedBecause() ?? "the request was moved off its backend" };
      else if (!finishSeen) {
        broken = {
          failure: why === "aborted" ? "stream_broken" : why === "connect" ? "connect_reset" : why,
          detail: why === "connect" || why === "connect_reset" || why === "aborted" ? "the backend closed the connection mid-stream" : `${why.replace("_", " ")} while streaming`,
        };
      }
    }
  }

  // Nothing more is read of a stream left early: it is destroyed (its request aborted) — after [DONE], drained instead.
  if (afterDone) drainAfterDone(chunksIn, up, o.finishGraceMs);
  else if (!ended) void chunksIn.return?.().catch(() => undefined);

  // Output that arrived before a break still reaches the client.
  await flush();

  function cleanup(r: RelayResult): RelayResult {
    if (ttft) clearTimeout(ttft);
    if (grace) clearTimeout(grace);
    up.done();
    if (committed) {
      const rec = records.get(res);
      if (rec) rec.toolCalls ||= toolCalls;
      else records.set(res, { toolCalls });
    }
    return r;
  }

  if (res.destroyed) return cleanup({ kind: "client_gone" });
  if (broken) {
    return cleanup(committed ? { kind: "broken_after_commit", ...broken, content, chunks, toolCalls } : { kind: "failed_before_commit", ...broken });
  }
  if (!finishSeen && !finalising) {
    const b = { failure: "stream_broken" as const, detail: "the stream ended without finish_reason (truncated answer)" };
    return cleanup(committed ? { kind: "broken_after_commit", ...b, content, chunks, toolCalls } : { kind: "failed_before_commit", ...b });
  }
  commit();
  // A finished answer whose [DONE] never came is finalised here, at once.
  if (!doneSent) out("data: [DONE]\n\n");
  await flush();
  return cleanup({ kind: "complete", content, chunks, ttftMs });
}
