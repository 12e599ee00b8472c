/** The fault gate as a pure function: which fault applies at which point of a request, with counts, seeded fractions and every fault kind. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { defaultStatusMessage, faultGate, gateLoad, type GateCounters, type GateDecision, type GatePoint } from "../../src/sim/backend/fault-gate.ts";
import { faultSchema, parseFault, type Fault } from "../../src/sim/backend/faults.ts";
import { mulberry32 } from "../../src/sim/backend/http.ts";

/** A fault as POST /_sim/fault or --fault would give it (schema defaults applied). */
function fault(input: Record<string, unknown>): Fault {
  const f = parseFault(input);
  if (!f.ok) throw new Error(f.error);
  return f.fault;
}

const NEVER_RANDOM = () => assert.fail("no random draw expected");

/** Arms `f`, then passes it through `points` in order, carrying the counters as the server does. */
function run(f: Fault, points: readonly GatePoint[], random: () => number = NEVER_RANDOM): GateDecision[] {
  let counters = faultGate(f, { at: "arm" }, {}, random).counters;
  return points.map((point) => {
    const r = faultGate(f, point, counters, random);
    counters = r.counters;
    return r.decision;
  });
}

const ADMIT: GatePoint = { at: "admit", stream: false };
const ADMIT_STREAM: GatePoint = { at: "admit", stream: true };
const times = <T>(n: number, x: T): T[] => Array.from({ length: n }, () => x);
const acts = (ds: readonly GateDecision[]) => ds.map((d) => d.act);

interface Case {
  readonly name: string;
  readonly fault: Record<string, unknown>;
  readonly point: GatePoint;
  readonly want: GateDecision;
}

