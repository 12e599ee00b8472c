/** Active probes of remote backends, and the hold while a tier is on its way back. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";
import { HealthRegistry } from "../../src/health/registry.ts";
import { RemoteProber, probeUrl } from "../../src/health/remote.ts";
import { realClock } from "../../src/platform/clock.ts";
import { memoryLogger, testConfig } from "../helpers/supervise.ts";
import { backend, startRouter } from "../helpers/router.ts";
import { tempDir } from "../helpers/tmp.ts";
import { startSim } from "../helpers/sim.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";

test("a remote backend goes DOWN after failures_to_down failed probes, DEGRADED when slow, HEALTHY again when it answers", async (t) => {
  let mode: "ok" | "fail" | "slow" = "ok";
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url} ${req.headers.authorization ?? ""}`);
    if (mode === "fail") return void res.writeHead(500).end();
    if (mode === "slow") return void setTimeout(() => res.end("{}"), 900);
    res.end('{"data":[]}');
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  process.env.TEST_REMOTE_KEY = "sk-remote";
  const config = testConfig(
    tempDir(t),
    `[[backend]]\nname = "gpu2"\nkind = "openai"\nurl = "http://127.0.0.1:${port}/v1"\napi_key_env = "TEST_REMOTE_KEY"\n  [backend.health]\n  interval = "100ms"\n  timeout = "2s"\n  failures_to_down = 2\n  degraded_latency = "450ms"\n[[route]]\nmodel = "m"\ntiers = [{ backend = "gpu2", model = "m" }]\n`,
  );
  assert.equal(probeUrl(config.backends[0]!), `http://127.0.0.1:${port}/v1/models`);
  const health = new HealthRegistry(config, realClock);
  const prober = new RemoteProber(config, health, realClock, memoryLogger().logger);
  // The prober first (it would keep probing over keep-alive connections), then the server and its connections.
  t.after(() => {
    prober.stop();
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  });
  prober.start();
  const until = async (state: string) => {
    const deadline = Date.now() + 5_000;
    while (health.get("gpu2").state !== state && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(health.get("gpu2").state, state, health.get("gpu2").reason);
  };
  // The first answers are fast: healthy once probed (a loaded machine may take longer than one interval to ask).
  for (const deadline = Date.now() + 5_000; seen.length < 2 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
  await until("healthy");
  assert.equal(seen[0], "GET /v1/models Bearer sk-remote", "probed with a cheap GET and the API key, never a completion");
  mode = "fail";
  await until("down");
  assert.match(health.get("gpu2").reason, /2 probes failed: probe answered 500/);
  mode = "slow";
  await until("degraded");
  assert.match(health.get("gpu2").reason, /probe took \d+ms \(> 450ms\)/);
  mode = "ok";
  await until("healthy");
  assert.ok(seen.every((s) => s.startsWith("GET /v1/models")));
});

test("queue_timeout: with every tier down but one restarting, a request waits for it instead of failing", async (t) => {
  const sim = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s"]);
  await waitUntil(`${sim.url}/health to answer 200`, () => answers200(`${sim.url}/health`));
  const h = await startRouter(t, backend("a", "llamacpp", sim.port) + `[[route]]\nmodel = "m"\ntiers = [{ backend = "a", model = "m" }]\n`, `queue_timeout = "3s"`);
  h.health.set("a", "process", "down", "process starting");
  h.health.setRecovering("a", true);
  setTimeout(() => {
    h.health.setRecovering("a", false);
    h.health.set("a", "process", "healthy", "");
  }, 400);
  const t0 = Date.now();
  const r = await h.client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hold on" }] });
  assert.ok(r.choices[0]!.message.content);
  assert.ok(Date.now() - t0 >= 350, "it waited for the backend to come back");
  // Nothing on its way back: no waiting.
  h.health.set("a", "process", "down", "stopped");
  const t1 = Date.now();
  const down = await h.fetch("/v1/chat/completions", { method: "POST", body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }) });
  assert.equal(down.status, 503);
  assert.ok(Date.now() - t1 < 1_000);
});
