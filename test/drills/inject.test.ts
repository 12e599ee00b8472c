/**
 * The fault injector as the router's Upstreams meets it, on a manual clock
 * with a stand-in for the real attempt: what each fault hands back, how a cut
 * stream breaks, a delay past the first-token deadline, the end of a fault.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import type { BackendConfig, TierConfig } from "../../src/config/types.ts";
import { FAULT_DEFAULTS, type ActiveFault, type FaultKind } from "../../src/drills/faults.ts";
import { FaultInjector } from "../../src/drills/inject.ts";
import { silentLogger } from "../../src/log/logger.ts";
import { transportFailure, type AttemptOutcome, type AttemptRequest } from "../../src/router/upstream.ts";
import { streamBody } from "../../src/router/body.ts";
import { flush, ManualClock } from "../helpers/clock.ts";

type Response = Extract<AttemptOutcome, { kind: "response" }>;

const SSE = ["data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n", "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n", "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n", "data: [DONE]\n\n"];

function realAnswer(stream: boolean): Response {
  // One read carrying several events, as a socket delivers them.
  const chunks = stream ? [SSE.slice(0, 2).join(""), SSE.slice(2).join("")] : ['{"choices":[{"message":{"content":"hello there"}}]}'];
  return {
    kind: "response",
    status: 200,
    headers: { "content-type": stream ? "text/event-stream" : "application/json" },
    body: streamBody(Readable.from(chunks.map((c) => Buffer.from(c)))),
    abort: () => undefined,
    abortedBy: () => undefined,
    evacuatedBecause: () => undefined,
    done: () => undefined,
    errorText: async () => "",
    scrub: (t) => t,
  };
}

function setup(kind: FaultKind, over: Partial<ActiveFault> = {}) {
  const clock = new ManualClock();
  const faults = new FaultInjector(clock, silentLogger());
  faults.start({ ...FAULT_DEFAULTS, delayMs: 2_000, id: "d9", kind, backend: "primary", model: "m", until: clock.now() + 60_000, ...over });
  const sent: AttemptRequest[] = [];
  const send = async (r: AttemptRequest): Promise<AttemptOutcome> => {
    sent.push(r);
    return realAnswer(r.stream);
  };
  const request = (stream = false, backend = "primary"): AttemptRequest => ({
    backend: { name: backend } as BackendConfig,
    tier: { backend, model: "m", ttft_timeout: 1_000, total_timeout: 30_000, connect_timeout: 1_000 } as TierConfig,
    path: "/v1/chat/completions",
    body: "{}",
    stream,
    requestId: "r1",
    clientSignal: new AbortController().signal,
    remainingMs: 60_000,
  });
  return { clock, faults, sent, send, request };
}

test("errors and rate-limit answer as the failing server would, without reaching it; other tiers are untouched", async () => {
  const { faults, sent, send, request } = setup("rate-limit", { retryAfterS: 4 });
  const up = await faults.attempt(request(), send);
  assert.ok(up.kind === "response");
  assert.equal(up.status, 429);
  assert.equal(up.headers["retry-after"], "4");
  assert.match(await up.errorText(), /\[drill d9: rate-limit\]/);
  assert.equal(sent.length, 0, "the real backend was not asked");
  const other = await faults.attempt(request(false, "fallback"), send);
  assert.ok(other.kind === "response" && other.status === 200);
  assert.equal(sent.length, 1);
  assert.equal(faults.injected(), 1);
});

test("a stream-cut stream delivers its first events, then resets as a socket would", async () => {
  const { faults, send, request } = setup("stream-cut", { chunks: 3 });
  const up = await faults.attempt(request(true), send);
  assert.ok(up.kind === "response");
  let text = "";
  await assert.rejects(
    (async () => {
      for await (const c of up.body as AsyncIterable<Buffer>) text += c.toString();
    })(),
    (e: Error) => transportFailure(e) === "connect_reset",
  );
  assert.equal(text, SSE.slice(0, 3).join(""), "exactly three events got through");
  const whole = await faults.attempt(request(false), send);
  assert.ok(whole.kind === "response");
  await assert.rejects(whole.body.whole(), /other side closed \[drill d9: stream-cut\]/);
});

test("latency delays the real attempt and takes the delay off its deadlines; past ttft_timeout it is that timeout", async () => {
  const short = setup("latency", { delayMs: 400 });
  const p = short.faults.attempt(short.request(), short.send);
  await flush();
  assert.equal(short.sent.length, 0, "not before the delay");
  short.clock.advance(400);
  const up = await p;
  assert.ok(up.kind === "response");
  assert.equal(short.sent[0]!.tier.ttft_timeout, 600);
  assert.equal(short.sent[0]!.remainingMs, 59_600);

  const long = setup("latency", { delayMs: 5_000 });
  const q = long.faults.attempt(long.request(), long.send);
  await flush();
  long.clock.advance(1_000);
  const late = await q;
  assert.deepEqual(late, { kind: "failure", failure: "ttft_timeout", detail: "no answer within ttft_timeout 1000ms [drill d9: latency]" });
  assert.equal(long.sent.length, 0);
});

test("block refuses attempts and health checks; the fault ends at its time, or when ended", async () => {
  const { clock, faults, send, request } = setup("block", { until: Date.UTC(2025, 5, 1, 14, 0, 10) });
  assert.equal((await faults.attempt(request(), send)).kind, "failure");
  assert.deepEqual(faults.check({ name: "primary" }), { ok: false, detail: "connection refused (nothing listens there) [drill d9: block]" });
  assert.equal(faults.check({ name: "fallback" }), undefined);
  clock.advance(10_000);
  assert.equal(faults.check({ name: "primary" }), undefined, "over at its time");
  assert.equal(faults.end("again"), false, "already ended by its own timer");
  const quality = setup("quality");
  const loop = await quality.faults.attempt(quality.request(), quality.send);
  assert.ok(loop.kind === "response" && loop.status === 200);
  assert.equal(quality.faults.end("the drill was stopped"), true);
  assert.ok((await quality.faults.attempt(quality.request(), quality.send)).kind === "response");
  assert.equal(quality.sent.length, 1, "after the end the real backend answers");
});
