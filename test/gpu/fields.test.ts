/** Choosing field names: families switch together, unknown fields are dropped, required ones are not. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { afterRejection, GPU_CANDIDATES, initialSelection, queryArgument, REMAP_CANDIDATES } from "../../src/gpu/fields.ts";

test("the first query asks for the newest names of every field", () => {
  const names = initialSelection(GPU_CANDIDATES).map((f) => f.name);
  assert.equal(names[0], "index");
  assert.ok(names.includes("clocks_event_reasons.hw_power_brake_slowdown"));
  assert.ok(names.includes("gpu_recovery_action"));
  assert.ok(!names.some((n) => n.startsWith("clocks_throttle_reasons")));
  assert.match(queryArgument("--query-gpu", initialSelection(GPU_CANDIDATES)), /^--query-gpu=index,uuid,name,pci\.bus_id,/);
});

test("one rejected clocks_event_reasons field moves the whole family to clocks_throttle_reasons", () => {
  const next = afterRejection(GPU_CANDIDATES, initialSelection(GPU_CANDIDATES), "clocks_event_reasons.active");
  assert.ok(next.ok);
  const reasons = next.selection.filter((f) => f.name.startsWith("clocks_"));
  assert.equal(reasons.length, 6);
  assert.ok(reasons.every((f) => f.name.startsWith("clocks_throttle_reasons.")), JSON.stringify(reasons));
  assert.equal(next.replaced.length, 6);
  assert.deepEqual(next.dropped, []);
  // Every other field is untouched.
  assert.equal(next.selection.length, GPU_CANDIDATES.length);
});

test("a field with no older name is dropped; the family is dropped when its old names fail too", () => {
  const first = afterRejection(GPU_CANDIDATES, initialSelection(GPU_CANDIDATES), "gpu_recovery_action");
  assert.ok(first.ok);
  assert.deepEqual(first.dropped, ["gpu_recovery_action"]);
  assert.equal(first.selection.length, GPU_CANDIDATES.length - 1);

  const old = afterRejection(GPU_CANDIDATES, first.selection, "clocks_event_reasons.sw_power_cap");
  assert.ok(old.ok);
  const gone = afterRejection(GPU_CANDIDATES, old.selection, "clocks_throttle_reasons.hw_slowdown");
  assert.ok(gone.ok);
  assert.equal(gone.dropped.length, 6);
  assert.ok(!gone.selection.some((f) => f.name.startsWith("clocks_")));
});

test("a required field cannot be dropped, and a name never asked for is an error", () => {
  const idx = afterRejection(GPU_CANDIDATES, initialSelection(GPU_CANDIDATES), "index");
  assert.ok(!idx.ok);
  assert.match(idx.reason, /cannot do without/);
  const uuid = afterRejection(REMAP_CANDIDATES, initialSelection(REMAP_CANDIDATES), "gpu_uuid");
  assert.ok(!uuid.ok);
  const stranger = afterRejection(GPU_CANDIDATES, initialSelection(GPU_CANDIDATES), "fan.speed");
  assert.ok(!stranger.ok);
  assert.match(stranger.reason, /not asked for/);
});
