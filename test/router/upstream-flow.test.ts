/**
 * Upstream connections are kept alive across requests: a finished answer, whole or streamed, leaves its
 * connection to the tier ready for the next request — a stream is not torn down as an aborted request
 * once its [DONE] is in. Loopback upstreams that count their connections.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type ServerResponse } from "node:http";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { backend, startRouter } from "../helpers/router.ts";
import { waitUntil } from "../helpers/wait.ts";

const chunk = (delta: Record<string, unknown>, finish: string | null = null) => `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
const ANSWER = JSON.stringify({ id: "x", object: "chat.completion", created: 1, model: "m", choices: [{ index: 0, message: { role: "assistant", content: "Hello there." }, finish_reason: "stop" }] });

/** An upstream on loopback counting its connections and the answers cut off before their end. */
async function upstream(t: { after(fn: () => Promise<void>): void }, stream: (res: ServerResponse) => void) {
  const state = { connections: 0, cutOff: 0, finished: 0 };
  const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    if (req.method === "GET") return void res.end("{}");
    let body = "";
    req.on("data", (d: Buffer) => (body += d));
    req.on("end", () => {
      res.on("close", () => {
        if (!res.writableFinished) state.cutOff++;
        else state.finished++;
      });
      if (!body.includes('"stream":true')) return void res.writeHead(200, { "content-type": "application/json" }).end(ANSWER);
      res.writeHead(200, { "content-type": "text/event-stream" });
      stream(res);
    });
  });
  server.on("connection", () => state.connections++);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { port: (server.address() as AddressInfo).port, state };
}

const route = `[[route]]\nmodel = "llama"\ntiers = [{ backend = "a", model = "m" }]\n`;

test("ten sequential answers, whole and streamed, go over one upstream connection: a stream ended by [DONE] is read to its end, not aborted", async (t) => {
  const a = await upstream(t, (res) => {
    res.write(chunk({ role: "assistant", content: "" }));
    res.write(chunk({ content: "Hello" }));
    // The body's end comes in a read of its own, a little after [DONE].
    res.write(chunk({}, "stop") + "data: [DONE]\n\n");
    setTimeout(() => res.end(), 20);
  });
  const h = await startRouter(t, backend("a", "openai", a.port) + route);
  for (let i = 0; i < 10; i++) {
    const stream = i % 2 === 0;
    const r = await h.fetch("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "llama", messages: [{ role: "user", content: "Hi" }], stream }) });
    assert.equal(r.status, 200);
    const text = await r.text();
    if (stream) assert.match(text, /data: \[DONE\]\n\n$/);
    else assert.equal(text, ANSWER);
    // The next request once this answer's upstream side is over (ended, or cut off), so that its connection is free again.
    await waitUntil(`answer ${i + 1} over upstream`, () => a.state.finished + a.state.cutOff === i + 1);
  }
  assert.equal(a.state.cutOff, 0, "no answer was cut off");
  assert.equal(a.state.connections, 1, "one keep-alive connection served all ten");
});

test("an upstream that sends [DONE] and then never ends its body: the client's stream ends at once, and the upstream request is closed within the finish grace", async (t) => {
  const a = await upstream(t, (res) => {
    res.write(chunk({ role: "assistant", content: "" }));
    res.write(chunk({ content: "Hello" }));
    res.write(chunk({}, "stop") + "data: [DONE]\n\n");
    // …and the body never ends.
  });
  const h = await startRouter(t, backend("a", "openai", a.port) + route);
  const t0 = Date.now();
  const r = await h.fetch("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "llama", messages: [{ role: "user", content: "Hi" }], stream: true }) });
  assert.match(await r.text(), /"content":"Hello".*data: \[DONE\]\n\n$/s);
  assert.ok(Date.now() - t0 < 500, `the client had its end right after [DONE] (${Date.now() - t0} ms)`);
  await waitUntil("the upstream request closed", () => a.state.cutOff === 1, { timeoutMs: 3_000 });
  assert.ok(Date.now() - t0 >= 900, "not before the finish grace (1 s) was given to it");
});

/** An upstream whose streams are held open until `release` is called, counting how many it holds at once. */
async function holdingUpstream(t: { after(fn: () => Promise<void>): void }) {
  const state = { open: 0, peak: 0, received: 0 };
  const held: ServerResponse[] = [];
  const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    if (req.method === "GET") return void res.end("{}");
    req.resume();
    req.on("end", () => {
      state.open++;
      state.received++;
      state.peak = Math.max(state.peak, state.open);
      res.on("close", () => state.open--);
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(chunk({ role: "assistant", content: "" }));
      res.write(chunk({ content: "Hello" }));
      held.push(res);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  const release = () => {
    for (const res of held.splice(0)) res.end(chunk({}, "stop") + "data: [DONE]\n\n");
  };
  return { port: (server.address() as AddressInfo).port, state, release };
}

async function concurrentStreams(h: Awaited<ReturnType<typeof startRouter>>, n: number): Promise<Promise<string>[]> {
  return Array.from({ length: n }, async () => {
    const r = await h.fetch("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "llama", messages: [{ role: "user", content: "Hi" }], stream: true }) });
    assert.equal(r.status, 200);
    return r.text();
  });
}

test("300 concurrent streams to one backend are all open upstream at once: the router does not queue them behind a connection pool of its own", async (t) => {
  const a = await holdingUpstream(t);
  const h = await startRouter(t, backend("a", "openai", a.port) + route);
  const streams = await concurrentStreams(h, 300);
  await waitUntil("300 streams open at the upstream", () => a.state.open === 300);
  a.release();
  for (const text of await Promise.all(streams)) assert.match(text, /"content":"Hello".*data: \[DONE\]\n\n$/s);
  assert.equal(a.state.peak, 300);
});

/** A backend's value of a gauge on the router's registry. */
async function gauge(h: Awaited<ReturnType<typeof startRouter>>, name: string, backendName: string): Promise<number | undefined> {
  const m = await h.metrics.registry.getSingleMetric(name)!.get();
  return m.values.find((v) => v.labels.backend === backendName)?.value;
}

test("backend max_connections = 4 bounds the connections to it: 12 concurrent streams are served 4 at a time, all complete, and /metrics shows the 4 connections and the requests waiting for one", async (t) => {
  const a = await holdingUpstream(t);
  const h = await startRouter(t, backend("a", "openai", a.port, "max_connections = 4") + route);
  const streams = await concurrentStreams(h, 12);
  for (const served of [4, 8, 12]) {
    await waitUntil(`${served} streams reached the upstream, 4 of them open`, () => a.state.received === served && a.state.open === 4);
    assert.equal(await gauge(h, "llmsup_backend_queued_requests", "a"), 12 - served, "the requests not yet sent wait in llmsup");
    assert.equal(await gauge(h, "llmsup_backend_upstream_connections", "a"), 4);
    a.release();
  }
  for (const text of await Promise.all(streams)) assert.match(text, /"content":"Hello".*data: \[DONE\]\n\n$/s);
  assert.equal(a.state.peak, 4, "never more than 4 at once");
  assert.equal(await gauge(h, "llmsup_backend_queued_requests", "a"), 0);
});
