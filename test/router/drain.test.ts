/** A drained backend (`llmsup drain`) takes no new request: its tiers say "drained", the route serves from the next tier without an error, and undrained it is back. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startSim } from "../helpers/sim.ts";
import { backend, startRouter } from "../helpers/router.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";
import type { Drain } from "../../src/router/tier-state.ts";

const ask = { model: "llama", messages: [{ role: "user" as const, content: "hi" }], max_tokens: 4 };

test("with tier 0's backend drained, every request is answered by tier 1 with no error and tier 0 says `drained`; undrained, tier 0 serves again", async (t) => {
  const sims = await Promise.all(
    ["a", "b"].map(async () => {
      const s = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s"]);
      await waitUntil(`${s.url}/health to answer 200`, () => answers200(`${s.url}/health`));
      return s;
    }),
  );
  const drains = new Map<string, Drain>();
  const h = await startRouter(
    t,
    backend("a", "llamacpp", sims[0]!.port) + backend("b", "llamacpp", sims[1]!.port) + `[[route]]\nmodel = "llama"\ntiers = [{ backend = "a", model = "m" }, { backend = "b", model = "m" }]\n`,
    `recovery_hold = "200ms"`,
    { drained: (b) => drains.get(b) },
  );
  const tierOf = async () => (await h.client.chat.completions.create(ask).withResponse()).response.headers.get("x-llmsup-tier");
  assert.equal(await tierOf(), "0");

  drains.set("a", { by: "alice", since: Date.now() });
  h.router.model.reassess();
  const tiers = await Promise.all(Array.from({ length: 20 }, () => tierOf()));
  assert.deepEqual(new Set(tiers), new Set(["1"]), "every request went to tier 1, none failed");
  const tier0 = h.router.model.snapshot()[0]!.tiers[0]!.admission;
  assert.equal(tier0.admissible, false);
  assert.equal((tier0 as { code: string }).code, "drained");
  assert.match((tier0 as { why: string }).why, /^drained by alice since /);
  assert.equal(h.router.model.snapshot()[0]!.serving, 1);
  const fallback = h.events.find((e) => e.event === "router.route.fallback");
  assert.ok(fallback && fallback.event === "router.route.fallback" && fallback.code === "drained", "the route's move says why: drained");

  drains.delete("a");
  h.router.model.reassess();
  assert.equal(await tierOf(), "0", "undrained: new requests go to tier 0 at once");
  await waitUntil("the route back on tier 0", async () => h.router.model.snapshot()[0]!.serving === 0);
  assert.deepEqual(
    h.events.filter((e) => e.event.startsWith("router.route.")).map((e) => e.event),
    ["router.route.fallback", "router.route.recovered"],
  );
});
