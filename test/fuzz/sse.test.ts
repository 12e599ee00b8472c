/**
 * Fuzzing the SSE reader and the relay: streams of random events and of
 * random bytes, cut into reads at random places (inside multi-byte UTF-8
 * characters, between the CR and the LF of a CRLF). The same bytes read as
 * the same events however they are cut, nothing throws, and an event longer
 * than the reader's limit is one clear error, not unbounded memory.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type ServerResponse } from "node:http";
import { once } from "node:events";
import { Readable } from "node:stream";
import fc from "fast-check";
import { relayStream, type RelayResult } from "../../src/router/relay.ts";
import { chunkContent, SseReader, type SseItem } from "../../src/router/sse.ts";
import type { AttemptOutcome, TransportFailure } from "../../src/router/upstream.ts";
import { streamBody } from "../../src/router/body.ts";
import { cutAt, runs } from "./runs.ts";

type Eol = "\n" | "\r\n" | "\r";
const eol = fc.constantFrom<Eol>("\n", "\r\n", "\r");

/** What one generated event must read as. */
type Expect = { readonly type: "data"; readonly content: string } | { readonly type: "done" | "malformed" | "other" };

interface GenEvent {
  readonly lines: readonly string[];
  readonly expect: Expect;
}

/** Text without line ends (any Unicode). */
const lineText = fc.string({ unit: "binary", maxLength: 30 }).map((s) => s.replace(/[\r\n]/g, " "));
const content = fc.oneof(fc.string({ unit: "binary", maxLength: 20 }), fc.constantFrom("é", "🌍", "世界", "\r\n", "data: [DONE]\n\n", ""));
const dataPrefix = fc.constantFrom("data: ", "data:");

const genEvent: fc.Arbitrary<GenEvent> = fc.oneof(
  fc.tuple(dataPrefix, content).map(([p, c]) => ({ lines: [`${p}${JSON.stringify({ choices: [{ delta: { content: c } }] })}`], expect: { type: "data", content: c } as const })),
  fc.tuple(dataPrefix, content, fc.constantFrom("stop", "length")).map(([p, c, f]) => ({ lines: [`${p}${JSON.stringify({ choices: [{ text: c, finish_reason: f }] })}`], expect: { type: "data", content: c } as const })),
  fc.tuple(dataPrefix, content).map(([p, c]) => ({ lines: [`${p}{"choices":`, `${p}[{"delta":{"content":${JSON.stringify(c)}}}]}`], expect: { type: "data", content: c } as const })),
  lineText.map((s) => ({ lines: [`:${s}`], expect: { type: "other" } as const })),
  fc.constantFrom("event: ping", "id: 7", "retry: 100", "event:").map((l) => ({ lines: [l], expect: { type: "other" } as const })),
  fc.constantFrom("data: [DONE]", "data:[DONE]", "data:  [DONE] ").map((l) => ({ lines: [l], expect: { type: "done" } as const })),
  fc.tuple(dataPrefix, lineText).map(([p, s]) => ({ lines: [`${p}{"choices":${s} <`], expect: { type: "malformed" } as const })),
  fc.constantFrom("data: 3", "data: null", 'data: "x"', "data:").map((l) => ({ lines: [l], expect: { type: "malformed" } as const })),
);

interface GenStream {
  readonly text: string;
  /** Each whole event's exact text (its raw item) and what it reads as. */
  readonly events: readonly { raw: string; block: string; expect: Expect }[];
  /** The unterminated text at the end. */
  readonly tail: string;
}

/** Events, each line ended by a random line end and each event by a blank line; then maybe an unterminated tail. */
const genStream: fc.Arbitrary<GenStream> = fc
  .tuple(fc.array(fc.tuple(genEvent, fc.array(eol, { minLength: 4, maxLength: 4 })), { maxLength: 12 }), fc.option(lineText.map((s) => `data: {"partial${s}`), { nil: "" }))
  .map(([evs, tail]) => {
    const events = evs.map(([ev, ends]) => {
      let text = "";
      ev.lines.forEach((line, i) => (text += line + (i < ev.lines.length - 1 ? ends[i % 2]! : "")));
      // The line end, then the blank line; a lone CR then an LF would be one CRLF, so that pair becomes CR CR.
      const end = ends[2]!;
      const blank = end === "\r" && ends[3] === "\n" ? "\r" : ends[3]!;
      return { raw: text + end + blank, block: text, expect: ev.expect };
    });
    return { text: events.map((e) => e.raw).join("") + tail, events, tail };
  });

const isLineEnd = (b: number | undefined) => b === 0x0d || b === 0x0a;

