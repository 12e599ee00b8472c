/**
 * Answers read whole (stream: false) come straight from undici's dispatcher (src/router/body.ts
 * CollectedAnswer): these tests hold it to what the stream-based read did, against upstreams on
 * loopback that misbehave at the byte level — a body in pieces, a body that stalls, a socket cut
 * mid-body, a client that leaves while the answer is on its way.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { backend, startRouter } from "../helpers/router.ts";
import { waitUntil } from "../helpers/wait.ts";

const ANSWER = (content: string) => JSON.stringify({ id: "chatcmpl-1", object: "chat.completion", created: 1, model: "m", choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } });
const ASK = JSON.stringify({ model: "llama", messages: [{ role: "user", content: "Hello?" }] });

interface Upstream {
  readonly port: number;
  /** Chat requests received so far. */
  readonly chats: number;
  /** Chat requests whose connection closed before the answer was finished. */
  readonly cutOff: number;
}

/** An OpenAI-compatible upstream on loopback whose chat answers are written by `answer`; GETs (health) answer 200. */
async function upstream(t: { after(fn: () => Promise<void>): void }, answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<Upstream> {
  const state = { chats: 0, cutOff: 0 };
  const server = createServer((req, res) => {
    if (req.method === "GET") return void res.end(JSON.stringify({ object: "list", data: [{ id: "m", object: "model" }] }));
    state.chats++;
    res.on("close", () => {
      if (!res.writableFinished) state.cutOff++;
    });
    req.resume();
    req.on("end", () => answer(req, res));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return {
    port: (server.address() as AddressInfo).port,
    get chats() {
      return state.chats;
    },
    get cutOff() {
      return state.cutOff;
    },
  };
}

const twoTiers = (a: Upstream, b: Upstream, tierA = "") =>
  backend("a", "openai", a.port) + backend("b", "openai", b.port) + `[[route]]\nmodel = "llama"\ntiers = [\n{ backend = "a", model = "m"${tierA} },\n{ backend = "b", model = "m" },\n]\n`;

test("an answer that arrives in pieces (chunked, over time) reaches the client byte for byte as the tier sent it", async (t) => {
  // Varied text (a repeated span would be caught as a loop): 2,000 numbered words.
  const text = ANSWER(Array.from({ length: 2_000 }, (_, i) => `w${(i * 7919) % 10_007}`).join(" "));
  const a = await upstream(t, (_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    const cuts = [0, 7, 4_000, 9_000, text.length];
    let i = 0;
    const next = () => {
      res.write(text.slice(cuts[i]!, cuts[i + 1]!));
      if (++i < cuts.length - 1) setTimeout(next, 15);
      else res.end();
    };
    next();
  });
  const b = await upstream(t, (_req, res) => res.end(ANSWER("from b")));
  const h = await startRouter(t, twoTiers(a, b));
  const r = await h.fetch("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: ASK });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("x-llmsup-tier"), "0");
  assert.equal(await r.text(), text, "the tier's bytes, unchanged");
  assert.equal(b.chats, 0);
});

test("an answer whose body stalls after its headers fails over on the tier's idle_timeout, unseen: the next tier answers", async (t) => {
  const a = await upstream(t, (_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.write(ANSWER("never finished").slice(0, 40));
  });
  const b = await upstream(t, (_req, res) => res.end(ANSWER("from b")));
  const h = await startRouter(t, twoTiers(a, b, `, idle_timeout = "300ms"`));
  const t0 = Date.now();
  const r = await h.fetch("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: ASK });
  const body = (await r.json()) as { choices: { message: { content: string } }[] };
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("x-llmsup-tier"), "1");
  assert.equal(body.choices[0]!.message.content, "from b");
  assert.ok(Date.now() - t0 >= 250, "it waited out the idle timeout");
  const failover = h.events.find((e) => e.event === "router.failover") as { reason?: string } | undefined;
  assert.equal(failover?.reason, "idle_timeout");
  assert.match((failover as { detail?: string }).detail ?? "", /idle timeout while reading the answer/);
  await waitUntil("tier a's connection closed", () => a.cutOff === 1);
});

test("an answer slower than the tier's total_timeout fails over as total_timeout, and the slow upstream request is closed", async (t) => {
  const a = await upstream(t, (_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    const timer = setInterval(() => res.write(" "), 50);
    res.on("close", () => clearInterval(timer));
  });
  const b = await upstream(t, (_req, res) => res.end(ANSWER("from b")));
  const h = await startRouter(t, twoTiers(a, b, `, total_timeout = "400ms"`));
  const r = await h.fetch("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: ASK });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("x-llmsup-tier"), "1");
  await r.arrayBuffer();
  const failover = h.events.find((e) => e.event === "router.failover") as { reason?: string; detail?: string } | undefined;
  assert.equal(failover?.reason, "total_timeout");
  assert.match(failover?.detail ?? "", /total timeout while reading the answer/);
  await waitUntil("tier a's connection closed", () => a.cutOff === 1);
});

test("an answer cut off mid-body (the socket destroyed) fails over unseen; the half answer never reaches the client", async (t) => {
  const a = await upstream(t, (_req, res) => {
    res.writeHead(200, { "content-type": "application/json", "content-length": "500" });
    res.write(ANSWER("half").slice(0, 30), () => res.socket?.destroy());
  });
  const b = await upstream(t, (_req, res) => res.end(ANSWER("from b")));
  const h = await startRouter(t, twoTiers(a, b));
  const r = await h.fetch("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: ASK });
  const body = (await r.json()) as { choices: { message: { content: string } }[] };
  assert.equal(r.headers.get("x-llmsup-tier"), "1");
  assert.equal(body.choices[0]!.message.content, "from b");
  const failover = h.events.find((e) => e.event === "router.failover") as { reason?: string } | undefined;
  assert.ok(failover && failover.reason !== "total_timeout" && failover.reason !== "idle_timeout", `failed over for the cut (${failover?.reason})`);
});

for (const when of ["before the tier's headers", "after the tier's headers, while its body is on its way"] as const) {
  test(`a client that leaves ${when} has the upstream request aborted, and no tier is blamed`, async (t) => {
    const a = await upstream(t, (_req, res) => {
      if (when.startsWith("after")) {
        res.writeHead(200, { "content-type": "application/json" });
        res.write("{");
      }
      // …and nothing more: only the client leaving ends this.
    });
    const b = await upstream(t, (_req, res) => res.end(ANSWER("from b")));
    const h = await startRouter(t, twoTiers(a, b));
    const ctl = new AbortController();
    const pending = h.fetch("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body: ASK, signal: ctl.signal }).catch((e: Error) => e);
    await waitUntil("tier a has the request", () => a.chats === 1);
    ctl.abort();
    assert.ok((await pending) instanceof Error);
    await waitUntil("tier a's connection closed", () => a.cutOff === 1);
    assert.equal(b.chats, 0, "nothing went on to tier b");
    assert.ok(!h.events.some((e) => e.event === "router.failover"), "no failover for a client that left");
    assert.deepEqual(h.router.breaker(h.config.routes[0]!.tiers[0]!), { state: "closed", failures: 0 });
  });
}
