/** Liveness rounds on a serving backend, on a manual clock: what is news while it is already degraded. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fakeSupervisor } from "../helpers/fake-process.ts";

const ROUND = 5_000;

test("already degraded: the same trouble is no new event; a wedge on top of it is one, and only one", async (t) => {
  const { clock, prober, path, serve, events, spawner } = fakeSupervisor(t, { health: `  deep_interval = "5s"\n  wedge_failures = 2\n  restart_on_wedge = false` });
  await serve();
  prober.deepResult = { ok: true, latencyMs: 5 };
  prober.shallowResult = { ok: true, latencyMs: 1_500 };
  await clock.run(3 * ROUND);
  assert.deepEqual(path(), ["starting", "ready", "degraded"], "slow three rounds running: one event");
  assert.match(events.states("b")[2]!.reason, /^health probe slow: 1500ms > 1000ms$/);
  prober.deepResult = { ok: false, latencyMs: 30_000, detail: "no answer within 30000ms" };
  await clock.run(6 * ROUND);
  assert.deepEqual(path(), ["starting", "ready", "degraded", "degraded"], "the wedge is news once, not once per round");
  assert.match(events.states("b")[3]!.reason, /^wedged: 2 consecutive 1-token completions failed/);
  prober.deepResult = { ok: true, latencyMs: 5 };
  prober.shallowResult = { ok: true, latencyMs: 3 };
  await clock.run(ROUND);
  assert.deepEqual(path(), ["starting", "ready", "degraded", "degraded", "ready"]);
  assert.equal(spawner.children.length, 1, "restart_on_wedge = false: the same process throughout");
});

test("a wedge with restart_on_wedge: stopping, exited (class wedged, counted), a fresh process", async (t) => {
  const { clock, prober, path, serve, events, spawner, owner } = fakeSupervisor(t, { health: `  deep_interval = "5s"\n  wedge_failures = 2` });
  await serve();
  prober.deepResult = { ok: false, latencyMs: 30_000, detail: "no answer within 30000ms" };
  await clock.run(2 * ROUND);
  assert.deepEqual(path(), ["starting", "ready", "stopping", "exited", "backoff"]);
  assert.equal(events.states("b")[3]!.exit?.class, "wedged");
  assert.deepEqual(spawner.children[0]!.signals, ["SIGTERM"]);
  prober.deepResult = { ok: true, latencyMs: 5 };
  await clock.run(1_000);
  assert.deepEqual(path().slice(5), ["starting", "ready"]);
  assert.equal(spawner.children.length, 2);
  assert.deepEqual(owner.snapshot().budget, { used: 1, burst: 5 });
});
