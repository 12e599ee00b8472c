import { test } from "node:test";
import assert from "node:assert/strict";
import { createLogger, REDACTED } from "../../src/log/logger.ts";

function capture(level: "info" | "debug" = "info") {
  const lines: string[] = [];
  const log = createLogger({ level, destination: { write: (s: string) => void lines.push(s) } });
  return { log, lines: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>), raw: () => lines.join("") };
}

test("passwords, API keys and authorization headers never reach a log line", () => {
  const c = capture();
  c.log.info(
    {
      event: "smtp.connect",
      password: "pw-top",
      smtp: { auth: { user: "ops", pass: "pw-nested" } },
      req: { headers: { authorization: "Bearer tok-header", "x-api-key": "key-header", "content-type": "application/json" } },
      backend: { api_key: "sk-backend", apiKey: "sk-camel" },
      deep: { a: { b: { c: { token: "tok-deep" } } } },
    },
    "connecting",
  );
  const raw = c.raw();
  for (const secret of ["pw-top", "pw-nested", "tok-header", "key-header", "sk-backend", "sk-camel", "tok-deep"]) {
    assert.ok(!raw.includes(secret), `${secret} leaked: ${raw}`);
  }
  const [line] = c.lines();
  assert.equal(line?.password, REDACTED);
  assert.deepEqual((line?.smtp as { auth: unknown }).auth, { user: "ops", pass: REDACTED });
  assert.equal((line?.req as { headers: Record<string, string> }).headers["content-type"], "application/json");
});

test("lines are JSON with a level name, an ISO time and the event name", () => {
  const c = capture();
  c.log.warn({ event: "backend.state", backend: "vllm-gpu0" }, "state changed");
  const [line] = c.lines();
  assert.equal(line?.level, "warn");
  assert.equal(line?.event, "backend.state");
  assert.equal(line?.name, "llmsup");
  assert.match(String(line?.time), /^\d{4}-\d\d-\d\dT/);
});

test("the level filters lines", () => {
  const c = capture("info");
  c.log.debug({ event: "x" }, "hidden");
  c.log.info({ event: "y" }, "shown");
  assert.deepEqual(c.lines().map((l) => l.event), ["y"]);
});
