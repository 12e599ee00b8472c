/** The waits built on a Clock: sleepOn and within, on the manual clock and on the real one. */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { realClock, sleepOn, within } from "../../src/platform/clock.ts";
import { spawnChild } from "../../src/gpu/spawn.ts";
import { REPO_ROOT } from "../helpers/cli.ts";
import { flush, ManualClock } from "../helpers/clock.ts";

test("within: true when the promise settles (fulfilled or rejected) before the deadline, and the timer is gone", async () => {
  const clock = new ManualClock();
  assert.equal(await within(clock, Promise.resolve("x"), 1_000), true);
  assert.equal(await within(clock, Promise.reject(new Error("no")), 1_000), true);
  let resolve!: () => void;
  const later = within(clock, new Promise<void>((r) => (resolve = r)), 1_000);
  clock.advance(999);
  resolve();
  assert.equal(await later, true);
  assert.equal(clock.pendingTimers, 0);
});

test("within: false at the deadline, not before; a rejection after it is nobody's unhandled error", async () => {
  const clock = new ManualClock();
  let reject!: (e: Error) => void;
  let outcome: boolean | undefined;
  void within(clock, new Promise<void>((_, r) => (reject = r)), 1_000).then((v) => (outcome = v));
  clock.advance(999);
  await flush();
  assert.equal(outcome, undefined);
  clock.advance(1);
  await flush();
  assert.equal(outcome, false);
  assert.equal(clock.pendingTimers, 0);
  reject(new Error("too late"));
  await flush();
});

test("sleepOn: resolves when the clock passes, rejects with the abort reason", async () => {
  const clock = new ManualClock();
  let slept = false;
  void sleepOn(clock, 500).then(() => (slept = true));
  clock.advance(499);
  await flush();
  assert.equal(slept, false);
  clock.advance(1);
  await flush();
  assert.equal(slept, true);
  const abort = new AbortController();
  const sleeping = sleepOn(clock, 500, abort.signal);
  abort.abort(new Error("stopped"));
  await assert.rejects(sleeping, /stopped/);
  assert.equal(clock.pendingTimers, 0);
});

test("on the real clock, a pending within or sleepOn does not keep the process alive", async () => {
  const script = `
    import { realClock, sleepOn, within } from ${JSON.stringify(path.join(REPO_ROOT, "src/platform/clock.ts"))};
    void within(realClock, new Promise(() => {}), 60_000);
    void sleepOn(realClock, 60_000);
  `;
  const host = spawnChild(process.execPath, ["--input-type=module", "-e", script]);
  const started = Date.now();
  assert.equal((await host.exited).code, 0);
  assert.ok(Date.now() - started < 10_000, "ended without waiting out the timers");
  assert.equal(await within(realClock, Promise.resolve(), 10), true);
});
