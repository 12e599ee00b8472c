/** Never lie upward: an upstream that echoes the API key it was sent never gets it past llmsup, to a client, a log line, an event or status. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import path from "node:path";
import { Agent, fetch as undiciFetch } from "undici";
import { HealthRegistry } from "../../src/health/registry.ts";
import { realClock } from "../../src/platform/clock.ts";
import { Router, type RouterEvent } from "../../src/router/router.ts";
import { RouterServer } from "../../src/router/server.ts";
import { REDACTED, scrub } from "../../src/router/scrub.ts";
import { memoryLogger, testConfig } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";

const KEY = "sk-llmsup-test-4f9c2b7e1d8a6c3b5e0f9a2d";

test("scrub: our secrets, their ≥ 8-character head or tail, and well-known key shapes become [redacted]", () => {
  assert.equal(scrub(`Incorrect API key provided: ${KEY}.`, [KEY]), `Incorrect API key provided: ${REDACTED}.`);
  assert.equal(scrub(`key ${KEY.slice(0, 12)}... rejected`, [KEY]), `key ${REDACTED}... rejected`, "a truncated key: its head is redacted");
  assert.equal(scrub(`key ...${KEY.slice(-10)} rejected`, [KEY]), `key ...${REDACTED} rejected`, "a masked key: its tail is redacted");
  assert.equal(scrub("plain-secret-1 and plain-secret-1", ["plain-secret-1"]), `${REDACTED} and ${REDACTED}`);
  assert.equal(scrub("Authorization: Bearer abc.DEF-123", []), `Authorization: Bearer ${REDACTED}`);
  assert.equal(scrub("not ours: sk-ABCDEFGHIJKLMNOPQRSTUV", []), `not ours: ${REDACTED}`);
  assert.equal(scrub('GET /v1?api_key=hunter2&x=1 {"api-key": "hunter3"}', []), `GET /v1?api_key=${REDACTED}&x=1 {"api-key": "${REDACTED}"}`);
  assert.equal(scrub("model not found: llama", [KEY]), "model not found: llama", "ordinary text is left alone");
  assert.equal(scrub("sk-abc...xyz is your key hint", [KEY]), "sk-abc...xyz is your key hint", "fragments under 8 characters are left");
});

test("an upstream that echoes the Authorization header in its 401 body: the client's 503, the router's events and log lines, snapshot() and unavailable() never contain the key", async (t) => {
  const upstream = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const auth = req.headers.authorization ?? "";
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: `Invalid credentials: header was '${auth}', key ${auth.replace(/^Bearer /, "").slice(0, 14)}…` } }));
    });
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", () => r()));
  t.after(() => new Promise<void>((r) => upstream.close(() => r())));
  const port = (upstream.address() as { port: number }).port;

  const env = `LLMSUP_TEST_SCRUB_KEY_${process.pid}`;
  process.env[env] = KEY;
  t.after(() => delete process.env[env]);
  const dir = tempDir(t);
  const socket = path.join(dir, "api.sock");
  const config = testConfig(
    dir,
    `[router]\nsocket = "${socket}"\nlisten = ""\n` +
      `[[backend]]\nname = "cloud"\nkind = "openai"\nurl = "http://127.0.0.1:${port}/v1"\napi_key_env = "${env}"\n` +
      `[[route]]\nmodel = "gpt"\ntiers = [{ backend = "cloud", model = "m" }]\n`,
  );
  const routerLog = memoryLogger();
  const serverLog = memoryLogger();
  const events: RouterEvent[] = [];
  const router = new Router(config, { health: new HealthRegistry(config, realClock), clock: realClock, logger: routerLog.logger, onEvent: (e) => events.push(e) });
  const server = new RouterServer(config, router, serverLog.logger);
  await server.listen();
  const agent = new Agent({ connect: { socketPath: socket } });
  t.after(async () => {
    await server.close();
    await router.close();
    await agent.close();
  });

  const bodies: string[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await undiciFetch("http://llmsup/v1/chat/completions", {
      method: "POST",
      dispatcher: agent,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt", messages: [{ role: "user", content: "hi" }], max_tokens: 4 }),
    });
    bodies.push(`${res.status} ${await res.text()}`);
  }
  assert.ok(bodies.every((b) => !b.startsWith("200")), `the upstream refused every request: ${bodies.join("\n")}`);
  assert.ok(bodies.some((b) => b.includes(REDACTED)), `the client sees that something was redacted: ${bodies[0]}`);

  const tier = config.routes[0]!.tiers[0]!;
  const surfaces: Record<string, string> = {
    "client bodies": bodies.join("\n"),
    "router events": JSON.stringify(events),
    "router log": JSON.stringify(routerLog.lines()),
    "server log": JSON.stringify(serverLog.lines()),
    "router.snapshot()": JSON.stringify(router.snapshot()),
    "router.unavailable()": JSON.stringify(router.unavailable(tier) ?? ""),
    "router.breaker()": JSON.stringify(router.breaker(tier)),
  };
  assert.ok(surfaces["router events"]!.includes("401"), "the events do report the 401");
  for (const [where, text] of Object.entries(surfaces)) {
    for (const piece of [KEY, KEY.slice(0, 10), KEY.slice(-10)]) assert.ok(!text.includes(piece), `${where} contain ${JSON.stringify(piece)}:\n${text}`);
  }
});