/** One decision per fault kind, at the point it applies. */
const CASES: readonly Case[] = [
  { name: "no fault: a request arrives", fault: {}, point: { at: "arrive" }, want: { act: "pass" } },
  { name: "no fault: admitted", fault: {}, point: ADMIT, want: { act: "pass" } },
  { name: "no fault: answered unshaped", fault: {}, point: { at: "generate" }, want: { act: "answer", shape: { done: true } } },
  { name: "no fault: arming schedules nothing", fault: {}, point: { at: "arm" }, want: { act: "pass" } },
  { name: "hang: nothing is answered, health included", fault: { hang: true }, point: { at: "arrive" }, want: { act: "hang" } },
  { name: "hang is decided on arrival, not at admission", fault: { hang: true }, point: ADMIT, want: { act: "pass" } },
  { name: "wedge: health passes", fault: { wedge: true }, point: { at: "arrive" }, want: { act: "pass" } },
  { name: "wedge: a whole answer never starts", fault: { wedge: true }, point: ADMIT, want: { act: "wedge", streamHeaders: false } },
  { name: "wedge: a stream gets its headers only", fault: { wedge: true }, point: ADMIT_STREAM, want: { act: "wedge", streamHeaders: true } },
  { name: "wedge comes before 429 and status", fault: { wedge: true, rate_limit: {}, status: { code: 500 } }, point: ADMIT, want: { act: "wedge", streamHeaders: false } },
  { name: "429 with the default Retry-After of 1 s", fault: { rate_limit: {} }, point: ADMIT, want: { act: "rate_limit", retryAfter: 1 } },
  { name: "429 with Retry-After 7", fault: { rate_limit: { retry_after: 7 } }, point: ADMIT_STREAM, want: { act: "rate_limit", retryAfter: 7 } },
  { name: "429 without Retry-After", fault: { rate_limit: { retry_after: null } }, point: ADMIT, want: { act: "rate_limit", retryAfter: null } },
  { name: "429 comes before a status fault", fault: { rate_limit: {}, status: { code: 503 } }, point: ADMIT, want: { act: "rate_limit", retryAfter: 1 } },
  { name: "status 503 with its default message", fault: { status: { code: 503 } }, point: ADMIT, want: { act: "status", code: 503, message: "Service temporarily unavailable" } },
  { name: "status with its own message", fault: { status: { code: 418, message: "teapot" } }, point: ADMIT, want: { act: "status", code: 418, message: "teapot" } },
  { name: "status comes before out of memory", fault: { status: { code: 500 }, oom: "runtime" }, point: ADMIT, want: { act: "status", code: 500, message: "Internal server error" } },
  { name: "status is for inference only: health passes", fault: { status: { code: 500 } }, point: { at: "arrive" }, want: { act: "pass" } },
  { name: "out of memory at run time", fault: { oom: "runtime" }, point: ADMIT, want: { act: "oom" } },
  { name: "out of memory at load is not a run-time fault", fault: { oom: "load" }, point: ADMIT, want: { act: "pass" } },
  { name: "context error at generation", fault: { context_error: true }, point: { at: "generate" }, want: { act: "context_error" } },
  { name: "prefill refused: a chat ending with the assistant's message", fault: { reject_prefill: true }, point: { at: "generate", finalAssistant: true }, want: { act: "reject_prefill" } },
  { name: "prefill refusal leaves other chats alone", fault: { reject_prefill: true }, point: { at: "generate", finalAssistant: false }, want: { act: "answer", shape: { done: true } } },
  { name: "prefill refusal comes before the context error", fault: { reject_prefill: true, context_error: true }, point: { at: "generate", finalAssistant: true }, want: { act: "reject_prefill" } },
  { name: "context error is not an admission fault (embeddings pass)", fault: { context_error: true }, point: ADMIT, want: { act: "pass" } },
  { name: "slow first token", fault: { ttft_ms: 600 }, point: { at: "generate" }, want: { act: "answer", shape: { ttftMs: 600, done: true } } },
  { name: "stall after N, forever", fault: { stall_after: 3 }, point: { at: "generate" }, want: { act: "answer", shape: { stallAfter: 3, done: true } } },
  { name: "stall after N for a while", fault: { stall_after: 3, stall_ms: 250 }, point: { at: "generate" }, want: { act: "answer", shape: { stallAfter: 3, stallMs: 250, done: true } } },
  { name: "cut after N", fault: { cut_after: 4 }, point: { at: "generate" }, want: { act: "answer", shape: { cutAfter: 4, done: true } } },
  { name: "cut after 0", fault: { cut_after: 0 }, point: { at: "generate" }, want: { act: "answer", shape: { cutAfter: 0, done: true } } },
  { name: "malformed after N", fault: { malformed_after: 2 }, point: { at: "generate" }, want: { act: "answer", shape: { malformedAfter: 2, done: true } } },
  { name: "in-stream error event after N", fault: { error_after: 4 }, point: { at: "generate" }, want: { act: "answer", shape: { errorAfter: 4, done: true } } },
  { name: "no [DONE]", fault: { no_done: true }, point: { at: "generate" }, want: { act: "answer", shape: { done: false } } },
  { name: "a loop after N tokens", fault: { loop_after: 5 }, point: { at: "generate" }, want: { act: "answer", shape: { done: true, degrade: { kind: "loop", after: 5 } } } },
  { name: "an empty answer", fault: { empty: true }, point: { at: "generate" }, want: { act: "answer", shape: { done: true, degrade: { kind: "empty" } } } },
  { name: "a refusal", fault: { refuse: true }, point: { at: "generate" }, want: { act: "answer", shape: { done: true, degrade: { kind: "refuse" } } } },
  { name: "replacement characters", fault: { garbage: true }, point: { at: "generate" }, want: { act: "answer", shape: { done: true, degrade: { kind: "garbage" } } } },
  { name: "model failures do not stop admission", fault: { loop_after: 1, empty: true }, point: ADMIT_STREAM, want: { act: "pass" } },
  {
    name: "stream faults combine",
    fault: { ttft_ms: 60, cut_after: 3, malformed_after: 1, no_done: true },
    point: { at: "generate" },
    want: { act: "answer", shape: { ttftMs: 60, cutAfter: 3, malformedAfter: 1, done: false } },
  },
  { name: "stream faults do not stop admission", fault: { cut_after: 1, no_done: true }, point: ADMIT_STREAM, want: { act: "pass" } },
  { name: "crash with exit status 1 by default, at once", fault: { crash: {} }, point: { at: "arm" }, want: { act: "crash", afterMs: 0, exit: { code: 1 } } },
  { name: "crash with an exit status after a delay", fault: { crash: { exit_code: 3, after_ms: 300 } }, point: { at: "arm" }, want: { act: "crash", afterMs: 300, exit: { code: 3 } } },
  { name: "crash by a signal (it wins over an exit status)", fault: { crash: { signal: "SIGSEGV", exit_code: 3, after_ms: 200 } }, point: { at: "arm" }, want: { act: "crash", afterMs: 200, exit: { signal: "SIGSEGV" } } },
  { name: "a crash is scheduled when armed, not per request", fault: { crash: { signal: "SIGKILL" } }, point: ADMIT, want: { act: "pass" } },
  { name: "load: the server's own time", fault: {}, point: { at: "load", loadMs: 300 }, want: { act: "load", ms: 300, oom: false } },
  { name: "load: a slow load replaces it", fault: { load_ms: 1_000 }, point: { at: "load", loadMs: 300 }, want: { act: "load", ms: 1_000, oom: false } },
  { name: "load: out of memory at load", fault: { oom: "load" }, point: { at: "load", loadMs: 0 }, want: { act: "load", ms: 0, oom: true } },
  { name: "load: out of memory at run time does not fail a load", fault: { oom: "runtime" }, point: { at: "load", loadMs: 5 }, want: { act: "load", ms: 5, oom: false } },
  { name: "load: onto the CPU, no load runs out of GPU memory", fault: { on_cpu: true, oom: "load" }, point: { at: "load", loadMs: 5 }, want: { act: "load", ms: 5, oom: false } },
  { name: "on the CPU, requests are admitted as usual", fault: { on_cpu: true }, point: ADMIT, want: { act: "pass" } },
];

