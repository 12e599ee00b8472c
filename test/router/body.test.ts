/** The dispatcher's answer (src/router/body.ts DispatchedAnswer) driven as undici drives a handler: reading whole or chunk by chunk, backpressure, failures and aborts. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { DispatchedAnswer } from "../../src/router/body.ts";

/** A controller as undici hands one to a handler, recording what the handler asked of it. */
function controller() {
  const calls: string[] = [];
  return { calls, abort: (e: Error) => void calls.push(`abort:${e.message}`), pause: () => void calls.push("pause"), resume: () => void calls.push("resume") };
}

function started() {
  let status = 0;
  const failures: Error[] = [];
  const a = new DispatchedAnswer((x) => (status = x.status), (e) => failures.push(e));
  return { a, failures, status: () => status };
}

const KB = (n: number, fill = "x") => Buffer.alloc(n * 1024, fill);

test("read chunk by chunk, a reader that falls 64 KiB behind pauses the upstream, and catching up resumes it; every byte arrives in order", async () => {
  const { a } = started();
  const c = controller();
  a.onRequestStart(c);
  a.onResponseStart(c, 200, { "content-type": "text/event-stream" });
  const it = a[Symbol.asyncIterator]();
  for (let i = 0; i < 8; i++) a.onResponseData(c, KB(16, String(i)));
  assert.deepEqual(c.calls, ["pause"], "paused once 64 KiB waited, not before and not twice");
  const got: Buffer[] = [];
  for (let i = 0; i < 5; i++) got.push((await it.next()).value as Buffer);
  assert.deepEqual(c.calls, ["pause", "resume"], "resumed once under 64 KiB waited again");
  a.onResponseEnd();
  for (let r = await it.next(); !r.done; r = await it.next()) got.push(r.value);
  assert.equal(Buffer.concat(got).toString(), [0, 1, 2, 3, 4, 5, 6, 7].map((i) => String(i).repeat(16 * 1024)).join(""));
});

test("read whole, the upstream is never paused however much waits; whole() is all of it, once ended", async () => {
  const { a } = started();
  const c = controller();
  a.onRequestStart(c);
  a.onResponseStart(c, 200, { "content-type": "application/json" });
  const whole = a.whole();
  for (let i = 0; i < 20; i++) a.onResponseData(c, KB(16));
  a.onResponseEnd();
  assert.equal((await whole).length, 20 * 16 * 1024);
  assert.deepEqual(c.calls, []);
});

test("a failure after the headers: an iteration gets what came before it, then the failure; whole() fails at once; before the headers, `failed` is told", async () => {
  const { a } = started();
  const c = controller();
  a.onRequestStart(c);
  a.onResponseStart(c, 200, {});
  const it = a[Symbol.asyncIterator]();
  a.onResponseData(c, Buffer.from("data: 1\n\n"));
  a.onResponseError(c, new Error("other side closed"));
  assert.equal(((await it.next()).value as Buffer).toString(), "data: 1\n\n");
  await assert.rejects(it.next(), /other side closed/);
  await assert.rejects(a.whole(), /other side closed/);

  const early = started();
  early.a.onRequestStart(c);
  early.a.onResponseError(c, new Error("connect ECONNREFUSED"));
  assert.equal(early.failures[0]?.message, "connect ECONNREFUSED");
  assert.equal(early.status(), 0, "never started");
});

test("an abort before the request starts aborts it at its start; one after the end does nothing; a reader leaving early aborts the request", async () => {
  const { a } = started();
  a.abort(new Error("client gone"));
  const c = controller();
  a.onRequestStart(c);
  assert.deepEqual(c.calls, ["abort:client gone"]);

  const ended = started();
  const c2 = controller();
  ended.a.onRequestStart(c2);
  ended.a.onResponseStart(c2, 200, {});
  ended.a.onResponseEnd();
  ended.a.abort(new Error("too late"));
  assert.deepEqual(c2.calls, []);

  const left = started();
  const c3 = controller();
  left.a.onRequestStart(c3);
  left.a.onResponseStart(c3, 200, {});
  left.a.onResponseData(c3, Buffer.from("data: 1\n\n"));
  for await (const _ of left.a) break;
  assert.deepEqual(c3.calls, ["abort:This operation was aborted"]);
});

test("a 1xx answer is passed over: started at the final status only", () => {
  const s = started();
  const c = controller();
  s.a.onRequestStart(c);
  s.a.onResponseStart(c, 100, {});
  assert.equal(s.status(), 0);
  s.a.onResponseStart(c, 200, { "x-a": "1" });
  assert.equal(s.status(), 200);
  assert.deepEqual(s.a.headers, { "x-a": "1" });
});
