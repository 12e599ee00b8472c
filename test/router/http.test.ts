/** The error writers of the routing socket: a code alone decides the status and the OpenAI `type` a client sees. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { WIRE_ERRORS, wireSpec, type HttpWireCode, type WireCode } from "../../src/errors/registry.ts";
import { sendError, sseError } from "../../src/router/http.ts";

/** Answers one request with `write` on a loopback server and returns what a client gets. */
async function answer(write: (res: ServerResponse) => void): Promise<{ status: number; headers: Headers; body: string }> {
  const server = createServer((_req, res) => write(res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const r = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    return { status: r.status, headers: r.headers, body: await r.text() };
  } finally {
    server.close();
  }
}

const codes = Object.keys(WIRE_ERRORS) as WireCode[];

test("every error answer has its code's HTTP status and type from the registry, in the OpenAI shape", async () => {
  for (const code of codes) {
    const spec = wireSpec(code);
    if (spec.http === undefined) continue;
    const r = await answer((res) => sendError(res, code as HttpWireCode, `what went wrong (${code})`, { "retry-after": "5" }));
    assert.equal(r.status, spec.http, `${code} status`);
    assert.equal(r.headers.get("content-type"), "application/json");
    assert.equal(r.headers.get("retry-after"), "5", "the call site's headers are kept");
    assert.deepEqual(JSON.parse(r.body), { error: { message: `what went wrong (${code})`, type: spec.type, param: null, code } });
  }
});

test("an error answer may name the field to blame and add fields, after the four OpenAI ones", async () => {
  const r = await answer((res) => sendError(res, "all_tiers_down", "every tier is out", {}, { param: "model", tried: [] }));
  assert.equal(r.status, 503);
  assert.equal(r.body, '{"error":{"message":"every tier is out","type":"service_unavailable","param":"model","code":"all_tiers_down","tried":[]}}');
});

test("a stream's error event takes its type from the registry too", () => {
  const event = sseError("stream_interrupted", "cut off");
  assert.match(event, /^data: .*\n\n$/);
  assert.deepEqual(JSON.parse(event.slice("data: ".length)), { error: { message: "cut off", type: "upstream_error", param: null, code: "stream_interrupted" } });
  assert.equal(wireSpec("stream_interrupted").http, undefined, "it has no status of its own: the stream was answered 200");
});