for (const c of CASES) {
  test(`gate: ${c.name}`, () => {
    const f = fault(c.fault);
    const armed = faultGate(f, { at: "arm" }, {}, NEVER_RANDOM).counters;
    assert.deepEqual(faultGate(f, c.point, armed, NEVER_RANDOM).decision, c.want);
  });
}

test("gate: every fault kind of the schema has a case", () => {
  const covered = new Set(CASES.flatMap((c) => Object.keys(c.fault)));
  assert.deepEqual(Object.keys(faultSchema.shape).filter((k) => !covered.has(k)), []);
});

test("gate: arming starts the counters afresh from the fault", () => {
  const cases: [Record<string, unknown>, GateCounters][] = [
    [{}, { statusLeft: undefined, rateLeft: undefined }],
    [{ status: { code: 503, count: 2 } }, { statusLeft: 2, rateLeft: undefined }],
    [{ status: { code: 503, fraction: 0.5 } }, { statusLeft: undefined, rateLeft: undefined }],
    [{ rate_limit: { count: 3 }, status: { code: 500, count: 1 } }, { statusLeft: 1, rateLeft: 3 }],
  ];
  for (const [f, want] of cases) {
    assert.deepEqual(faultGate(fault(f), { at: "arm" }, { statusLeft: 0, rateLeft: 0 }, NEVER_RANDOM).counters, want, JSON.stringify(f));
  }
});

test("gate: counted faults hit the next N admitted requests, then pass", () => {
  const cases: [string, Record<string, unknown>, number, string[]][] = [
    ["status count 2", { status: { code: 503, count: 2 } }, 4, ["status", "status", "pass", "pass"]],
    ["429 count 1", { rate_limit: { count: 1, retry_after: 7 } }, 2, ["rate_limit", "pass"]],
    ["429 without a count: all", { rate_limit: { retry_after: null } }, 3, ["rate_limit", "rate_limit", "rate_limit"]],
    ["status without count or fraction: all", { status: { code: 502 } }, 3, ["status", "status", "status"]],
    ["429 spent, then status, then normal", { rate_limit: { count: 1 }, status: { code: 503, count: 1 } }, 3, ["rate_limit", "status", "pass"]],
    ["429 spent, then out of memory", { rate_limit: { count: 2 }, oom: "runtime" }, 3, ["rate_limit", "rate_limit", "oom"]],
    ["status spent, then out of memory every time", { status: { code: 500, count: 1 }, oom: "runtime" }, 3, ["status", "oom", "oom"]],
  ];
  for (const [name, f, n, want] of cases) assert.deepEqual(acts(run(fault(f), times(n, ADMIT))), want, name);
});

