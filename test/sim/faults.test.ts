/** Every simulator fault, switched on at start and at run time, shows its wire behaviour. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { canonicalTokens, chatKey } from "../../src/sim/backend/answer.ts";
import { observe, sseContent, sseData, startSim, type SimProcess } from "../helpers/sim.ts";

const QUESTION = "Why did the GPU throttle?";
const TOKENS = canonicalTokens(chatKey([{ role: "user", content: QUESTION }]));
const chat = (stream: boolean, extra: Record<string, unknown> = {}) => JSON.stringify({ messages: [{ role: "user", content: QUESTION }], stream, ...extra });

async function ready(sim: SimProcess): Promise<void> {
  while ((await fetch(`${sim.url}/health`)).status !== 200) await new Promise((r) => setTimeout(r, 15));
}

interface Case {
  readonly name: string;
  readonly fault: Record<string, unknown>;
  /** The same fault written as command-line flags. */
  readonly flags: readonly string[];
  check(sim: SimProcess): Promise<void>;
}

const CASES: readonly Case[] = [
  {
    name: "hang: connections are accepted and nothing is ever answered",
    fault: { hang: true },
    flags: ["--hang"],
    async check(sim) {
      const r = await observe(`${sim.url}/health`, { deadlineMs: 400 });
      assert.equal(r.outcome, "silent");
      assert.equal(r.status, undefined);
    },
  },
  {
    name: "wedge: /health says 200 while completions never progress",
    fault: { wedge: true },
    flags: ["--wedge"],
    async check(sim) {
      assert.equal((await fetch(`${sim.url}/health`)).status, 200);
      const whole = await observe(`${sim.url}/v1/chat/completions`, { body: chat(false), deadlineMs: 500 });
      assert.deepEqual([whole.outcome, whole.status], ["silent", undefined]);
      const stream = await observe(`${sim.url}/v1/chat/completions`, { body: chat(true), deadlineMs: 500 });
      assert.deepEqual([stream.outcome, stream.status, stream.body], ["silent", 200, ""], "stream headers, then nothing");
    },
  },
  {
    name: "slow first token",
    fault: { ttft_ms: 600 },
    flags: ["--ttft", "600ms"],
    async check(sim) {
      const r = await observe(`${sim.url}/v1/chat/completions`, { body: chat(true), deadlineMs: 3_000 });
      assert.equal(r.outcome, "complete");
      assert.ok(r.firstByteMs !== undefined && r.firstByteMs >= 550, `first byte after ${r.firstByteMs} ms`);
      assert.equal(sseContent(r.body), TOKENS.join(""));
    },
  },
  {
    name: "stall mid-stream",
    fault: { stall_after: 3 },
    flags: ["--stall-after", "3"],
    async check(sim) {
      const r = await observe(`${sim.url}/v1/chat/completions`, { body: chat(true), deadlineMs: 600 });
      assert.equal(r.outcome, "silent");
      assert.equal(sseContent(r.body), TOKENS.slice(0, 3).join(""));
      assert.doesNotMatch(r.body, /finish_reason":"stop"|\[DONE\]/);
    },
  },
  {
    name: "cut the stream after N tokens",
    fault: { cut_after: 4 },
    flags: ["--cut-after", "4"],
    async check(sim) {
      const r = await observe(`${sim.url}/v1/chat/completions`, { body: chat(true), deadlineMs: 2_000 });
      assert.equal(r.outcome, "cut");
      assert.equal(sseContent(r.body), TOKENS.slice(0, 4).join(""));
      assert.doesNotMatch(r.body, /finish_reason":"stop"|\[DONE\]/);
    },
  },
  {
    name: "malformed SSE chunk",
    fault: { malformed_after: 2 },
    flags: ["--malformed-after", "2"],
    async check(sim) {
      const r = await observe(`${sim.url}/v1/chat/completions`, { body: chat(true), deadlineMs: 2_000 });
      assert.equal(r.outcome, "complete");
      const bad = sseData(r.body).filter((d) => {
        if (d === "[DONE]") return false;
        try {
          JSON.parse(d);
          return false;
        } catch {
          return true;
        }
      });
      assert.equal(bad.length, 1, "exactly one chunk is not JSON");
    },
  },
  {
    name: "no [DONE] at the end of a stream",
    fault: { no_done: true },
    flags: ["--no-done"],
    async check(sim) {
      const r = await observe(`${sim.url}/v1/chat/completions`, { body: chat(true), deadlineMs: 2_000 });
      assert.equal(r.outcome, "complete");
      const data = sseData(r.body);
      assert.notEqual(data.at(-1), "[DONE]");
      assert.match(data.at(-1)!, /"finish_reason":"stop"/);
      assert.equal(sseContent(r.body), TOKENS.join(""));
    },
  },
  {
    name: "5xx for the next N requests",
    fault: { status: { code: 503, count: 2 } },
    flags: ["--status", "503", "--status-count", "2"],
    async check(sim) {
      const codes = [];
      for (let i = 0; i < 3; i++) codes.push((await fetch(`${sim.url}/v1/chat/completions`, { method: "POST", body: chat(false) })).status);
      assert.deepEqual(codes, [503, 503, 200]);
    },
  },
  {
    name: "5xx for a fraction of requests",
    fault: { status: { code: 500, fraction: 0.5 } },
    flags: ["--status", "500", "--status-fraction", "0.5"],
    async check(sim) {
      const codes = [];
      for (let i = 0; i < 40; i++) codes.push((await fetch(`${sim.url}/v1/completions`, { method: "POST", body: JSON.stringify({ prompt: "x", max_tokens: 1 }) })).status);
      const failed = codes.filter((c) => c === 500).length;
      assert.ok(failed >= 8 && failed <= 32, `${failed} of 40 failed`);
      assert.equal(failed + codes.filter((c) => c === 200).length, 40);
    },
  },
  {
    name: "429 with Retry-After",
    fault: { rate_limit: { count: 1, retry_after: 7 } },
    flags: ["--rate-limit", "1", "--retry-after", "7"],
    async check(sim) {
      const limited = await fetch(`${sim.url}/v1/chat/completions`, { method: "POST", body: chat(false) });
      assert.equal(limited.status, 429);
      assert.equal(limited.headers.get("retry-after"), "7");
      assert.equal((await fetch(`${sim.url}/v1/chat/completions`, { method: "POST", body: chat(false) })).status, 200);
    },
  },
  {
    name: "429 without Retry-After",
    fault: { rate_limit: { retry_after: null } },
    flags: ["--rate-limit", "0", "--retry-after", "none"],
    async check(sim) {
      for (let i = 0; i < 2; i++) {
        const r = await fetch(`${sim.url}/v1/chat/completions`, { method: "POST", body: chat(false) });
        assert.equal(r.status, 429);
        assert.equal(r.headers.get("retry-after"), null);
      }
    },
  },
  {
    name: "400 context length with the server's message",
    fault: { context_error: true },
    flags: ["--context-error"],
    async check(sim) {
      const r = await fetch(`${sim.url}/v1/chat/completions`, { method: "POST", body: chat(false) });
      assert.equal(r.status, 400);
      assert.match(await r.text(), /"type":"exceed_context_size_error"/);
    },
  },
];

for (const c of CASES) {
  test(`at start: ${c.name}`, async (t) => {
    const viaJson = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", "--fault", JSON.stringify(c.fault)]);
    if (!c.fault.hang) await ready(viaJson);
    else await new Promise((r) => setTimeout(r, 100));
    await c.check(viaJson);
    viaJson.killGroup();
    const viaFlags = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", ...c.flags]);
    if (!c.fault.hang) await ready(viaFlags);
    else await new Promise((r) => setTimeout(r, 100));
    await c.check(viaFlags);
  });
}

test("at run time: each fault through POST /_sim/fault, cleared by DELETE", async (t) => {
  const sim = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s"]);
  await ready(sim);
  for (const c of CASES) {
    await sim.setFault(c.fault);
    await t.test(c.name, () => c.check(sim));
    const cleared = await fetch(`${sim.url}/_sim/fault`, { method: "DELETE" });
    assert.deepEqual(await cleared.json(), {});
    const normal = await observe(`${sim.url}/v1/chat/completions`, { body: chat(true), deadlineMs: 2_000 });
    assert.equal(sseContent(normal.body), TOKENS.join(""), `normal again after ${c.name}`);
  }
  const bad = await fetch(`${sim.url}/_sim/fault`, { method: "POST", body: JSON.stringify({ hang: "yes" }) });
  assert.equal(bad.status, 400);
  assert.match(await bad.text(), /hang/);
});

test("crash with an exit code, at start and at run time", async (t) => {
  const atStart = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", "--crash-exit-code", "3", "--crash-after", "300ms"]);
  assert.deepEqual(await atStart.exited, { code: 3, signal: null });
  const atRun = await startSim(t, ["--kind", "ollama", "--port", "0"]);
  await atRun.setFault({ crash: { exit_code: 4 } });
  assert.deepEqual(await atRun.exited, { code: 4, signal: null });
});

test("crash by a signal, at start and at run time", async (t) => {
  const atStart = await startSim(t, ["--kind", "ollama", "--port", "0", "--fault", JSON.stringify({ crash: { signal: "SIGSEGV", after_ms: 200 } })]);
  assert.deepEqual(await atStart.exited, { code: null, signal: "SIGSEGV" });
  const atRun = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s"]);
  await atRun.setFault({ crash: { signal: "SIGKILL" } });
  assert.deepEqual(await atRun.exited, { code: null, signal: "SIGKILL" });
});

test("out of memory at load prints the server's own messages and exits as it does", async (t) => {
  const vllm = await startSim(t, ["--kind", "vllm", "--port", "0", "--load-time", "0s", "--oom", "load"], { waitFor: "nothing" });
  assert.deepEqual(await vllm.exited, { code: 1, signal: null });
  assert.match(vllm.stderr(), /torch\.OutOfMemoryError: CUDA out of memory\. Tried to allocate/);
  assert.match(vllm.stderr(), /Engine core initialization failed/);
  const llama = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", "--oom", "load"]);
  assert.deepEqual(await llama.exited, { code: 1, signal: null });
  assert.match(llama.stderr(), /cudaMalloc failed: out of memory/);
  assert.match(llama.stderr(), /llama_model_load: error loading model/);
});

test("Ollama: out of memory when a model loads (at run time) fails the request and keeps the server up", async (t) => {
  const sim = await startSim(t, ["--kind", "ollama", "--port", "0", "--load-time", "0s"]);
  await sim.setFault({ oom: "load" });
  const r = await fetch(`${sim.url}/api/chat`, { method: "POST", body: JSON.stringify({ model: "llama3.1:8b", messages: [{ role: "user", content: "x" }] }) });
  assert.equal(r.status, 500);
  assert.match(await r.text(), /llama runner process has terminated: cudaMalloc failed: out of memory/);
  assert.match(sim.stderr(), /cudaMalloc failed: out of memory/);
  assert.equal((await fetch(`${sim.url}/`)).status, 200);
  assert.deepEqual(await (await fetch(`${sim.url}/api/ps`)).json(), { models: [] });
});

test("out of memory at run time: llama-server aborts, vLLM's engine dies and the API server follows", async (t) => {
  const llama = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", "--oom", "runtime"]);
  await ready(llama);
  const r = await observe(`${llama.url}/v1/chat/completions`, { body: chat(false), deadlineMs: 2_000 });
  assert.equal(r.outcome, "cut");
  assert.deepEqual(await llama.exited, { code: null, signal: "SIGABRT" });
  assert.match(llama.stderr(), /CUDA error: out of memory/);

  const vllm = await startSim(t, ["--kind", "vllm", "--port", "0", "--load-time", "0s", "--model", "m"]);
  await vllm.setFault({ oom: "runtime" });
  const failed = await fetch(`${vllm.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ model: "m", messages: [] }) });
  assert.equal(failed.status, 500);
  await new Promise((r) => setTimeout(r, 150));
  assert.equal((await fetch(`${vllm.url}/health`)).status, 503, "the API server noticed its engine died");
  assert.deepEqual(await vllm.exited, { code: 1, signal: null });
  assert.match(vllm.stderr(), /torch\.OutOfMemoryError: CUDA out of memory/);
  assert.match(vllm.stderr(), /EngineCore encountered an issue/);
});

test("slow load: at start (llama-server stays 503 Loading model) and at run time (Ollama's next model load)", async (t) => {
  const llama = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--fault", JSON.stringify({ load_ms: 1_000 })]);
  await new Promise((r) => setTimeout(r, 600));
  assert.equal((await fetch(`${llama.url}/health`)).status, 503);
  await new Promise((r) => setTimeout(r, 600));
  assert.equal((await fetch(`${llama.url}/health`)).status, 200);

  const ollama = await startSim(t, ["--kind", "ollama", "--port", "0", "--load-time", "0s"]);
  await ollama.setFault({ load_ms: 700 });
  const started = performance.now();
  const r = await fetch(`${ollama.url}/api/generate`, { method: "POST", body: JSON.stringify({ model: "llama3.1:8b" }) });
  assert.equal(r.status, 200);
  assert.ok(performance.now() - started >= 650, "the lazy load took the slow time");
});
