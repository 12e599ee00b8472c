/** The router's light cancellation behaves as the AbortSignal it replaces, for what the router uses of it. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Cancel } from "../../src/platform/cancel.ts";
import { ManualClock } from "../alerts/helpers.ts";
import { sleepOn } from "../../src/platform/clock.ts";

test("a cancel aborts once: listeners run in order with the first reason, a removed one does not, one added after the abort is not called", () => {
  const c = new Cancel();
  const calls: string[] = [];
  const a = () => calls.push("a");
  const b = () => calls.push("b");
  const gone = () => calls.push("removed");
  c.addEventListener("abort", a);
  c.addEventListener("abort", gone);
  c.addEventListener("abort", b, { once: true });
  c.removeEventListener("abort", gone);
  assert.equal(c.aborted, false);
  c.abort("moved off gpu0");
  c.abort("again");
  assert.deepEqual(calls, ["a", "b"]);
  assert.equal(c.reason, "moved off gpu0");
  c.addEventListener("abort", () => calls.push("late"));
  assert.deepEqual(calls, ["a", "b"]);
});

test("without a reason, the reason is the AbortError an AbortController gives", () => {
  const c = new Cancel();
  c.abort();
  const ref = new AbortController();
  ref.abort();
  assert.ok(c.reason instanceof DOMException);
  assert.equal((c.reason as DOMException).name, (ref.signal.reason as DOMException).name);
});

test("any: aborted by the first part that aborts, with its reason; at once when a part already is; it mixes with AbortSignal", () => {
  const client = new Cancel();
  const race = new AbortController();
  const both = Cancel.any(client, race.signal);
  assert.equal(both.aborted, false);
  race.abort("lost the race");
  client.abort("client gone");
  assert.equal(both.aborted, true);
  assert.equal(both.reason, "lost the race");
  assert.equal(Cancel.any(new Cancel(), client).reason, "client gone", "already aborted");
});

test("sleepOn waits on a cancel: its abort rejects the wait with the reason, and the timer is gone", async () => {
  const clock = new ManualClock(0);
  const c = new Cancel();
  const waiting = sleepOn(clock, 1_000, c);
  c.abort("client gone");
  await assert.rejects(waiting, (e: unknown) => e === "client gone");
  const done = sleepOn(clock, 1_000, new Cancel());
  clock.advance(1_000);
  await done;
});
