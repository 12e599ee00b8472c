import { test } from "node:test";
import assert from "node:assert/strict";
import { classifyHttp, classifyTransport, isContextLengthError, isRefusedError, isResetError, retryAfterMs, socketErrorText } from "../../src/router/classify.ts";

const opts = { now: Date.parse("2026-12-01T10:00:00Z"), retryAfterMax: 60_000, defaultCooldown: 30_000, retried: false };

test("classify: Retry-After in seconds, fractional seconds and the HTTP-date form; nonsense is ignored", () => {
  assert.equal(retryAfterMs("7", opts.now), 7_000);
  assert.equal(retryAfterMs("1.5", opts.now), 1_500);
  assert.equal(retryAfterMs("Tue, 01 Dec 2026 10:00:05 GMT", opts.now), 5_000);
  assert.equal(retryAfterMs("Tue, 01 Dec 2026 09:59:00 GMT", opts.now), 0, "a date in the past: no wait");
  assert.equal(retryAfterMs("soon", opts.now), undefined);
  assert.equal(retryAfterMs(undefined, opts.now), undefined);
});

test("classify: a 429's cooldown is its Retry-After capped at retry_after_max, else the breaker interval", () => {
  assert.deepEqual(classifyHttp({ status: 429, body: "", retryAfter: "3600" }, opts).action, { kind: "cooldown", ms: 60_000 });
  assert.deepEqual(classifyHttp({ status: 429, body: "" }, opts).action, { kind: "cooldown", ms: 30_000 });
});

test("classify: 5xx retries once then moves on; 401/403/404-model is misconfiguration; other 4xx go back to the caller", () => {
  assert.equal(classifyHttp({ status: 503, body: "" }, opts).action.kind, "retry_same_tier");
  assert.equal(classifyHttp({ status: 503, body: "" }, { ...opts, retried: true }).action.kind, "next_tier");
  for (const s of [401, 403]) assert.equal(classifyHttp({ status: s, body: "" }, opts).class, "misconfigured");
  assert.equal(classifyHttp({ status: 404, body: '{"error":"model \\"x\\" not found"}' }, opts).class, "misconfigured");
  assert.equal(classifyHttp({ status: 404, body: "no such route" }, opts).class, "client_error");
  assert.equal(classifyHttp({ status: 422, body: "" }, opts).blame, "none");
});

test("classify: context-length errors in each server's words", () => {
  assert.ok(isContextLengthError(400, "This model's maximum context length is 8192 tokens"));
  assert.ok(isContextLengthError(400, "the request exceeds the available context size, try increasing it"));
  assert.ok(isContextLengthError(400, "prompt too long; exceeded max context length by 12 tokens"));
  assert.ok(!isContextLengthError(500, "maximum context length"));
});

test("classify: refused and unreachable blame the backend; resets and timeouts blame the request's tier, a reset is a suspicion", () => {
  for (const code of ["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENOENT"]) assert.ok(isRefusedError(code), code);
  for (const code of ["ECONNRESET", "EPIPE", "UND_ERR_SOCKET"]) assert.ok(isResetError(code) && !isRefusedError(code), code);
  assert.equal(classifyTransport("connect").blame, "backend");
  assert.equal(classifyTransport("connect_timeout").blame, "backend");
  assert.deepEqual([classifyTransport("connect_reset").blame, classifyTransport("connect_reset").suspect], ["tier", true]);
  assert.equal(classifyTransport("idle_timeout").blame, "tier");
});

test("transport errors read as words in status, events and mails, never as undici codes", () => {
  assert.equal(socketErrorText("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:8000"), "connection refused (nothing listens there)");
  assert.equal(socketErrorText("UND_ERR_SOCKET", "other side closed"), "the server closed the connection");
  assert.equal(socketErrorText("ECONNRESET", undefined), "connection reset by the server");
  assert.equal(socketErrorText("ENOTFOUND", undefined), "host name not found");
  assert.equal(socketErrorText("ERR_TLS_CERT_ALTNAME_INVALID", undefined), "TLS rejected (ERR_TLS_CERT_ALTNAME_INVALID)");
  assert.equal(socketErrorText(undefined, "fetch failed"), "fetch failed");
  assert.equal(socketErrorText("EWHATEVER", "x"), "EWHATEVER");
});
