import { test } from "node:test";
import assert from "node:assert/strict";
import { CLOSED, type BreakerState } from "../../src/router/breaker.ts";
import { classifyHttp, classifyTransport } from "../../src/router/classify.ts";
import { failureEffects, successEffects } from "../../src/router/outcome.ts";

const policy = { threshold: 1, openMs: 1_000, maxOpenMs: 8_000 };
const http = (status: number, body = "", retryAfter?: string) => classifyHttp({ status, body, retryAfter }, { now: 0, retryAfterMax: 60_000, defaultCooldown: 30_000, retried: false });
const half: BreakerState = { state: "half_open", since: 0, openMs: 1_000, reason: "x", misconfigured: false };

test("outcome: evidence about one request (5xx, reset, timeout, broken stream) counts against that tier only", () => {
  for (const c of [http(503), classifyTransport("connect_reset"), classifyTransport("ttft_timeout"), classifyTransport("stream_broken")]) {
    const e = failureEffects(c, CLOSED, policy, 5, "d");
    assert.equal(e.breaker.state, "open", c.class);
    assert.equal(e.backendDown, undefined, `${c.class} does not take the backend down`);
  }
});

test("outcome: a reset is a suspicion (probe the backend now), not a verdict on the backend", () => {
  const e = failureEffects(classifyTransport("connect_reset"), CLOSED, policy, 0, "ECONNRESET");
  assert.equal(e.suspect, true);
  assert.equal(e.backendDown, undefined);
  assert.equal(failureEffects(http(500), CLOSED, policy, 0, "d").suspect, false);
});

test("outcome: refused or unreachable is evidence about the backend: DOWN, and the tier's breaker is not counted", () => {
  for (const c of [classifyTransport("connect"), classifyTransport("connect_timeout")]) {
    const e = failureEffects(c, CLOSED, policy, 0, "ECONNREFUSED");
    assert.match(e.backendDown ?? "", /ECONNREFUSED/);
    assert.equal(e.breaker, CLOSED);
  }
});

test("outcome: misconfiguration trips the breaker at once and is flagged for an event", () => {
  const e = failureEffects(http(404, "model not found"), CLOSED, { ...policy, threshold: 5 }, 0, "HTTP 404");
  assert.equal(e.misconfigured, true);
  assert.ok(e.breaker.state === "open" && e.breaker.misconfigured);
});

test("outcome: 429 sets a cooldown unless waited out; a 429, a context error or a caller's 4xx on the half-open request gives the slot back", () => {
  const e = failureEffects(http(429, "", "7"), half, policy, 100, "HTTP 429");
  assert.deepEqual(e.cooldown, { ms: 7_000, reason: "429 from the backend, Retry-After 7s" });
  assert.equal(e.breaker.state, "open");
  assert.equal(e.breaker.state === "open" && e.breaker.until, 100, "released: free again at once");
  assert.equal(failureEffects(http(429, "", "2"), CLOSED, policy, 0, "HTTP 429", true).cooldown, undefined);
  for (const c of [http(400, "maximum context length is 8192 tokens"), http(422, "bad")]) {
    const r = failureEffects(c, half, policy, 100, "d");
    assert.ok(r.breaker.state === "open" && r.breaker.openMs === 1_000, `${c.class}: no doubling`);
  }
});

test("outcome: a success closes the breaker and clears a count of earlier failures", () => {
  assert.equal(successEffects(half).breaker, CLOSED);
  assert.equal(successEffects({ state: "closed", failures: 3 }).breaker, CLOSED);
  const c = CLOSED;
  assert.equal(successEffects(c).breaker, c, "nothing to change: the same state");
});
