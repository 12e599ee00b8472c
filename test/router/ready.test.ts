/** GET /health/ready for load balancers: per route, 503 exactly when the route has no serving tier or the router is shutting down; the body says why. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readiness, readyRouteParam, type ReadyFacts } from "../../src/router/readiness.ts";
import { backend, startRouter } from "../helpers/router.ts";
import { waitUntil } from "../helpers/wait.ts";

const OK = { admissible: true } as const;
const DOWN = { admissible: false, code: "backend_down", why: "backend down: connection refused" } as const;
const facts = (f: Partial<ReadyFacts>): ReadyFacts => ({ route: "m", serving: 0, phase: "settled", tiers: [OK, OK], draining: false, ...f });

test("readiness: 200 on the first tier or a fallback, 503 with no serving tier, while starting, without routes and while shutting down", () => {
  const cases: [Partial<ReadyFacts>, number, string][] = [
    [{}, 200, "first_tier"],
    [{ serving: 1, tiers: [DOWN, OK] }, 200, "fallback"],
    [{ serving: -1, tiers: [DOWN, DOWN] }, 503, "no_serving_tier"],
    [{ serving: -1, phase: "settling", tiers: [DOWN, DOWN] }, 503, "starting"],
    [{ route: undefined, serving: -1, tiers: [] }, 503, "no_route"],
    [{ draining: true }, 503, "shutting_down"],
    [{ draining: true, serving: -1 }, 503, "shutting_down"],
  ];
  for (const [f, status, why] of cases) {
    const a = readiness(facts(f));
    assert.equal(a.status, status, JSON.stringify(f));
    assert.equal(a.body.why, why, JSON.stringify(f));
    assert.equal(a.body.ready, status === 200);
  }
  assert.deepEqual(readiness(facts({ serving: 1, tiers: [DOWN, OK] })).body, { ready: true, route: "m", tier: 1, why: "fallback", tiers: ["backend_down", "admissible"] });
  assert.ok(!JSON.stringify(readiness(facts({ serving: -1, tiers: [DOWN, DOWN] })).body).includes("connection refused"), "codes only: a backend's own words never reach the unauthenticated endpoint");
});

test("readyRouteParam: absent is the default route, a value is taken decoded and exactly", () => {
  assert.equal(readyRouteParam(""), undefined);
  assert.equal(readyRouteParam("x=1"), undefined);
  assert.equal(readyRouteParam("route=llama"), "llama");
  assert.equal(readyRouteParam("route=org%2Fmodel%3Av1"), "org/model:v1");
  assert.equal(readyRouteParam("route=*"), "*");
  assert.equal(readyRouteParam("route="), "");
});

test("/health/ready?route= answers for that route (a route whose tiers are all down is 503 while another is 200), an unknown route is 404 unknown_route, no parameter is the default route", async (t) => {
  const h = await startRouter(
    t,
    backend("a", "vllm", 9) + backend("b", "vllm", 9) + `[[route]]\nmodel = "up"\ntiers = [{ backend = "a", model = "m" }]\n[[route]]\nmodel = "org/down"\ntiers = [{ backend = "b", model = "m" }, { backend = "a", model = "x" }]\n`,
  );
  h.health.set("b", "probe", "down", "connection refused");
  h.router.reassess();
  const ready = async (q: string) => {
    const r = await h.fetch(`/health/ready${q}`);
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  };
  await waitUntil("route org/down on its fallback", async () => (await ready("?route=org%2Fdown")).body.tier === 1, { timeoutMs: 5_000, everyMs: 20 });
  assert.deepEqual(await ready("?route=org%2Fdown"), { status: 200, body: { ready: true, route: "org/down", tier: 1, why: "fallback", tiers: ["backend_down", "admissible"] } });
  assert.deepEqual(await ready("?route=up"), { status: 200, body: { ready: true, route: "up", tier: 0, why: "first_tier", tiers: ["admissible"] } });
  assert.deepEqual((await ready("")).body.route, "up", "no parameter: the default route (the first, without \"*\")");

  h.health.set("a", "probe", "down", "connection refused");
  h.router.reassess();
  await waitUntil("route up without a serving tier", async () => (await ready("?route=up")).status === 503, { timeoutMs: 5_000, everyMs: 20 });
  const down = await ready("?route=org%2Fdown");
  assert.deepEqual(down, { status: 503, body: { ready: false, route: "org/down", tier: -1, why: "no_serving_tier", tiers: ["backend_down", "backend_down"] } });
  const r503 = await h.fetch("/health/ready?route=up");
  assert.equal(r503.headers.get("retry-after"), "5");
  await r503.body?.cancel();

  const unknown = await h.fetch("/health/ready?route=nope");
  assert.equal(unknown.status, 404);
  assert.equal(((await unknown.json()) as { error: { code: string } }).error.code, "unknown_route");
  const empty = await h.fetch("/health/ready?route=");
  assert.equal(empty.status, 404, "an empty route names no route");
  await empty.body?.cancel();

  h.health.set("a", "probe", "healthy", "answers");
  h.router.reassess();
  await waitUntil("route up back", async () => (await ready("?route=up")).status === 200, { timeoutMs: 5_000, everyMs: 20 });
});
