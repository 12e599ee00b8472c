import { test } from "node:test";
import assert from "node:assert/strict";
import type { TierConfig } from "../../src/config/types.ts";
import { adjustForTier } from "../../src/router/adjust.ts";
import { ServedWindow } from "../../src/router/window.ts";

const tier = (t: Partial<TierConfig>): TierConfig => ({ backend: "b", model: "tier-model", drop_params: [], ...t }) as TierConfig;

test("adjust: the tier's model name replaces the caller's; llmsup's own parameters are never forwarded", () => {
  const out = adjustForTier({ model: "llama", messages: [], llmsup: { x: 1 } }, tier({}));
  assert.deepEqual(out, { model: "tier-model", messages: [] });
});

test("adjust: max_tokens is clamped to the tier's, set when the caller gave none, and max_completion_tokens keeps its name", () => {
  assert.equal(adjustForTier({ max_tokens: 900 }, tier({ max_tokens: 400 })).max_tokens, 400);
  assert.equal(adjustForTier({ max_tokens: 100 }, tier({ max_tokens: 400 })).max_tokens, 100);
  assert.equal(adjustForTier({}, tier({ max_tokens: 400 })).max_tokens, 400);
  const mct = adjustForTier({ max_completion_tokens: 900 }, tier({ max_tokens: 400 }));
  assert.deepEqual([mct.max_completion_tokens, mct.max_tokens], [400, undefined]);
  const both = adjustForTier({ max_tokens: 50, max_completion_tokens: 900 }, tier({ max_tokens: 400 }));
  assert.deepEqual([both.max_tokens, both.max_completion_tokens], [50, undefined]);
});

test("adjust: a forced temperature and dropped parameters; each tier starts from the caller's request, never another tier's", () => {
  const original = { temperature: 1.2, logprobs: true, seed: 7, max_tokens: 900 };
  const small = adjustForTier(original, tier({ temperature: 0, drop_params: ["logprobs", "seed"], max_tokens: 100 }));
  assert.deepEqual(small, { model: "tier-model", temperature: 0, max_tokens: 100 });
  assert.deepEqual(adjustForTier(original, tier({})), { ...original, model: "tier-model" }, "the original is untouched");
});

test("adjust: extra fields (a continuation's messages) win over the caller's", () => {
  assert.deepEqual(adjustForTier({ messages: [1], stream: false }, tier({}), { messages: [1, 2], stream: true }).messages, [1, 2]);
});

test("served window: counts per second, the fallback share, and forgets what is older than the window", () => {
  const w = new ServedWindow(10);
  const t0 = 1_000_000;
  w.record(t0, false);
  w.record(t0 + 200, true);
  w.record(t0 + 3_000, false);
  assert.deepEqual(w.sums(t0 + 3_500), { total: 3, fallback: 1 });
  assert.deepEqual(w.sums(t0 + 3_500, 2), { total: 1, fallback: 0 }, "the last two seconds only");
  assert.deepEqual(w.sums(t0 + 11_000), { total: 1, fallback: 0 }, "older seconds left the window");
  w.record(t0 + 10_000, true); // the same slot as t0, one lap later: the old count is replaced
  assert.deepEqual(w.sums(t0 + 10_100), { total: 2, fallback: 1 });
});