test("gate: counters only move at admission; arrival, generation and loads leave them", () => {
  const f = fault({ status: { code: 503, count: 1 }, rate_limit: { count: 1 } });
  const points: GatePoint[] = [{ at: "arrive" }, { at: "generate" }, { at: "load", loadMs: 1 }, { at: "arrive" }, ADMIT, { at: "generate" }, ADMIT, ADMIT];
  assert.deepEqual(acts(run(f, points)), ["pass", "answer", "load", "pass", "rate_limit", "answer", "status", "pass"]);
});

test("gate: pure: the counters given are not changed, and the same inputs give the same result", () => {
  const f = fault({ status: { code: 503, count: 2 } });
  const counters = Object.freeze({ statusLeft: 2 });
  const a = faultGate(f, ADMIT, counters, NEVER_RANDOM);
  const b = faultGate(f, ADMIT, counters, NEVER_RANDOM);
  assert.deepEqual(a, b);
  assert.deepEqual(counters, { statusLeft: 2 });
  assert.deepEqual(a.counters, { statusLeft: 1 });
});

test("gate: a status fraction draws once per admitted request from the seeded source, and only then", () => {
  const f = fault({ status: { code: 500, fraction: 0.5 } });
  let draws = 0;
  const seeded = (seed: number) => {
    const r = mulberry32(seed);
    return () => {
      draws++;
      return r();
    };
  };
  const first = acts(run(f, times(40, ADMIT), seeded(1)));
  assert.equal(draws, 40);
  assert.deepEqual(acts(run(f, times(40, ADMIT), seeded(1))), first, "the same seed gives the same requests");
  assert.notDeepEqual(acts(run(f, times(40, ADMIT), seeded(2))), first, "another seed, other requests");
  const failed = first.filter((a) => a === "status").length;
  assert.ok(failed >= 8 && failed <= 32, `${failed} of 40`);
  assert.deepEqual(new Set(first), new Set(["status", "pass"]));

  // Exactly the draws below the fraction fail.
  const r = mulberry32(7);
  const expected = times(20, 0).map(() => (r() < 0.3 ? "status" : "pass"));
  assert.deepEqual(acts(run(fault({ status: { code: 503, fraction: 0.3 } }), times(20, ADMIT), mulberry32(7))), expected);

  draws = 0;
  run(f, [{ at: "arrive" }, { at: "generate" }, ADMIT_STREAM], seeded(3));
  assert.equal(draws, 1, "arrival and generation draw nothing");
  draws = 0;
  run(fault({ status: { code: 500, fraction: 0.5, count: 2 } }), times(3, ADMIT), seeded(3));
  assert.equal(draws, 0, "a count wins over a fraction: nothing is drawn");
  draws = 0;
  run(fault({ status: { code: 500, fraction: 0.5 }, rate_limit: {} }), times(3, ADMIT), seeded(3));
  assert.equal(draws, 0, "a 429 answers first: nothing is drawn");
});

test("gate: a fraction of 1 hits every request", () => {
  assert.deepEqual(acts(run(fault({ status: { code: 500, fraction: 1 } }), times(5, ADMIT), mulberry32(1))), times(5, "status"));
});

test("gate: default status messages", () => {
  assert.deepEqual([503, 502, 500, 504, 404, 418].map(defaultStatusMessage), [
    "Service temporarily unavailable",
    "Bad gateway",
    "Internal server error",
    "Internal server error",
    "HTTP 404",
    "HTTP 418",
  ]);
});

test("gate: gateLoad reads the load point for a model load", () => {
  assert.deepEqual(gateLoad(fault({}), 300), { ms: 300, oom: false });
  assert.deepEqual(gateLoad(fault({ load_ms: 50, oom: "load" }), 300), { ms: 50, oom: true });
});
