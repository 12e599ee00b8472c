import { test } from "node:test";
import assert from "node:assert/strict";
import { CLOSED } from "../../src/router/breaker.ts";
import { admission, bestTier, type TierFacts } from "../../src/router/tier-state.ts";

const healthy = { state: "healthy" as const, reason: "all checks pass", since: 0 };
const facts = (f: Partial<TierFacts> = {}): TierFacts => ({ kind: "vllm", health: healthy, breaker: CLOSED, ...f });

test("tier state: a healthy tier with a closed breaker and no cooldown is admissible", () => {
  assert.deepEqual(admission(facts(), 0), { admissible: true });
});

test("tier state: each reason a tier is out has its own code, reason, and since/until where known", () => {
  assert.deepEqual(admission(facts({ kind: undefined }), 0), { admissible: false, code: "not_configured", why: "backend not configured" });
  assert.equal((admission(facts({ kind: "bedrock" }), 0) as { code: string }).code, "unsupported", "a kind the router does not speak");
  assert.deepEqual(admission(facts({ kind: "anthropic" }), 0), { admissible: true }, "Anthropic's Messages API is spoken");
  assert.deepEqual(admission(facts({ health: { state: "down", reason: "process exited", since: 50 } }), 100), { admissible: false, code: "backend_down", why: "backend down: process exited", since: 50 });
  const open = admission(facts({ breaker: { state: "open", since: 10, until: 31_000, openMs: 30_000, reason: "server_error: HTTP 503", misconfigured: false } }), 1_000);
  assert.deepEqual(open, { admissible: false, code: "breaker_open", why: "breaker open for 30s more (server_error: HTTP 503)", since: 10, until: 31_000 });
  const mis = admission(facts({ breaker: { state: "open", since: 10, until: 31_000, openMs: 30_000, reason: "HTTP 404: model", misconfigured: true } }), 1_000);
  assert.equal((mis as { code: string }).code, "misconfigured");
  const half = admission(facts({ breaker: { state: "half_open", since: 10, openMs: 30_000, reason: "x", misconfigured: false } }), 1_000);
  assert.equal((half as { code: string; why: string }).why, "breaker half-open: one request is checking it (x)");
  const cool = admission(facts({ cooldown: { until: 3_000, reason: "429 from the backend, Retry-After 3s" } }), 1_000);
  assert.deepEqual(cool, { admissible: false, code: "cooldown", why: "cooling off for 2s more (429 from the backend, Retry-After 3s)", until: 3_000 });
});

test("tier state: an open breaker past its interval is still out (a check must close it); an ended cooldown is not", () => {
  const open = admission(facts({ breaker: { state: "open", since: 0, until: 1_000, openMs: 1_000, reason: "x", misconfigured: false } }), 5_000);
  assert.equal(open.admissible, false);
  assert.match((open as { why: string }).why, /the next request or probe checks it/);
  assert.equal(admission(facts({ cooldown: { until: 1_000, reason: "429" } }), 1_000).admissible, true);
});

test("tier state: down beats an open breaker beats a cooldown (the most fundamental reason is given)", () => {
  const all = facts({ health: { state: "down", reason: "GPU lost", since: 0 }, breaker: { state: "open", since: 0, until: 9_000, openMs: 9_000, reason: "x", misconfigured: false }, cooldown: { until: 9_000, reason: "429" } });
  assert.equal((admission(all, 0) as { code: string }).code, "backend_down");
  assert.equal((admission({ ...all, health: healthy }, 0) as { code: string }).code, "breaker_open");
});

test("tier state: a drained backend says who drained it and since when, before any other reason (down, breaker, cooldown)", () => {
  const drained = { by: "alice", since: Date.parse("2025-01-02T03:04:05Z") };
  assert.deepEqual(admission(facts({ drained }), drained.since + 1_000), { admissible: false, code: "drained", why: "drained by alice since 2025-01-02 03:04:05 UTC", since: drained.since });
  const all = facts({ drained, health: { state: "down", reason: "GPU lost", since: 0 }, breaker: { state: "open", since: 0, until: 9_000, openMs: 9_000, reason: "x", misconfigured: false }, cooldown: { until: 9_000, reason: "429" } });
  assert.equal((admission(all, 0) as { code: string }).code, "drained");
  assert.equal((admission(facts({ drained, kind: undefined }), 0) as { code: string }).code, "not_configured");
});

test("tier state: the best tier is the first admissible one, -1 when none is", () => {
  const out = admission(facts({ kind: undefined }), 0);
  const ok = admission(facts(), 0);
  assert.equal(bestTier([ok, ok]), 0);
  assert.equal(bestTier([out, ok]), 1);
  assert.equal(bestTier([out, out]), -1);
});
