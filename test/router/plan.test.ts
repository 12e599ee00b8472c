import { test } from "node:test";
import assert from "node:assert/strict";
import { CLOSED, type BreakerState } from "../../src/router/breaker.ts";
import { gateTier } from "../../src/router/plan.ts";
import type { Admission } from "../../src/router/tier-state.ts";

const ok: Admission = { admissible: true };
const none = { models: new Set<string>() };

test("plan: an admissible tier is tried; a tier that is down or cooling off is skipped with its reason", () => {
  assert.deepEqual(gateTier(ok, CLOSED, 0, "m", undefined, none), { go: true });
  assert.deepEqual(gateTier({ admissible: false, code: "backend_down", why: "backend down: x" }, CLOSED, 0, "m", undefined, none), { go: false, code: "backend_down", why: "backend down: x" });
  assert.equal(gateTier({ admissible: false, code: "cooldown", why: "c", until: 10 }, CLOSED, 0, "m", undefined, none).go, false);
});

test("plan: an open breaker past its interval lets exactly this request check the tier (half-open); before it, skipped", () => {
  const open: BreakerState = { state: "open", since: 0, until: 1_000, openMs: 1_000, reason: "x", misconfigured: false };
  const out: Admission = { admissible: false, code: "breaker_open", why: "open", until: 1_000 };
  assert.equal(gateTier(out, open, 999, "m", undefined, none).go, false);
  const g = gateTier(out, open, 1_000, "m", undefined, none);
  assert.ok(g.go && g.halfOpen?.state === "half_open");
  const half: BreakerState = { state: "half_open", since: 0, openMs: 1_000, reason: "x", misconfigured: false };
  assert.equal(gateTier(out, half, 2_000, "m", undefined, none).go, false);
});

test("plan: after a context-length error an unknown window is tried, a known smaller or equal one is skipped", () => {
  const ctx = { floor: 8_192, models: new Set(["a\u0000small"]) };
  assert.deepEqual(gateTier(ok, CLOSED, 0, "b\u0000big", undefined, ctx), { go: true }, "unknown is not too small");
  assert.deepEqual(gateTier(ok, CLOSED, 0, "b\u0000big", 32_768, ctx), { go: true });
  assert.equal((gateTier(ok, CLOSED, 0, "c\u0000other", 8_192, ctx) as { code: string }).code, "context_too_small");
  assert.equal(gateTier(ok, CLOSED, 0, "c\u0000other", 4_096, { models: new Set(["a\u0000small"]) }).go, true, "no known floor: nothing to compare with");
});

test("plan: a tier that refused the prompt as too long is never asked again; the same model on another box with an unknown window is", () => {
  const ctx = { models: new Set(["a\u0000m"]) };
  assert.equal((gateTier(ok, CLOSED, 0, "a\u0000m", 131_072, ctx) as { code: string }).code, "same_model");
  assert.deepEqual(gateTier(ok, CLOSED, 0, "gpu2\u0000m", undefined, ctx), { go: true });
});
