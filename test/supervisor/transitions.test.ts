/** The owner's transition table: what it allows, that it refuses the rest, and that its documented table says the same. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { LlmsupError } from "../../src/errors/error.ts";
import { BACKEND_STATES } from "../../src/supervisor/states.ts";
import { checkTransition, isValidTransition, TRANSITIONS } from "../../src/supervisor/transitions.ts";

test("the table in the file header documents exactly the allowed pairs", () => {
  const text = readFileSync(new URL("../../src/supervisor/transitions.ts", import.meta.url), "utf8");
  const documented = new Set([...text.matchAll(/^ \* \| (\w+)\s*\| (\w+)\s*\| /gm)].filter((m) => m[1] !== "from").map((m) => `${m[1]} → ${m[2]}`));
  const allowed = new Set(BACKEND_STATES.flatMap((from) => BACKEND_STATES.filter((to) => isValidTransition(from, to)).map((to) => `${from} → ${to}`)));
  assert.deepEqual([...documented].sort(), [...allowed].sort());
});

test("every state has a way out, and stopping always ends in stopped or exited", () => {
  for (const s of BACKEND_STATES) assert.ok(TRANSITIONS[s].some((to) => to !== s), `${s} has a way out`);
  assert.deepEqual([...TRANSITIONS.stopping].sort(), ["exited", "stopped", "stopping"]);
});

test("a serving backend never jumps to stopped, and nothing but a start leaves the resting states for a serving one", () => {
  assert.equal(isValidTransition("ready", "stopped"), false, "a stop goes through stopping");
  assert.equal(isValidTransition("degraded", "stopped"), false);
  for (const rest of ["stopped", "exited", "backoff", "blocked", "fatal"] as const) {
    assert.equal(isValidTransition(rest, "ready"), false, `${rest} → ready`);
    assert.equal(isValidTransition(rest, "degraded"), false, `${rest} → degraded`);
    assert.equal(isValidTransition(rest, "stopping"), false, `${rest} → stopping: nothing runs to stop`);
  }
  assert.equal(isValidTransition("stopping", "ready"), false);
  assert.equal(isValidTransition("fatal", "backoff"), false, "fatal waits for a reset");
});

test("a pair not in the table is refused with a coded error naming the backend and the change", () => {
  assert.doesNotThrow(() => checkTransition("b", "starting", "ready", "readiness passed"));
  assert.throws(
    () => checkTransition("b", "backoff", "ready", "readiness passed"),
    (e: unknown) => e instanceof LlmsupError && e.code === "LLMSUP_E_SUPERVISOR_TRANSITION" && /b: refused state change backoff → ready \(readiness passed\)/.test(e.message) && e.details.from === "backoff",
  );
});
