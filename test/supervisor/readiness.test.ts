/** Kind-specific readiness and the budget's reset after a sustained healthy period. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { superviseOne } from "../helpers/supervise.ts";

test("Ollama is ready only once the routed model is loaded (warm-up, then /api/ps shows it)", async (t) => {
  const { sup, events, port } = await superviseOne(t, { name: "ollama", kind: "ollama", simArgs: ["--model", "llama3.1:8b-q4", "--load-time", "700ms"], model: "llama3.1:8b-q4" });
  await sup.start("ollama");
  const starting = await events.state("ollama", "starting");
  const ready = await events.state("ollama", "ready");
  assert.ok(ready.at - starting.at >= 650, "the model load is part of the start");
  const ps = (await (await fetch(`http://127.0.0.1:${port}/api/ps`)).json()) as { models: { name: string; expires_at: string }[] };
  assert.deepEqual(ps.models.map((m) => m.name), ["llama3.1:8b-q4"]);
});

test("Ollama readiness fails for a model that is not installed, and says so", async (t) => {
  const { sup, events } = await superviseOne(t, {
    name: "ollama",
    kind: "ollama",
    simArgs: ["--model", "other:7b"],
    model: "llama3.1:8b-q4",
    process: `  restart_sec = "10s"
  restart_max_delay = "10s"
  start_limit_interval = "2m"`,
  });
  await sup.start("ollama");
  const exited = await events.state("ollama", "exited");
  assert.equal(exited.exit?.class, "start_failed");
  assert.match(exited.reason, /model llama3\.1:8b-q4 is not installed in Ollama/);
});

test("the failed-start count starts again after the backend stayed ready for stable_after", async (t) => {
  const { sup, events, port } = await superviseOne(t, { kind: "llamacpp", simArgs: ["--load-time", "0s"], process: `  restart_max_delay = "100ms"
  stable_after = "600ms"` });
  await sup.start("b");
  await events.state("b", "ready");
  await fetch(`http://127.0.0.1:${port}/_sim/fault`, { method: "POST", body: JSON.stringify({ crash: { exit_code: 1 } }) });
  await events.state("b", "ready", { nth: 2 });
  assert.equal(sup.snapshot()[0]!.budget.used, 1);
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(sup.snapshot()[0]!.budget.used, 0, "ready for longer than stable_after");
});
