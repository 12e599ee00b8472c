/**
 * Fuzzing the request validator: any body a client can send is either accepted
 * as one the router can read and send on, or refused with a 400 that names
 * the field, in a bounded message, under the stable code `invalid_request`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { WIRE_ERRORS } from "../../src/errors/registry.ts";
import { openaiError } from "../../src/router/http.ts";
import type { Endpoint } from "../../src/router/types.ts";
import { MAX_DEPTH, validateRequest } from "../../src/router/validate.ts";
import { ENDPOINTS, hostileBody, nearValid } from "./hostile-json.ts";
import { runs } from "./runs.ts";

const RUNS = runs(4_000);

/** Levels of objects and arrays in `v`, counted independently of the validator (stops counting past `cap`). */
function levels(v: unknown, cap: number): number {
  if (typeof v !== "object" || v === null || cap === 0) return 0;
  let deepest = 0;
  for (const x of Array.isArray(v) ? v : Object.values(v)) deepest = Math.max(deepest, levels(x, cap - 1));
  return 1 + deepest;
}

/** What the routing socket reads a body as: UTF-8 (bad bytes become U+FFFD), then JSON.parse; undefined where it answers invalid_json. */
function readAsServer(bytes: Uint8Array): Record<string, unknown> | undefined {
  try {
    const body = JSON.parse(Buffer.from(bytes).toString("utf8")) as unknown;
    return body && typeof body === "object" && !Array.isArray(body) ? (body as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const isCount = (v: unknown) => v === undefined || v === null || (Number.isInteger(v) && (v as number) >= 1);
const isFiniteOrNull = (v: unknown) => v === undefined || v === null || Number.isFinite(v);

/** The fields every later step reads have the types it expects. */
function assertReadable(endpoint: Endpoint, body: Record<string, unknown>): void {
  assert.ok(body.model === undefined || typeof body.model === "string", "model");
  assert.ok(body.stream === undefined || body.stream === null || typeof body.stream === "boolean", "stream");
  const so = body.stream_options;
  assert.ok(so === undefined || so === null || (typeof so === "object" && !Array.isArray(so)), "stream_options");
  for (const k of ["max_tokens", "max_completion_tokens", "n"]) assert.ok(isCount(body[k]), k);
  for (const k of ["temperature", "top_p"]) assert.ok(isFiniteOrNull(body[k]), k);
  if (endpoint === "chat") {
    assert.ok(Array.isArray(body.messages) && body.messages.length > 0, "messages");
    for (const m of body.messages as unknown[]) assert.ok(typeof m === "object" && m !== null && typeof (m as { role?: unknown }).role === "string", "a message with a role");
  } else {
    const x = endpoint === "completion" ? body.prompt : body.input;
    assert.ok(typeof x === "string" || (Array.isArray(x) && x.length > 0), endpoint);
  }
  assert.ok(levels(body, MAX_DEPTH + 1) <= MAX_DEPTH, "nested at most MAX_DEPTH levels");
  // What the depth limit is for: an accepted body can be serialised for a backend.
  assert.doesNotThrow(() => JSON.stringify(body));
}

for (const [endpoint] of ENDPOINTS) {
  test(`fuzz (${endpoint}): any body is accepted as readable and sendable, or refused as invalid_request (400) naming its field in a bounded message; nothing throws`, () => {
    fc.assert(
      fc.property(hostileBody(endpoint, { min: 1_000, max: 200_000 }), (bytes) => {
        const body = readAsServer(bytes);
        if (body === undefined) return;
        const v = validateRequest(endpoint, body);
        if (v.ok) return assertReadable(endpoint, body);
        assert.equal(typeof v.param, "string");
        assert.ok(v.param.length > 0 && v.param.length <= 100, `param ${JSON.stringify(v.param)}`);
        assert.ok(v.message.startsWith(`${v.param} `), `the message names the field first: ${v.message}`);
        assert.ok(v.message.length <= 400, `a bounded message (${v.message.length} characters)`);
        // The wire answer the routing socket sends for it.
        const wire = JSON.parse(JSON.stringify(openaiError("invalid_request", v.message, { param: v.param }))) as { error: Record<string, unknown> };
        assert.deepEqual(wire, { error: { message: v.message, type: "invalid_request_error", param: v.param, code: "invalid_request" } });
        assert.equal(WIRE_ERRORS.invalid_request.http, 400);
      }),
      { numRuns: RUNS },
    );
  });
}

test("fuzz: a __proto__, constructor or prototype key added to a body (and the body's own keys of those names) pollutes no prototype and does not change whether it is accepted", () => {
  const protoKeys = fc.constantFrom("__proto__", "constructor", "prototype");
  const request = fc.constantFrom(...ENDPOINTS.map(([e]) => e)).chain((e) => fc.tuple(fc.constant(e), nearValid(e)));
  const poison = fc.constantFrom('{"polluted":true}', '{"toString":1,"hasOwnProperty":null}', '{"prototype":{"polluted":true}}', "[1]", "null");
  fc.assert(
    fc.property(request, protoKeys, poison, ([endpoint, base], key, value) => {
      const before = validateRequest(endpoint, JSON.parse(base) as Record<string, unknown>);
      // The same body with the key added first (a key the body has already overrides it, as JSON.parse reads duplicates).
      const poisoned = JSON.parse(`{"${key}":${value},${base.slice(1)}`) as Record<string, unknown>;
      const after = validateRequest(endpoint, poisoned);
      assert.equal(({} as Record<string, unknown>).polluted, undefined, "Object.prototype is untouched");
      assert.equal(Object.getPrototypeOf(poisoned), Object.prototype);
      assert.equal(after.ok, before.ok, `${key}: ${value} changed the verdict on ${base}`);
    }),
    { numRuns: runs(600) },
  );
});
