/** Reading control requests: paths with bad escapes, drill durations out of range, and the action a request names. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { actionOf, actionText, decodePath, drillDuration, drillDurationProblem, DRILL_DEFAULT_MS, DRILL_MAX_MS } from "../../src/control/request.ts";

test("a path decodes segment by segment, escapes included", () => {
  assert.deepEqual(decodePath("/backends/gpu%20one/stop"), { ok: true, value: ["backends", "gpu one", "stop"] });
  assert.deepEqual(decodePath("//status/"), { ok: true, value: ["status"] });
});

test("a bad percent-escape is a malformed URL naming the segment, not an exception", () => {
  for (const seg of ["%E0%A4%A", "%", "%zz", "%C0"]) {
    const r = decodePath(`/backends/${seg}/stop`);
    assert.equal(r.ok, false, seg);
    assert.equal(!r.ok && r.message, `malformed URL: path segment ${JSON.stringify(seg)} has a bad percent-escape`);
  }
});

test("a drill without duration_ms lasts a minute; a whole number of milliseconds up to an hour is taken as it is", () => {
  assert.deepEqual(drillDuration(null), { ok: true, value: DRILL_DEFAULT_MS });
  assert.deepEqual(drillDuration("1"), { ok: true, value: 1 });
  assert.deepEqual(drillDuration("30000"), { ok: true, value: 30_000 });
  assert.deepEqual(drillDuration(String(DRILL_MAX_MS)), { ok: true, value: DRILL_MAX_MS });
});

test("a drill duration that is not a number, negative, zero, fractional or over an hour is refused with what was sent", () => {
  for (const raw of ["", "abc", "NaN", "-5", "0", "1.5", "1e3", " 100", "Infinity", String(DRILL_MAX_MS + 1), "99999999999999999999"]) {
    const r = drillDuration(raw);
    assert.equal(r.ok, false, raw);
    assert.ok(!r.ok && r.message.startsWith(`duration_ms=${JSON.stringify(raw)}: a drill lasts `), raw);
  }
  const over = drillDuration(String(DRILL_MAX_MS + 1));
  assert.match(over.ok ? "" : over.message, /at most an hour \(3600000 ms\)/);
});

test("the CLI's duration check refuses what the socket refuses", () => {
  assert.equal(drillDurationProblem(60_000), undefined);
  for (const ms of [0, -1, 0.5, Number.NaN, DRILL_MAX_MS + 1]) assert.ok(drillDurationProblem(ms), String(ms));
});

test("a request names its action and target as the audit log and a refusal show them", () => {
  const q = (s = "") => new URLSearchParams(s);
  assert.deepEqual(actionOf("POST", ["backends", "primary", "stop"], q()), { action: "stop", target: "primary" });
  assert.deepEqual(actionOf("POST", ["backends", "primary", "drain"], q()), { action: "drain", target: "primary" });
  assert.deepEqual(actionOf("POST", ["reload"], q()), { action: "reload" });
  assert.deepEqual(actionOf("POST", ["drills", "backend-crash"], q("route=llama&duration_ms=5")), { action: "drill backend-crash", target: "llama" });
  assert.deepEqual(actionOf("POST", ["gpus", "all", "clear"], q()), { action: "gpus clear", target: "all" });
  assert.deepEqual(actionOf("DELETE", ["something", "else"], q()), { action: "DELETE /something/else" });
  assert.equal(actionText({ action: "stop", target: "primary" }), "stop primary");
  assert.equal(actionText({ action: "reload" }), "reload");
});
