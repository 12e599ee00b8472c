/** Which upstream attempt gets which router fault: pure decisions, and the scorecard built from drill reports. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkFault, defaultDelayMs, degenerateAnswer, drawn, FAULT_DEFAULTS, faultFor, faultOptionsFrom, faultQueryFrom, loopText, markOf, type ActiveFault, type FaultKind } from "../../src/drills/faults.ts";
import { classifyHttp, classifyTransport, retryAfterMs } from "../../src/router/classify.ts";
import { DEFAULT_QUALITY, judgeAnswer, QualityWatch } from "../../src/router/quality.ts";
import { countersDelta, countersOf } from "../../src/drills/counters.ts";
import { renderScorecard, scorecardHtml, scorecardOf } from "../../src/drills/scorecard.ts";
import { renderDrill, verdictOf, type DrillReport } from "../../src/drills/report.ts";
import { gamedayScenarios, parseScenarios } from "../../src/drills/gameday.ts";
import type { Config } from "../../src/config/types.ts";

const NOW = 1_000_000;
const fault = (kind: FaultKind, over: Partial<ActiveFault> = {}): ActiveFault => ({ ...FAULT_DEFAULTS, delayMs: 2_000, id: "d1", kind, backend: "primary", model: "m", until: NOW + 10_000, ...over });

test("a fault hits only its tier's (backend, model) while in force; block hits the whole backend", () => {
  for (const kind of ["latency", "errors", "rate-limit", "stream-cut", "quality"] as const) {
    const f = fault(kind);
    assert.notEqual(faultFor(f, "primary", "m", 0, NOW).kind, "pass", kind);
    assert.equal(faultFor(f, "primary", "other-model", 0, NOW).kind, "pass", `${kind}: another model of the backend`);
    assert.equal(faultFor(f, "fallback", "m", 0, NOW).kind, "pass", `${kind}: another backend`);
    assert.equal(faultFor(f, "primary", "m", 0, f.until).kind, "pass", `${kind}: over at its end`);
  }
  const block = fault("block");
  assert.equal(faultFor(block, "primary", "other-model", 0, NOW).kind, "refuse");
  assert.equal(faultFor(undefined, "primary", "m", 0, NOW).kind, "pass");
});

test("each fault takes the shape of the real failure, and the router classifies it as that failure", () => {
  const errors = faultFor(fault("errors", { status: 502 }), "primary", "m", 0, NOW);
  assert.ok(errors.kind === "http");
  assert.equal(errors.status, 502);
  const c = classifyHttp({ status: errors.status, body: errors.body }, { now: NOW, retryAfterMax: 60_000, defaultCooldown: 30_000, retried: false });
  assert.equal(c.class, "server_error");
  assert.equal(c.action.kind, "retry_same_tier");
  assert.match(JSON.parse(errors.body).error.message, /^\[drill d1: errors\]/);

  const limited = faultFor(fault("rate-limit", { retryAfterS: 7 }), "primary", "m", 0, NOW);
  assert.ok(limited.kind === "http" && limited.retryAfterS === 7);
  assert.equal(limited.status, 429);
  const r = classifyHttp({ status: 429, body: limited.body, retryAfter: String(limited.retryAfterS) }, { now: NOW, retryAfterMax: 60_000, defaultCooldown: 30_000, retried: false });
  assert.equal(r.class, "rate_limited");
  assert.deepEqual(r.action, { kind: "cooldown", ms: 7_000 });
  assert.equal(retryAfterMs("7", NOW), 7_000);

  const block = faultFor(fault("block"), "primary", "m", 0, NOW);
  assert.ok(block.kind === "refuse");
  assert.match(block.detail, /^connection refused .*\[drill d1: block\]$/);
  assert.equal(classifyTransport("connect").blame, "backend", "a refusal says the backend is gone, as a firewall's would");
  assert.equal(checkFault(fault("block"), "primary", NOW), block.detail, "health checks are refused too");
  assert.equal(checkFault(fault("errors"), "primary", NOW), undefined, "other faults leave the checks alone");
  assert.equal(checkFault(fault("block"), "fallback", NOW), undefined);

  assert.deepEqual(faultFor(fault("latency", { delayMs: 1234 }), "primary", "m", 0, NOW), { kind: "delay", ms: 1234, mark: "[drill d1: latency]" });
  assert.deepEqual(faultFor(fault("stream-cut", { chunks: 5 }), "primary", "m", 0, NOW), { kind: "cut", chunks: 5, mark: "[drill d1: stream-cut]" });
});

test("the quality fault's answer is caught by the router's loop detector, whole and streamed", () => {
  const q = faultFor(fault("quality"), "primary", "m", 0, NOW);
  assert.ok(q.kind === "loop");
  assert.equal(q.text, loopText(markOf({ id: "d1", kind: "quality" })));
  const whole = JSON.parse(degenerateAnswer("chat", "m", q.text, false, 1)) as { choices: { message: { content: string }; finish_reason: string }[] };
  const d = judgeAnswer(DEFAULT_QUALITY, [], whole.choices[0]!.message.content, false, whole.choices[0]!.finish_reason);
  assert.equal(d?.detector, "loop");
  assert.match(d!.detail, /drill d1: quality/, "the detection quotes the drill's mark");

  const sse = degenerateAnswer("chat", "m", q.text, true, 1);
  assert.ok(sse.endsWith("data: [DONE]\n\n"));
  const watch = new QualityWatch(DEFAULT_QUALITY);
  let caught;
  for (const line of sse.split("\n\n")) {
    if (!line.startsWith("data: {")) continue;
    const chunk = JSON.parse(line.slice(6)) as { choices: { delta: { content?: string } }[] };
    caught ??= watch.feed(chunk.choices[0]!.delta.content ?? "");
  }
  assert.equal(caught?.detector, "loop");
  const completion = JSON.parse(degenerateAnswer("completion", "m", q.text, false, 1)) as { choices: { text: string }[] };
  assert.equal(completion.choices[0]!.text, q.text);
});

test("a fraction draws the same attempts for the same seed, about that share of them, and all at 1", () => {
  const draw = (seed: number, fraction: number) => Array.from({ length: 400 }, (_, n) => faultFor(fault("errors", { seed, fraction }), "primary", "m", n, NOW).kind !== "pass");
  assert.deepEqual(draw(42, 0.3), draw(42, 0.3), "deterministic");
  assert.notDeepEqual(draw(42, 0.3), draw(43, 0.3), "another seed, other attempts");
  const share = draw(42, 0.3).filter(Boolean).length / 400;
  assert.ok(share > 0.22 && share < 0.38, `share ${share}`);
  assert.ok(draw(7, 1).every(Boolean));
  for (let n = 0; n < 1000; n++) {
    const x = drawn(9, n);
    assert.ok(x >= 0 && x < 1);
  }
});

test("fault options: defaults (a latency drill's delay past the tier's ttft_timeout unless given), bounds, and the CLI's spelling", () => {
  assert.deepEqual(faultOptionsFrom(new URLSearchParams()), FAULT_DEFAULTS);
  assert.equal(faultOptionsFrom(new URLSearchParams()).delayMs, undefined, "no delay given: the drill takes the tier's");
  assert.equal(defaultDelayMs(10_000), 11_000);
  assert.equal(faultOptionsFrom(new URLSearchParams({ delay_ms: "1500" })).delayMs, 1500);
  assert.deepEqual(faultOptionsFrom(new URLSearchParams({ fraction: "0.25", status: "500", chunks: "0" })), { ...FAULT_DEFAULTS, fraction: 0.25, status: 500, chunks: 0 });
  for (const [k, v] of [["fraction", "0"], ["fraction", "1.5"], ["status", "404"], ["delay_ms", "-1"], ["chunks", "x"]] as const) {
    assert.throws(() => faultOptionsFrom(new URLSearchParams({ [k]: v })), (e: Error & { code?: string }) => e.code === "LLMSUP_E_CONTROL_BAD_REQUEST" && e.message.startsWith(k), `${k}=${v}`);
  }
  const q = faultQueryFrom({ delay: "1500ms", retryAfter: "4s", fraction: "0.5" });
  assert.ok(q instanceof URLSearchParams);
  assert.deepEqual(Object.fromEntries(q), { delay_ms: "1500", retry_after_s: "4", fraction: "0.5" });
  assert.match(String(faultQueryFrom({ fraction: "2" })), /^--fraction must be/);
  assert.match(String(faultQueryFrom({ delay: "soon" })), /^--delay expects/);
});

test("the router's counters for a route: answers by tier, unanswered, failed attempts, failovers; deltas", () => {
  const c = countersOf(
    "llama",
    [
      { labels: { route: "llama", tier: "0", backend: "primary", outcome: "ok" }, value: 5 },
      { labels: { route: "llama", tier: "0", backend: "primary", outcome: "server_error" }, value: 4 },
      { labels: { route: "llama", tier: "1", backend: "fallback", outcome: "ok" }, value: 3 },
      { labels: { route: "llama", tier: "-1", backend: "none", outcome: "all_tiers_down" }, value: 1 },
      { labels: { route: "other", tier: "0", backend: "x", outcome: "ok" }, value: 9 },
    ],
    [{ labels: { route: "llama", from: "primary", to: "fallback", reason: "server_error" }, value: 2 }],
    [
      { labels: { route: "llama", from: "primary", to: "fallback", outcome: "won" }, value: 6 },
      { labels: { route: "llama", from: "primary", to: "fallback", outcome: "lost" }, value: 1 },
    ],
  );
  assert.deepEqual(c, { primary_answers: 5, fallback_answers: 3, unanswered: 1, cache_answers: 0, failed_attempts: 4, failovers: 2, hedges_won: 6 });
  assert.deepEqual(countersDelta(c, { ...c, fallback_answers: 10, failovers: 3 }), { primary_answers: 0, fallback_answers: 7, unanswered: 0, cache_answers: 0, failed_attempts: 0, failovers: 1, hedges_won: 0 });
});

test("a scorecard: one row per scenario with its moments from injection; refused ones said; text and a self-contained page", () => {
  const report: DrillReport = {
    id: "aa",
    scenario: "errors",
    route: "llama",
    backend: "primary",
    started_at: "2026-01-01T00:00:00.000Z",
    injected_at: "2026-01-01T00:00:01.000Z",
    duration_ms: 2000,
    requests: 8,
    client_errors: 0,
    fallback_answers: 5,
    degraded_answers: 5,
    detection_ms: 10,
    failover_ms: 40,
    recovery_ms: 1500,
    ended_ms: 2000,
    worst_latency_ms: 300,
    alert: { raised: true, delivered: true },
    alert_delivered_ms: 90,
    stopped: false,
    faults_injected: 6,
    verdict: "pass",
    problems: [],
    timeline: [{ at_ms: 0, what: "failure injected <script>" }],
  };
  const card = scorecardOf({ id: "g1", host: "box", route: "llama", startedAt: 0, finishedAt: 5000, durationMs: 2000, traffic: true, stopped: false }, [report, { scenario: "backend-crash", outcome: "refused", reason: "needs a managed backend" }]);
  const [row, refused] = card.scenarios;
  assert.deepEqual(row!.detected, { ms: 10, at: "2026-01-01T00:00:01.010Z" });
  assert.deepEqual(row!.failed_over, { ms: 40, at: "2026-01-01T00:00:01.040Z" });
  assert.deepEqual(row!.back_on_primary, { ms: 3500, at: "2026-01-01T00:00:04.500Z" });
  assert.deepEqual(row!.alert, { raised: true, delivered: true, when: { ms: 90, at: "2026-01-01T00:00:01.090Z" } });
  assert.equal(row!.answers_degraded, 5);
  assert.equal(refused!.outcome, "refused");
  assert.equal(card.verdict, "fail", "a refused scenario is no pass");
  assert.deepEqual(card.summary, { passed: 1, failed: 0, refused: 1, errors: 0, skipped: 0 });
  const text = renderScorecard(card);
  assert.match(text, /errors +PASS +\+10ms +\+40ms +0 +5 +yes \+90ms +\+3\.5s/);
  assert.match(text, /backend-crash: needs a managed backend/);
  const html = scorecardHtml(card);
  assert.match(html, /^<!doctype html>/);
  assert.doesNotMatch(html, /<script|src=|href=|@import|url\(/, "no script and no external asset");
  assert.match(html, /failure injected &#60;script&#62;/);
});

test("a game day's scenarios: every router fault, then the three process drills only when tier 0 is a managed backend", () => {
  const config = (managed: boolean) => ({ routes: [{ model: "llama", tiers: [{ backend: "p", model: "m" }, { backend: "f", model: "m" }] }], backends: [{ name: "p", managed }, { name: "f", managed: true }] }) as unknown as Config;
  assert.deepEqual(gamedayScenarios(config(true), "llama"), ["latency", "errors", "rate-limit", "stream-cut", "quality", "block", "primary-outage", "backend-crash", "backend-hang"]);
  assert.deepEqual(gamedayScenarios(config(false), "llama"), ["latency", "errors", "rate-limit", "stream-cut", "quality", "block"]);
  assert.deepEqual(parseScenarios("errors, block"), ["errors", "block"]);
  assert.throws(() => parseScenarios("errors,meteor"), /no drill meteor/);
  assert.throws(() => parseScenarios(""), (e: Error & { code?: string }) => e.code === "LLMSUP_E_CONTROL_BAD_REQUEST");
});

test("a slow tier 0 whose late answers were all hedged is handled without a failover: PASS, 'hedged ×N', no alert asked for; with a client error, or no hedge won, it still fails", () => {
  const base = {
    id: "bb",
    scenario: "latency" as const,
    route: "llama",
    backend: "primary",
    started_at: "2026-01-01T00:00:00.000Z",
    injected_at: "2026-01-01T00:00:01.000Z",
    duration_ms: 10_000,
    requests: 20,
    client_errors: 0,
    fallback_answers: 12,
    degraded_answers: 12,
    detection_ms: null,
    failover_ms: null,
    recovery_ms: null,
    ended_ms: 10_000,
    worst_latency_ms: 900,
    alert: { raised: false, delivered: false },
    alert_delivered_ms: null,
    stopped: false,
    timeline: [],
    router: { primary_answers: 8, fallback_answers: 12, unanswered: 0, cache_answers: 0, failed_attempts: 0, failovers: 0, hedges_won: 12 },
  };
  const hedged = { ...base, ...verdictOf(base) };
  assert.deepEqual([hedged.verdict, hedged.problems], ["pass", []]);
  const card = scorecardOf({ id: "g2", host: "box", route: "llama", startedAt: 0, finishedAt: 12_000, durationMs: 10_000, traffic: true, stopped: false }, [hedged]);
  assert.equal(card.scenarios[0]!.hedged_answers, 12);
  assert.match(renderScorecard(card), /latency +PASS +never +hedged ×12 +0 +12 +not raised +never/);
  assert.match(renderDrill(hedged), /failover +none needed: 12 late answers hedged by the next tier, the route stayed on tier 0/);

  const withError = { ...base, client_errors: 1 };
  assert.equal(verdictOf(withError).verdict, "fail", "a client error is never absorbed");
  const noHedge = { ...base, router: { ...base.router, hedges_won: 0 } };
  assert.deepEqual(verdictOf(noHedge).problems, [
    "the failure was never detected",
    "the route never left its first tier: no failover transition (router.route.fallback or router.route.down) after the failure; clients waited up to 900ms instead: a failure held 10s may be shorter than the tier's ttft_timeout — hold it longer (--duration) or lower ttft_timeout or hedge_after",
    "no failover alert was raised",
  ]);
  assert.doesNotMatch(verdictOf({ ...noHedge, client_errors: 3 }).problems.join("\n"), /clients waited/, "with client errors it was not ridden out");
});