/** Cut points into `bytes`: random ones, and ones inside multi-byte characters or next to a CR or an LF (inside a CRLF too). */
function cuts(bytes: Uint8Array, random: readonly number[], hot: readonly number[]): number[] {
  const interesting: number[] = [];
  for (let i = 1; i < bytes.length; i++) if ((bytes[i]! & 0xc0) === 0x80 || isLineEnd(bytes[i - 1]) || isLineEnd(bytes[i])) interesting.push(i);
  const at = new Set(random.map((r) => r % (bytes.length + 1)));
  if (interesting.length > 0) for (const h of hot) at.add(interesting[h % interesting.length]!);
  return [...at].sort((a, b) => a - b);
}

function pieces(bytes: Uint8Array, at: readonly number[]): Uint8Array[] {
  return cutAt(at, (from, to) => bytes.subarray(from, to));
}

/** Reads `parts` with one reader; checks the bound after every read. */
function readAll(parts: readonly Uint8Array[], maxEvent?: number): { items: SseItem[]; rest: string } {
  const r = new SseReader(maxEvent);
  const items: SseItem[] = [];
  for (const p of parts) {
    items.push(...r.pushBytes(p));
    if (maxEvent !== undefined) assert.ok(r.held <= maxEvent + 3, `held ${r.held} characters, limit ${maxEvent}`);
  }
  return { items, rest: r.rest() };
}

const cutArb = fc.tuple(fc.array(fc.nat(), { maxLength: 24 }), fc.array(fc.nat(), { maxLength: 8 }));

test("fuzz: a stream of random events reads as exactly those events, with their exact bytes, however its bytes are cut into reads", () => {
  fc.assert(
    fc.property(genStream, cutArb, (s, [random, hot]) => {
      const bytes = new Uint8Array(Buffer.from(s.text, "utf8"));
      const { items, rest } = readAll(pieces(bytes, cuts(bytes, random, hot)));
      // A last event whose blank line is a lone CR waits: the next byte could make it a CRLF.
      const waits = s.tail === "" && s.events.length > 0 && s.events.at(-1)!.raw.endsWith("\r");
      const whole = waits ? s.events.slice(0, -1) : s.events;
      assert.deepEqual(
        items.map((i) => ({ raw: i.raw, type: i.type, ...(i.type === "data" ? { content: chunkContent(i.json) } : {}) })),
        whole.map((e) => ({ raw: e.raw, ...e.expect })),
      );
      assert.equal(rest, waits ? s.events.at(-1)!.raw : s.tail);
    }),
    { numRuns: runs(4_000) },
  );
});

test("fuzz: any bytes (invalid UTF-8, stray CRs, random text) read as the same items and the same rest whatever the cuts, without throwing", () => {
  const junk = fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    genStream.chain((s) =>
      fc.tuple(fc.constant(Buffer.from(s.text, "utf8")), fc.array(fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 4 })), { maxLength: 4 })).map(([b, inserts]) => {
        // Random bytes spliced into a well-formed stream.
        let out = Buffer.from(b);
        for (const [at, bad] of inserts) {
          const i = at % (out.length + 1);
          out = Buffer.concat([out.subarray(0, i), Buffer.from(bad), out.subarray(i)]);
        }
        return new Uint8Array(out);
      }),
    ),
  );
  fc.assert(
    fc.property(junk, cutArb, (bytes, [random, hot]) => {
      const one = readAll([bytes]);
      const split = readAll(pieces(bytes, cuts(bytes, random, hot)));
      assert.deepEqual(split, one);
      for (const i of one.items) {
        assert.ok(["data", "done", "malformed", "other"].includes(i.type));
        if (i.type === "data") assert.ok(typeof i.json === "object" && i.json !== null);
      }
    }),
    { numRuns: runs(4_000) },
  );
});

test("fuzz: an event longer than the reader's limit is one malformed item after the events before it, whatever the cuts; the reader never holds much more than the limit", () => {
  // The limit is random, or within a few characters of an event's length (where a partial blank line must not count).
  const limited = genStream.chain((before) =>
    fc.tuple(
      fc.constant(before),
      before.events.length === 0
        ? fc.integer({ min: 16, max: 400 })
        : fc.oneof(fc.integer({ min: 16, max: 400 }), fc.tuple(fc.constantFrom(...before.events), fc.integer({ min: -1, max: 3 })).map(([e, d]) => Math.max(1, e.block.length + d))),
    ),
  );
  const overlong = fc
    .tuple(limited, fc.integer({ min: 4, max: 2_000 }), fc.constantFrom("x", "é", "🌍"), fc.boolean(), genStream)
    .map(([[before, limit], extra, unit, ended, after]) => {
      // A data line of more than limit + 3 characters, ended by a blank line or not, after whole events.
      const line = `data: ${unit.repeat(Math.ceil((limit + extra) / unit.length))}`;
      const head = before.events.map((e) => e.raw).join("");
      return { limit, text: head + line + (ended ? `\n\n${after.text}` : ""), before: before.events };
    });
  fc.assert(
    fc.property(overlong, cutArb, (s, [random, hot]) => {
      const bytes = new Uint8Array(Buffer.from(s.text, "utf8"));
      const { items, rest } = readAll(pieces(bytes, cuts(bytes, random, hot)), s.limit);
      // The events before the first one too long, then the error, then nothing.
      const fitting: string[] = [];
      for (const e of s.before) {
        if (e.block.length > s.limit) break;
        fitting.push(e.raw);
      }
      assert.deepEqual(items.slice(0, -1).map((i) => i.raw), fitting);
      assert.deepEqual(items.at(-1), { type: "malformed", raw: "", error: `an event longer than ${s.limit} characters; llmsup reads at most ${s.limit}` });
      assert.equal(rest, "");
    }),
    { numRuns: runs(2_000) },
  );
});

