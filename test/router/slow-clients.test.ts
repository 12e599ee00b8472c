/** Hostile clients: a slow body is cut off within router.client_body_timeout, and a client that hangs up is not an internal error. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { HealthRegistry } from "../../src/health/registry.ts";
import { realClock } from "../../src/platform/clock.ts";
import { Router } from "../../src/router/router.ts";
import { RouterServer } from "../../src/router/server.ts";
import { memoryLogger, testConfig } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";
import { waitUntil } from "../helpers/wait.ts";

async function startServer(t: { after(fn: () => void | Promise<void>): void }, routerToml: string) {
  const dir = tempDir(t);
  const config = testConfig(dir, `[router]\nlisten = "127.0.0.1:0"\n${routerToml}\n[[backend]]\nname = "a"\nkind = "openai"\nurl = "http://127.0.0.1:9/v1"\n[[route]]\nmodel = "m"\ntiers = [{ backend = "a", model = "m" }]\n`);
  const log = memoryLogger();
  const router = new Router(config, { health: new HealthRegistry(config, realClock), clock: realClock, logger: memoryLogger().logger });
  const server = new RouterServer(config, router, log.logger);
  const listening = await server.listen({ socket: null });
  t.after(async () => {
    await server.close();
    await router.close();
  });
  return { port: listening.tcp!.port, lines: log.lines, server };
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1", () => resolve(s));
    s.once("error", reject);
  });
}

const HEAD = (len: number) => `POST /v1/chat/completions HTTP/1.1\r\nhost: llmsup\r\ncontent-type: application/json\r\ncontent-length: ${len}\r\n\r\n`;

test("a client that sends its headers and then its body too slowly is answered 408 and cut off within router.client_body_timeout", async (t) => {
  const { port } = await startServer(t, `client_body_timeout = "300ms"`);
  const s = await open(port);
  let received = "";
  s.on("data", (d) => (received += d.toString()));
  s.on("error", () => undefined);
  const started = performance.now();
  s.write(HEAD(1000));
  // A byte every 100ms: never idle, never done.
  const drip = setInterval(() => s.writable && s.write("{"), 100);
  t.after(() => clearInterval(drip));
  await new Promise<void>((resolve) => s.once("close", () => resolve()));
  clearInterval(drip);
  const took = performance.now() - started;
  assert.ok(took < 2_000, `the connection was closed after ${Math.round(took)}ms, within the bound`);
  assert.ok(took >= 250, `not before the timeout (${Math.round(took)}ms)`);
  assert.ok(received === "" || received.startsWith("HTTP/1.1 408"), `408 or a plain close, got ${JSON.stringify(received.slice(0, 40))}`);
});

test("100 clients that hang up mid-request are logged as router.client_gone, never as router.internal_error", async (t) => {
  const { port, lines } = await startServer(t, "");
  for (let i = 0; i < 100; i++) {
    const s = await open(port);
    s.on("error", () => undefined);
    s.write(HEAD(200) + '{"model": "m", "mess');
    await new Promise((r) => setTimeout(r, 2)); // let the server see the headers, so a handler is running
    s.destroy();
  }
  await waitUntil("100 router.client_gone log lines", async () => lines().filter((l) => l.event === "router.client_gone").length === 100);
  const internal = lines().filter((l) => l.event === "router.internal_error");
  assert.deepEqual(internal, [], "no client abort is an internal error");
  assert.ok(lines().filter((l) => l.event === "router.client_gone").every((l) => l.level === "debug" || l.level === 20), "logged at debug");
});
