/** A reload swaps the router; what it knew of the tiers and routes that remain carries over, silently. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { HealthRegistry } from "../../src/health/registry.ts";
import { realClock } from "../../src/platform/clock.ts";
import { Router, type RouterEvent } from "../../src/router/router.ts";
import { backend } from "../helpers/router.ts";
import { memoryLogger, testConfig } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";

const routes = (second: string) =>
  `[[route]]\nmodel = "llama"\ntiers = [{ backend = "a", model = "m" }, { backend = "b", model = "m" }]\n[[route]]\nmodel = "qwen"\ntiers = [{ backend = "a", model = "q" }, { backend = "${second}", model = "q" }]\n`;

test("after a reload a route keeps its serving tier and its tiers their breakers, with no event; a route whose tiers changed starts from where the model stands, silently", async (t) => {
  const dir = tempDir(t);
  const text = (second: string) => `[router]\nsocket = "${dir}/api.sock"\n[health]\nprobe_interval = "0s"\n` + backend("a", "llamacpp", 1) + backend("b", "llamacpp", 2) + backend("c", "llamacpp", 3) + routes(second);
  const c1 = testConfig(dir, text("b"));
  const health = new HealthRegistry(c1, realClock);
  const events: RouterEvent[] = [];
  const deps = { health, clock: realClock, logger: memoryLogger().logger, onEvent: (e: RouterEvent) => events.push(e) };
  const r1 = new Router(c1, deps);
  t.after(() => r1.close());
  const llama = c1.routes[0]!;
  // Tier a/m fails enough to open its breaker: the llama route falls back to b.
  for (let i = 0; i < c1.router.breaker.failure_threshold; i++) r1.fail({ route: llama, tried: [], endpoint: "chat" } as never, 0, { class: "server_error", action: { kind: "next_tier" }, blame: "tier", suspect: false }, "HTTP 503");
  assert.equal(r1.breaker(llama.tiers[0]!).state, "open");
  assert.equal(r1.servingTier(llama), 1);
  assert.deepEqual(events.filter((e) => e.event.startsWith("router.route.")).map((e) => e.event), ["router.route.fallback"]);

  events.length = 0;
  const c2 = testConfig(dir, text("c"));
  health.reconfigure(c2);
  const r2 = new Router(c2, deps, r1);
  t.after(() => r2.close());
  assert.equal(r2.breaker(c2.routes[0]!.tiers[0]!).state, "open", "the breaker carried over");
  assert.equal(r2.servingTier(c2.routes[0]!), 1, "the route is still on its fallback");
  assert.equal(r2.servingTier(c2.routes[1]!), 0, "the changed route starts where the model stands");
  assert.deepEqual(events.filter((e) => e.event.startsWith("router.route.")), [], "a reload is no failover and no recovery");
  const snap = r2.snapshot().routes;
  assert.deepEqual(snap.map((r) => [r.model, r.phase, r.serving]), [["llama", "settled", 1], ["qwen", "settled", 0]]);
});
