/** Least privilege on the routing socket: keys that are named must exist, and /metrics is behind them unless made public. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { LlmsupError } from "../../src/errors/error.ts";
import { HealthRegistry } from "../../src/health/registry.ts";
import { realClock } from "../../src/platform/clock.ts";
import { Router } from "../../src/router/router.ts";
import { keysOfEnv, keysOfFile } from "../../src/router/api-keys.ts";
import { RouterServer } from "../../src/router/server.ts";
import { runLlmsup } from "../helpers/cli.ts";
import { backend, startRouter } from "../helpers/router.ts";
import { memoryLogger, testConfig } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";

const ROUTE = backend("a", "vllm", 9) + `[[route]]\nmodel = "m"\ntiers = [{ backend = "a", model = "m" }]\n`;

test("keysOfFile and keysOfEnv: blank lines, # comments, spaces and empty list items are not keys", () => {
  assert.deepEqual(keysOfFile("# clients\nsk-one  # the web app\n\n  sk-two\n"), ["sk-one", "sk-two"]);
  assert.deepEqual(keysOfFile("# no keys yet\n\n   \n# sk-commented-out\n"), []);
  assert.deepEqual(keysOfEnv(" sk-one, ,sk-two,"), ["sk-one", "sk-two"]);
  assert.deepEqual(keysOfEnv(" , ,"), []);
  assert.deepEqual(keysOfEnv(""), []);
});

/** A router server on loopback TCP with `routerToml`; listen() is left to the test. */
function server(t: { after(fn: () => unknown): void }, routerToml: string): RouterServer {
  const dir = tempDir(t);
  const config = testConfig(dir, `[router]\nlisten = "127.0.0.1:0"\n${routerToml}\n${ROUTE}`);
  const s = new RouterServer(config, new Router(config, { health: new HealthRegistry(config, realClock), clock: realClock, logger: memoryLogger().logger }), memoryLogger().logger);
  t.after(() => s.close());
  return s;
}

test("an api_keys_file that holds only comments and blank lines stops the router with LLMSUP_E_API_KEYS_EMPTY instead of serving everyone", async (t) => {
  const dir = tempDir(t);
  const keys = path.join(dir, "keys");
  writeFileSync(keys, "# one key per line\n\n# sk-not-yet\n   \n");
  const s = server(t, `api_keys_file = "${keys}"`);
  await assert.rejects(s.listen({ socket: null }), (e: unknown) => e instanceof LlmsupError && e.code === "LLMSUP_E_API_KEYS_EMPTY" && e.message.includes(keys) && e.exitCode === 78);
  assert.equal(s.connectionsOpen, 0);
});

test("an api_keys_env variable that is empty, spaces or only commas stops the router with LLMSUP_E_API_KEYS_EMPTY; an unset one is LLMSUP_E_SECRET_UNREADABLE", async (t) => {
  const name = `LLMSUP_TEST_KEYS_${process.pid}`;
  t.after(() => delete process.env[name]);
  for (const value of ["", "   ", " , ,"]) {
    process.env[name] = value;
    await assert.rejects(server(t, `api_keys_env = "${name}"`).listen({ socket: null }), (e: unknown) => e instanceof LlmsupError && e.code === "LLMSUP_E_API_KEYS_EMPTY" && e.message.includes(name), `value ${JSON.stringify(value)}`);
  }
  delete process.env[name];
  await assert.rejects(server(t, `api_keys_env = "${name}"`).listen({ socket: null }), (e: unknown) => e instanceof LlmsupError && e.code === "LLMSUP_E_SECRET_UNREADABLE");
  process.env[name] = "sk-one, sk-two";
  const listening = await server(t, `api_keys_env = "${name}"`).listen({ socket: null });
  assert.ok(listening.tcp!.port > 0, "a variable with keys starts");
});

test("llmsup run with an api_keys_file that holds no key exits 78 and says LLMSUP_E_API_KEYS_EMPTY", async (t) => {
  const dir = tempDir(t);
  const keys = path.join(dir, "keys");
  writeFileSync(keys, "# nothing here yet\n");
  const config = path.join(dir, "supervisor.toml");
  writeFileSync(config, `[daemon]\nstate_dir = "${dir}/state"\nlog_dir = "${dir}/log"\nrun_dir = "${dir}/run"\n\n[router]\nsocket = "${dir}/run/api.sock"\nlisten = ""\napi_keys_file = "${keys}"\n\n[gpu]\nenabled = false\n\n${ROUTE}`);
  const r = await runLlmsup(["run", "--config", config]);
  assert.equal(r.code, 78, r.stderr);
  assert.match(r.stderr, /^llmsup: cannot start: LLMSUP_E_API_KEYS_EMPTY: router\.api_keys_file .* holds no key/m);
});

test("/metrics needs an API key while the router has keys; router.metrics_public = true serves it to anyone; /health never needs one", async (t) => {
  const dir = tempDir(t);
  const keys = path.join(dir, "keys");
  writeFileSync(keys, "sk-metrics-reader\n");
  const closed = await startRouter(t, ROUTE, `api_keys_file = "${keys}"`);
  const anonymous = await closed.fetch("/metrics");
  assert.equal(anonymous.status, 401);
  assert.equal(((await anonymous.json()) as { error: { code: string } }).error.code, "invalid_api_key");
  const keyed = await closed.fetch("/metrics", { headers: { authorization: "Bearer sk-metrics-reader" } });
  assert.equal(keyed.status, 200);
  assert.match(await keyed.text(), /^# HELP llmsup_client_connections /m);
  assert.equal((await closed.fetch("/health")).status, 200, "/health stays open for load balancers and probes");

  const open = await startRouter(t, ROUTE, `api_keys_file = "${keys}"\nmetrics_public = true`);
  const r = await open.fetch("/metrics");
  assert.equal(r.status, 200);
  assert.match(await r.text(), /^# HELP llmsup_client_connections /m);
  const chat = await open.fetch("/v1/chat/completions", { method: "POST", body: "{}" });
  assert.equal(chat.status, 401, "metrics_public opens /metrics only");
  await chat.arrayBuffer();
});