// ------------------------------------------------------------------ the relay, on a loopback HTTP server

type Response = Extract<AttemptOutcome, { kind: "response" }>;

/** An upstream answer whose body is `parts`, read as the network would hand them over. */
function upstream(parts: readonly Uint8Array[]): Response {
  let why: TransportFailure | undefined;
  const body = Readable.from(parts.map((p) => Buffer.from(p)));
  return {
    kind: "response",
    status: 200,
    headers: { "content-type": "text/event-stream" },
    body: streamBody(body),
    abort: (w) => {
      why ??= w ?? "aborted";
      body.destroy(new Error("aborted"));
    },
    abortedBy: () => why,
    evacuatedBecause: () => undefined,
    done: () => undefined,
    errorText: async () => "",
    scrub: (text) => text,
  };
}

/** Relays `parts` to a real client over loopback: what the client got, and the relay's verdict. */
async function relayOnce(url: string, cases: Map<string, (res: ServerResponse) => Promise<RelayResult>>, parts: readonly Uint8Array[]): Promise<{ status: number; text: string; result: RelayResult }> {
  const id = `/${cases.size}-${Math.random()}`;
  let result: RelayResult | undefined;
  cases.set(id, async (res) => {
    result = await relayStream(res, upstream(parts), {
      commit: () => res.writeHead(200, { "content-type": "text/event-stream" }),
      continuing: false,
      ttftLeftMs: 60_000,
      finishGraceMs: 60_000,
      startedAt: performance.now(),
    });
    return result;
  });
  const r = await fetch(`${url}${id}`);
  const text = await r.text();
  cases.delete(id);
  return { status: r.status, text, result: result! };
}

const relayEvent: fc.Arbitrary<string> = fc.oneof(
  genEvent.map((e) => e.lines.join("\n")),
  fc.constantFrom(
    'data: {"choices":[{"delta":{"role":"assistant"}}]}',
    'data: {"choices":[],"usage":{"prompt_tokens":1}}',
    'data: {"error":{"message":"boom"}}',
    'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}',
    'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}',
  ),
);

test("fuzz: the relay gives the client the same bytes and itself the same verdict however the upstream cuts its stream; nothing before the commit point, never a clean [DONE] on a broken answer", async (t) => {
  const cases = new Map<string, (res: ServerResponse) => Promise<RelayResult>>();
  const server = createServer((req, res) => {
    void cases.get(req.url ?? "")!(res).then(() => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  const stream = fc.tuple(fc.array(fc.tuple(relayEvent, eol), { maxLength: 8 }), fc.boolean()).map(([evs, lfEnd]) => evs.map(([e, end]) => e + end + (end === "\r" ? "\r" : lfEnd ? "\n" : end)).join(""));
  await fc.assert(
    fc.asyncProperty(stream, cutArb, async (text, [random, hot]) => {
      const bytes = new Uint8Array(Buffer.from(text, "utf8"));
      const whole = await relayOnce(url, cases, [bytes]);
      const split = await relayOnce(url, cases, pieces(bytes, cuts(bytes, random, hot)));
      // The time to the first token is the one thing that may differ.
      const timeless = (r: typeof whole) => ({ ...r, result: { ...r.result, ttftMs: undefined } });
      assert.deepEqual(timeless(split), timeless(whole));
      const { status, text: got, result } = whole;
      if (result.kind === "client_gone") assert.fail("the client stayed");
      if (result.kind === "failed_before_commit") return assert.deepEqual([status, got], [502, ""], "nothing reached the client");
      assert.equal(status, 200);
      const r = new SseReader();
      const items = [...r.push(got), ...r.push("\n")];
      const dones = items.filter((i) => i.type === "done").length;
      if (result.kind === "complete") {
        assert.equal(dones, 1);
        assert.equal(items.at(-1)?.type, "done", "[DONE] ends a complete answer");
      } else assert.equal(dones, 0, "a broken answer never ends as a clean [DONE]");
      assert.equal(result.content, items.map((i) => (i.type === "data" ? chunkContent(i.json) : "")).join(""), "content counts what went out");
    }),
    { numRuns: runs(300) },
  );
});
