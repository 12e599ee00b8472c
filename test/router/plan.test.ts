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
  const ctx = { floor: 8_192, models: new Set(["small"]) };
  assert.deepEqual(gateTier(ok, CLOSED, 0, "big", undefined, ctx), { go: true }, "unknown is not too small");
  assert.deepEqual(gateTier(ok, CLOSED, 0, "big", 32_768, ctx), { go: true });
  assert.equal((gateTier(ok, CLOSED, 0, "other", 8_192, ctx) as { code: string }).code, "context_too_small");
  assert.equal((gateTier(ok, CLOSED, 0, "other", 4_096, { models: new Set(["small"]) }) as { go: boolean }).go, true, "no known floor: nothing to compare with");
});

test("plan: the model that refused the prompt as too long is never tried again unless its window is known to be larger", () => {
  assert.equal((gateTier(ok, CLOSED, 0, "small", undefined, { floor: 8_192, models: new Set(["small"]) }) as { code: string }).code, "same_model");
  assert.equal((gateTier(ok, CLOSED, 0, "small", undefined, { models: new Set(["small"]) }) as { code: string }).code, "same_model");
  assert.deepEqual(gateTier(ok, CLOSED, 0, "small", 131_072, { floor: 8_192, models: new Set(["small"]) }), { go: true }, "the same model on a box with a larger window");
});
