/**
 * Fuzzing the routing socket: hostile bodies, content types and request ids
 * through a real router on a unix socket, in front of a simulated vLLM. A bad
 * request is the client's problem: it is answered 400/413 with a stable code,
 * never 500, and never moves a breaker, a tier's admission or a backend's
 * health; memory does not grow with the requests.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import fc from "fast-check";
import { WIRE_ERRORS } from "../../src/errors/registry.ts";
import { validateRequest } from "../../src/router/validate.ts";
import { backend, startRouter } from "../helpers/router.ts";
import { startSim } from "../helpers/sim.ts";
import { ENDPOINTS, hostileBody } from "./hostile-json.ts";
import { FUZZ_SCALE, runs } from "./runs.ts";

const RUNS = runs(300);
const MAX_BODY = 256 * 1024;
/**
 * What the process may keep after all the requests, garbage collected, measured after a warm-up so
 * the allocator has its working set (-6 to +11 MiB seen). V8 keeps heap pages it grew into, so
 * this is the coarse bound; the heap bound is the fine one.
 */
const RSS_GROWTH_LIMIT = 32 * 1024 * 1024 * FUZZ_SCALE;
/**
 * Live JavaScript heap growth: the harness's own log lines and events (about 1.4 MiB seen), far
 * below the 6-9 MB of bodies sent, which a router keeping bodies would add.
 */
const HEAP_GROWTH_LIMIT = 4 * 1024 * 1024 * FUZZ_SCALE;

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const CONTENT_TYPES = [
  "application/json",
  "application/json; charset=utf-8",
  "application/json; charset=latin1",
  "application/json; charset=utf-16",
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "text/event-stream",
  "",
  "*/*; q=0.\u00ff",
] as const;

/** A header value Node will send: printable ASCII and Latin-1. */
const headerText = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f).map((c) => String.fromCharCode(c)), maxLength: 200 });

interface Sent {
  readonly status: number;
  readonly contentType: string;
  readonly text: string;
}

function post(socketPath: string, path: string, body: Uint8Array, headers: Record<string, string>, chunked: boolean): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: "POST", headers: chunked ? headers : { ...headers, "content-length": String(body.length) } }, (res) => {
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => parts.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers["content-type"] ?? ""), text: Buffer.concat(parts).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    if (chunked) {
      const cut = Math.floor(body.length / 2);
      req.write(body.subarray(0, cut));
      req.end(body.subarray(cut));
    } else req.end(body);
  });
}

/** What the routing socket must answer without asking a backend, or undefined where the request is for the backends. */
function expectedRefusal(endpoint: (typeof ENDPOINTS)[number][0], bytes: Uint8Array): { status: number; code: string; param?: string } | undefined {
  if (bytes.length > MAX_BODY) return { status: 413, code: "request_too_large" };
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    return { status: 400, code: "invalid_json" };
  }
  if (!body || typeof body !== "object" || Array.isArray(body)) return { status: 400, code: "invalid_json" };
  const v = validateRequest(endpoint, body as Record<string, unknown>);
  return v.ok ? undefined : { status: 400, code: "invalid_request", param: v.param };
}

