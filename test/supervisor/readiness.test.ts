/** Kind-specific readiness and the budget's reset after a sustained healthy period. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Supervisor } from "../../src/supervisor/supervisor.ts";
import { freePort } from "../helpers/sim.ts";
import { EventLog, memoryLogger, simCommand, testConfig } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";

test("Ollama is ready only once the routed model is loaded (warm-up, then /api/ps shows it)", async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  const config = testConfig(
    dir,
    `[[backend]]
name = "ollama"
kind = "ollama"
url = "http://127.0.0.1:${port}"
  [backend.process]
  command = ${simCommand(["--kind", "ollama", "--port", port, "--model", "llama3.1:8b-q4", "--load-time", "700ms"])}
[[route]]
model = "m"
tiers = [{ backend = "ollama", model = "llama3.1:8b-q4" }]
`,
  );
  const events = new EventLog();
  const sup = new Supervisor(config, { logger: memoryLogger().logger, onEvent: events.push, readinessPollMs: 50 });
  t.after(() => sup.stopAll());
  await sup.start("ollama");
  const starting = await events.state("ollama", "starting");
  const ready = await events.state("ollama", "ready");
  assert.ok(ready.at - starting.at >= 650, "the model load is part of the start");
  const ps = (await (await fetch(`http://127.0.0.1:${port}/api/ps`)).json()) as { models: { name: string; expires_at: string }[] };
  assert.deepEqual(ps.models.map((m) => m.name), ["llama3.1:8b-q4"]);
});

test("Ollama readiness fails for a model that is not installed, and says so", async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  const config = testConfig(
    dir,
    `[[backend]]
name = "ollama"
kind = "ollama"
url = "http://127.0.0.1:${port}"
  [backend.process]
  command = ${simCommand(["--kind", "ollama", "--port", port, "--model", "other:7b"])}
  restart_sec = "10s"
  restart_max_delay = "10s"
  start_limit_interval = "2m"
[[route]]
model = "m"
tiers = [{ backend = "ollama", model = "llama3.1:8b-q4" }]
`,
  );
  const events = new EventLog();
  const sup = new Supervisor(config, { logger: memoryLogger().logger, onEvent: events.push, readinessPollMs: 50 });
  t.after(() => sup.stopAll());
  await sup.start("ollama");
  const exited = await events.state("ollama", "exited");
  assert.equal(exited.exit?.class, "start_failed");
  assert.match(exited.reason, /model llama3\.1:8b-q4 is not installed in Ollama/);
});

test("the failed-start count starts again after the backend stayed ready for stable_after", async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  const config = testConfig(
    dir,
    `[[backend]]
name = "b"
kind = "llamacpp"
url = "http://127.0.0.1:${port}"
  [backend.process]
  command = ${simCommand(["--kind", "llamacpp", "--port", port, "--load-time", "0s"])}
  restart_sec = "100ms"
  restart_max_delay = "100ms"
  start_limit_interval = "1m"
  stable_after = "600ms"
[[route]]
model = "m"
tiers = [{ backend = "b", model = "m" }]
`,
  );
  const events = new EventLog();
  const sup = new Supervisor(config, { logger: memoryLogger().logger, onEvent: events.push, readinessPollMs: 50 });
  t.after(() => sup.stopAll());
  await sup.start("b");
  await events.state("b", "ready");
  await fetch(`http://127.0.0.1:${port}/_sim/fault`, { method: "POST", body: JSON.stringify({ crash: { exit_code: 1 } }) });
  await events.state("b", "ready", { nth: 2 });
  assert.equal(sup.snapshot()[0]!.budget.used, 1);
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(sup.snapshot()[0]!.budget.used, 0, "ready for longer than stable_after");
});
