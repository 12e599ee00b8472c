import { test } from "node:test";
import assert from "node:assert/strict";
import { alertKinds } from "../../src/alerts/describe.ts";
import { addToFold, decide, initialPolicyState, tick, type Fold, type PlannedMail, type PolicyConfig } from "../../src/alerts/policy.ts";
import { droppedNote, renderMail, type RenderContext } from "../../src/alerts/render.ts";
import { renderSnapshot } from "../../src/alerts/snapshot.ts";
import { QUOTE_MAX, WIDTH } from "../../src/alerts/text.ts";
import { everyKind, failover, MIN, recovery, T0 } from "./fixtures.ts";

const CFG: PolicyConfig = { coalesceWindowMs: 10 * MIN, maxPerHour: 30 };
const CTX: RenderContext = { host: "gpu-box-1", timeZone: "UTC", maxPerHour: 30 };

function mailFor(...events: Parameters<typeof decide>[1][]): PlannedMail[] {
  let state = initialPolicyState();
  const out: PlannedMail[] = [];
  for (const e of events) {
    const d = decide(state, e, e.at, CFG);
    state = d.state;
    out.push(...d.mails);
  }
  return out;
}

/** Prose lines fit a phone; quoted lines (status, logs) are cut at QUOTE_MAX; no tables. */
function assertPhoneReadable(text: string): void {
  let quoted = false;
  for (const line of text.split("\n")) {
    if (/^\S/.test(line)) quoted = /^(Status now|Last log lines)/.test(line);
    assert.ok(line.length <= QUOTE_MAX, `line too long (${line.length}): ${line}`);
    if (!quoted) assert.ok(line.length <= WIDTH || !/\S\s+\S/.test(line.trim()), `prose line wider than ${WIDTH} (${line.length}): ${line}`);
    assert.doesNotMatch(line, /\t|\|.*\|/, "no tables");
  }
}

test("the fixtures hold one event of every alert kind there is, so that every kind is rendered below", () => {
  const have = new Set(everyKind(T0).map((e) => e.kind));
  assert.deepEqual(alertKinds().filter((k) => !have.has(k)), []);
});

test("every kind renders a subject `[llmsup] <host>: <what happened>` and a body with what, where, when and action", () => {
  for (const e of everyKind(T0)) {
    const m: PlannedMail = { type: "event", subject: "s", severity: "warning", at: T0, event: e };
    const r = renderMail(m, CTX);
    assert.match(r.subject, /^\[llmsup\] gpu-box-1: \S.*\S$/, e.kind);
    assert.ok(r.subject.length < 100, `${e.kind}: subject short enough for a phone: ${r.subject}`);
    for (const label of ["What:", "Where:", "When:", "Action:"]) assert.ok(r.text.includes(label), `${e.kind} has ${label}\n${r.text}`);
    assert.match(r.text, /When: {3}2025-06-01 14:02:03 UTC/);
    assert.match(r.text, /^Where: {2}host gpu-box-1$/m);
    assertPhoneReadable(r.text);
  }
});

test("a failover mail names the route, both tiers, the reason class, the raw error, the action and the last log lines", () => {
  const [m] = mailFor(failover(T0));
  const r = renderMail(m!, { ...CTX, snapshot: renderSnapshot({ routes: [{ model: "llama-3.1-8b", tier: 1, backend: "gpu2" }], backends: [{ name: "vllm-gpu0", state: "backoff", reason: "exited (oom)" }] }) });
  assert.equal(r.subject, "[llmsup] gpu-box-1: llama-3.1-8b failed over to tier 1 (gpu2)");
  assert.match(r.text, /What: {3}Route llama-3\.1-8b moved from tier 0 \(vllm-gpu0\) to tier 1\s+\(gpu2\)\./);
  assert.match(r.text, /Why: {4}connect\n {8}connect ECONNREFUSED 127\.0\.0\.1:8000/);
  assert.match(r.text, /^ {8}GPU 0$/m);
  assert.match(r.text, /Action:\n {2}Requests go to tier 1 \(gpu2\) meanwhile and return to tier 0 by/);
  assert.match(r.text, /Status now:\n {2}Routes:\n {4}llama-3\.1-8b: tier 1 \(gpu2\)\n {2}Backends:\n {4}vllm-gpu0: backoff \(exited \(oom\)\)/);
  assert.match(r.text, /Last log lines \(vllm-gpu0\):\n {2}INFO: {5}Started server process \[4242\]\n {2}ERROR 06-01/);
});

test("a recovery mail says how long the outage lasted and what began it, with the repeats folded in", () => {
  const repeats = Array.from({ length: 14 }, (_, i) => failover(T0 + (i + 1) * 30_000));
  const mails = mailFor(failover(T0), ...repeats, recovery(T0 + 7 * MIN + 12_000));
  const r = renderMail(mails[1]!, CTX);
  assert.equal(r.subject, "[llmsup] gpu-box-1: llama-3.1-8b recovered on tier 0 (vllm-gpu0) after 7m12s");
  assert.match(r.text, /Outage: 7m12s, from 14:02:03 to 14:09:15\n {8}began: llama-3\.1-8b failed over to tier 1 \(gpu2\)/);
  assert.match(r.text, /Why: {4}connect\n {8}connect ECONNREFUSED/, "the cause of the outage");
  assert.match(r.text, /Also:\n {2}and 14 more failovers between 14:02:33 and 14:09:03:\n {2}\(6 earlier not listed\)\n {2}14:05:33 llama-3\.1-8b failed over/);
  assertPhoneReadable(r.text);
});