test(`fuzz: ${RUNS} hostile requests through the routing socket get 400/413 with stable codes or reach the backend; no 500, no breaker, admission or health change, bounded memory`, async (t) => {
  const sim = await startSim(t, ["--kind", "vllm", "--port", "0", "--load-time", "0s", "--ttft", "0s", "--token-rate", "100000", "--model", "m0", "--model", "m1"]);
  const h = await startRouter(
    t,
    backend("a", "vllm", sim.port) + `[[route]]\nmodel = "*"\ntiers = [{ backend = "a", model = "m0" }, { backend = "a", model = "m1" }]\n`,
    `max_body = "${MAX_BODY}B"`,
  );
  const healthChanges: string[] = [];
  h.health.onChange((name, now, before) => healthChanges.push(`${name}: ${before.state} → ${now.state}`));
  const tiers = () => h.router.snapshot().routes.map((r) => ({ serving: r.serving, tiers: r.tiers.map((x) => ({ backend: x.backend, model: x.model, admission: x.admission, breaker: x.breaker })) }));
  const tiersBefore = tiers();
  const healthBefore = h.health.all();

  const request_ = fc.record({
    endpoint: fc.constantFrom(...ENDPOINTS),
    contentType: fc.constantFrom(...CONTENT_TYPES),
    requestId: fc.option(headerText, { nil: undefined }),
    query: fc.option(fc.string({ unit: "binary", maxLength: 20 }).map((q) => `?${encodeURIComponent(q)}&%ZZ=%`), { nil: "" }),
    chunked: fc.boolean(),
  }).chain((r) => fc.record({ r: fc.constant(r), bytes: hostileBody(r.endpoint[0], { min: MAX_BODY - 64 * 1024, max: MAX_BODY + 16 * 1024 }) }));

  // Warm-up: the largest bodies, refused and forwarded, before memory is measured.
  const near = (key: string) => new Uint8Array(Buffer.from(`{"messages":[{"role":"user","content":"hi"}],"${key}":"${"é".repeat((MAX_BODY - 100) / 2)}"}`, "utf8"));
  for (let i = 0; i < 30; i++) await post(h.socket, "/v1/chat/completions", near(i % 2 === 0 ? "stream" : "x"), { "content-type": "application/json" }, i % 3 === 0);
  const simRequests = async () => ((await (await fetch(`${sim.url}/_sim/state`)).json()) as { requests: number }).requests;
  const warmRequests = await simRequests();
  gc();
  const before = process.memoryUsage();
  let forwarded = 0;
  const statuses = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(request_, async ({ r, bytes }) => {
      const [endpoint, path] = r.endpoint;
      const headers: Record<string, string> = {};
      if (r.contentType !== "") headers["content-type"] = r.contentType;
      if (r.requestId !== undefined) headers["x-request-id"] = r.requestId;
      const got = await post(h.socket, path + r.query, bytes, headers, r.chunked);
      statuses.set(got.status, (statuses.get(got.status) ?? 0) + 1);
      assert.ok(got.status < 500, `a client's request is never a server error: ${got.status} ${got.text.slice(0, 300)}`);
      const refusal = expectedRefusal(endpoint, bytes);
      if (refusal === undefined) {
        forwarded++;
        return;
      }
      assert.equal(got.status, refusal.status, got.text.slice(0, 300));
      assert.match(got.contentType, /^application\/json/);
      const error = (JSON.parse(got.text) as { error: Record<string, unknown> }).error;
      assert.equal(error.code, refusal.code);
      assert.equal(error.type, WIRE_ERRORS[refusal.code as keyof typeof WIRE_ERRORS].type);
      assert.equal(typeof error.message, "string");
      assert.equal(error.param, refusal.param ?? null);
    }),
    { numRuns: RUNS },
  );
  gc();
  const after = process.memoryUsage();
  const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
  t.diagnostic(`statuses ${JSON.stringify([...statuses].sort())}; ${forwarded} forwarded; rss growth ${mib(after.rss - before.rss)}, heap growth ${mib(after.heapUsed - before.heapUsed)}`);

  const reached = (await simRequests()) - warmRequests;
  assert.ok(reached <= 2 * forwarded, `only requests the router accepted reached the backend (${reached} for ${forwarded} accepted)`);
  assert.deepEqual(tiers(), tiersBefore, "no breaker, admission or serving tier changed");
  assert.deepEqual(h.health.all(), healthBefore);
  assert.deepEqual(healthChanges, []);
  // A prompt too long for a tier goes on to the next one (the request's own size, blamed on no one); nothing else moves.
  assert.deepEqual(
    h.events.filter((e) => !(e.event === "router.failover" && e.reason === "context_length")),
    [],
  );
  assert.ok(after.heapUsed - before.heapUsed < HEAP_GROWTH_LIMIT, `the heap grew ${mib(after.heapUsed - before.heapUsed)} over ${RUNS} requests`);
  assert.ok(after.rss - before.rss < RSS_GROWTH_LIMIT, `rss grew ${mib(after.rss - before.rss)} over ${RUNS} requests`);

  // The tiers still answer.
  const ok = await h.client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "still there?" }] }).withResponse();
  assert.equal(ok.response.headers.get("x-llmsup-tier"), "0");
});
