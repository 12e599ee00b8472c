/** The routing socket's own surface: listeners, keys, limits, models, health, metrics. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { HealthRegistry } from "../../src/health/registry.ts";
import { realClock } from "../../src/platform/clock.ts";
import { Router } from "../../src/router/router.ts";
import { RouterServer } from "../../src/router/server.ts";
import { LlmsupError } from "../../src/errors/error.ts";
import { startSim } from "../helpers/sim.ts";
import { backend, startRouter } from "../helpers/router.ts";
import { memoryLogger, testConfig } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";

test("a body over router.max_body gets 413 with an OpenAI-shaped error", async (t) => {
  const h = await startRouter(t, backend("a", "vllm", 9) + `[[route]]\nmodel = "m"\ntiers = [{ backend = "a", model = "m" }]\n`, `max_body = "1kB"`);
  const r = await h.fetch("/v1/chat/completions", { method: "POST", body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "x".repeat(5_000) }] }) });
  assert.equal(r.status, 413);
  assert.deepEqual(((await r.json()) as { error: { code: string; type: string } }).error.code, "request_too_large");
  const bad = await h.fetch("/v1/chat/completions", { method: "POST", body: "{not json" });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: { code: string } }).error.code, "invalid_json");
});

test("/v1/models lists the routes; an unknown model without a default route is 404 model_not_found", async (t) => {
  const h = await startRouter(t, backend("a", "vllm", 9) + `[[route]]\nmodel = "m1"\ntiers = [{ backend = "a", model = "x" }]\n[[route]]\nmodel = "m2"\ntiers = [{ backend = "a", model = "y" }]\n`);
  const models = (await (await h.fetch("/v1/models")).json()) as { data: { id: string }[] };
  assert.deepEqual(models.data.map((m) => m.id), ["m1", "m2"]);
  const r = await h.fetch("/v1/chat/completions", { method: "POST", body: JSON.stringify({ model: "nope", messages: [{ role: "user", content: "hi" }] }) });
  assert.equal(r.status, 404);
  assert.equal(((await r.json()) as { error: { code: string } }).error.code, "model_not_found");
  assert.deepEqual(await (await h.fetch("/health")).json(), { status: "ok" });
});

test("the default route \"*\" catches other model names; /health/ready follows it; /metrics counts requests", async (t) => {
  const sim = await startSim(t, ["--kind", "vllm", "--port", "0", "--load-time", "0s", "--model", "real"]);
  const h = await startRouter(t, backend("a", "vllm", sim.port) + `[[route]]\nmodel = "*"\ntiers = [{ backend = "a", model = "real" }]\n`);
  const r = await h.client.chat.completions.create({ model: "anything", messages: [{ role: "user", content: "hi" }] });
  assert.equal(r.model, "real");
  assert.equal((await h.fetch("/health/ready")).status, 200);
  const metrics = await (await h.fetch("/metrics")).text();
  assert.match(metrics, /^llmsup_requests_total\{route="\*",tier="0",backend="a",outcome="ok"\} 1$/m);
  assert.match(metrics, /^llmsup_router_overhead_seconds_count 1$/m, "the router's own added latency is measured");
  assert.match(metrics, /^llmsup_time_to_first_token_seconds_count\{route="\*",backend="a"\} 1$/m);
});

test("listening beyond loopback is refused without API keys, and requires the key once configured", async (t) => {
  const dir = tempDir(t);
  const body = backend("a", "vllm", 9) + `[[route]]\nmodel = "m"\ntiers = [{ backend = "a", model = "m" }]\n`;
  // The config check already refuses it; the listener refuses too, whatever the config says.
  const config = testConfig(dir, `[router]\nsocket = "${dir}/api.sock"\nlisten = "127.0.0.1:0"\n${body}`);
  const router = new Router(config, { health: new HealthRegistry(config, realClock), clock: realClock, logger: memoryLogger().logger });
  const server = new RouterServer(config, router, memoryLogger().logger);
  t.after(() => server.close());
  await assert.rejects(server.listen({ listen: "0.0.0.0:0", socket: null }), (e: unknown) => e instanceof LlmsupError && e.code === "LLMSUP_E_ROUTER_EXPOSED");

  const keys = path.join(dir, "keys");
  writeFileSync(keys, "# clients\nsk-one\nsk-two\n");
  const h = await startRouter(t, body, `api_keys_file = "${keys}"`);
  const none = await h.fetch("/v1/chat/completions", { method: "POST", body: "{}" });
  assert.equal(none.status, 401);
  assert.equal(((await none.json()) as { error: { code: string } }).error.code, "invalid_api_key");
  const wrong = await h.fetch("/v1/models", { headers: { authorization: "Bearer sk-three" } });
  assert.equal(wrong.status, 401);
  const right = await h.fetch("/v1/models", { headers: { authorization: "Bearer sk-two" } });
  assert.equal(right.status, 200);
});

test("a stale socket file is replaced; a live one is not taken over", async (t) => {
  const dir = tempDir(t);
  const socket = path.join(dir, "api.sock");
  writeFileSync(socket, "");
  const config = testConfig(dir, `[router]\nsocket = "${socket}"\nlisten = ""\n` + backend("a", "vllm", 9) + `[[route]]\nmodel = "m"\ntiers = [{ backend = "a", model = "m" }]\n`);
  const make = () => new RouterServer(config, new Router(config, { health: new HealthRegistry(config, realClock), clock: realClock, logger: memoryLogger().logger }), memoryLogger().logger);
  const first = make();
  t.after(() => first.close());
  assert.deepEqual(await first.listen(), { socket });
  const second = make();
  await assert.rejects(second.listen(), (e: unknown) => e instanceof LlmsupError && e.code === "LLMSUP_E_LISTEN_FAILED" && /in use/.test(e.message));
});