test("action lines: reset after a spent restart budget; GPU cooling with automatic restore", () => {
  const kinds = everyKind(T0);
  const fatal = renderMail({ type: "event", subject: "backend:vllm-gpu0", severity: "critical", at: T0, event: kinds.find((e) => e.kind === "backend_fatal")! }, CTX);
  assert.equal(fatal.subject, "[llmsup] gpu-box-1: vllm-gpu0 FATAL: restart budget spent");
  assert.match(fatal.text.replace(/\n {2}/g, " "), /Restart budget spent: run `llmsup reset vllm-gpu0` after fixing the cause \(it ran out of GPU memory/);
  const gpu = renderMail({ type: "event", subject: "gpu:0:thermal", severity: "critical", at: T0, event: kinds.find((e) => e.kind === "gpu_fault")! }, CTX);
  assert.equal(gpu.subject, "[llmsup] gpu-box-1: GPU 0: thermal, tiers DOWN");
  assert.match(gpu.text.replace(/\n {2}/g, " "), /check GPU 0 cooling; tiers on GPU 0 are down and are restored automatically when the fault clears\./);
});

test("a flap summary (as an older llmsup folded flaps) counts the flaps, gives their span and where things stand now", () => {
  let fold: Fold | undefined;
  for (let i = 1; i < 20; i++) {
    fold = addToFold(fold, failover(T0 + i * 3000), true);
    fold = addToFold(fold, recovery(T0 + i * 3000 + 1500), true, 1500);
  }
  const r = renderMail({ type: "summary", subject: "route:llama-3.1-8b", severity: "warning", at: T0 + 11 * MIN, fold, current: { bad: false, state: "ok", latest: recovery(T0 + 19 * 3000 + 1500) } }, CTX);
  assert.equal(r.subject, "[llmsup] gpu-box-1: llama-3.1-8b flapped 19 times, now ok");
  assert.match(r.text, /Events:\n {2}19 failovers and 19 recoveries between 14:02:06 and 14:03:01; 19\n {2}outages lasting 1\.5s:/);
});

test("a summary of a repeated notice says what repeated", () => {
  const started = (at: number) => ({ kind: "daemon_started" as const, at, version: "0.1.0", pid: 1, config: "/etc/llmsup/supervisor.toml" });
  let state = initialPolicyState();
  for (const e of [started(T0), started(T0 + MIN), started(T0 + 2 * MIN)]) state = decide(state, e, e.at, CFG).state;
  const d = tick(state, T0 + 10 * MIN, CFG);
  assert.equal(d.mails.length, 1);
  const r = renderMail(d.mails[0]!, CTX);
  assert.equal(r.subject, "[llmsup] gpu-box-1: llmsup: 2 more starts, now started");
  assert.match(r.text, /Events:\n {2}2 starts between 14:03:03 and 14:04:03:/);
});

test("mails held by the rate cap are summarised, with the cap named", () => {
  const cfg = { ...CFG, maxPerHour: 1 };
  let state = initialPolicyState();
  for (const e of [failover(T0, "a"), failover(T0 + 1000, "b"), failover(T0 + 2000, "c")]) state = decide(state, e, e.at, cfg).state;
  const r = renderMail(tick(state, T0 + 61 * MIN, cfg).mails[0]!, CTX);
  assert.equal(r.subject, "[llmsup] gpu-box-1: 2 alerts held back by the rate cap");
  assert.match(r.text, /Held back by the rate cap \(max_per_hour = 30\):\n {2}2 mails about 2 failovers between 14:02:04 and 14:02:05:\n {2}14:02:04 b failed over/);
});

test("a text snapshot is quoted as given; long log lines are cut, control characters removed", () => {
  const e = { ...failover(T0), lastLines: [`x${"y".repeat(400)}`, "bell\u0007 and ansi \u001b[31mred"] };
  const r = renderMail({ type: "event", subject: "s", severity: "warning", at: T0, event: e }, { ...CTX, snapshot: renderSnapshot("\nROUTE  TIER\nllama  2\n\n") });
  assert.match(r.text, /Status now:\n {2}ROUTE {2}TIER\n {2}llama {2}2\n\n/);
  const longLine = r.text.split("\n").find((l) => l.startsWith("  xyyy"))!;
  assert.equal(longLine.length, 160);
  assert.ok(longLine.endsWith("..."));
  assert.match(r.text, /bell and ansi \[31mred/);
});

test("the outbox drop note says how many and when", () => {
  assert.equal(
    droppedNote(3, T0, T0 + MIN, 1000, "UTC"),
    "NOTE: 3 older alerts were dropped from the outbox between 14:02:03 and\n14:03:03 because mail could not be delivered and the outbox holds at\nmost 1000 (outbox_max).",
  );
});
