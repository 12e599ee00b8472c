/** The simulated servers behave like the real ones on the wire. */
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { canonicalTokens, chatKey } from "../../src/sim/backend/answer.ts";
import { freePort, observe, sseContent, sseData, startSim } from "../helpers/sim.ts";

const canonical = (content: string) => canonicalTokens(chatKey([{ role: "user", content }])).join("");

test("vLLM: the port refuses connections while the model loads, then /health is 200 with an empty body", async (t) => {
  const port = await freePort();
  const sim = await startSim(t, ["--kind", "vllm", "--port", String(port), "--load-time", "1500ms", "--model", "meta-llama/Llama-3.1-8B"], { waitFor: /vLLM API server/ });
  await assert.rejects(fetch(`http://127.0.0.1:${port}/health`), (e: Error) => /ECONNREFUSED/.test(String((e.cause as Error)?.message ?? e)));
  while (!/startup complete/.test(sim.stdout())) await new Promise((r) => setTimeout(r, 20));
  const health = await fetch(`http://127.0.0.1:${port}/health`);
  assert.equal(health.status, 200);
  assert.equal(await health.text(), "");
  const models = (await (await fetch(`http://127.0.0.1:${port}/v1/models`)).json()) as { data: { id: string; max_model_len: number }[] };
  assert.deepEqual(models.data.map((m) => [m.id, m.max_model_len]), [["meta-llama/Llama-3.1-8B", 8192]]);
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  assert.match(metrics, /^vllm:num_requests_running\{.*model_name="meta-llama\/Llama-3.1-8B"\} 0$/m);
  assert.match(metrics, /^# TYPE vllm:generation_tokens_total counter$/m);
  const unknown = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ model: "other", messages: [] }) });
  assert.equal(unknown.status, 404);
  assert.match(((await unknown.json()) as { error: { message: string } }).error.message, /The model `other` does not exist/);
});

test("llama-server: /health is 503 Loading model while loading, then 200 {status: ok}; /slots, /props and /metrics", async (t) => {
  const sim = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "800ms", "--parallel", "2"]);
  const loading = await fetch(`${sim.url}/health`);
  assert.equal(loading.status, 503);
  assert.deepEqual(await loading.json(), { error: { code: 503, message: "Loading model", type: "unavailable_error" } });
  assert.equal((await fetch(`${sim.url}/v1/health`)).status, 503);
  const early = await fetch(`${sim.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ messages: [{ role: "user", content: "hi" }] }) });
  assert.equal(early.status, 503);
  await new Promise((r) => setTimeout(r, 900));
  const ok = await fetch(`${sim.url}/health`);
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), { status: "ok" });
  const slots = (await (await fetch(`${sim.url}/slots`)).json()) as { id: number; is_processing: boolean }[];
  assert.deepEqual(slots.map((s) => [s.id, s.is_processing]), [[0, false], [1, false]]);
  assert.equal((await fetch(`${sim.url}/slots?fail_on_no_slot=1`)).status, 200);
  const props = (await (await fetch(`${sim.url}/props`)).json()) as { total_slots: number };
  assert.equal(props.total_slots, 2);
  assert.equal((await fetch(`${sim.url}/metrics`)).status, 501, "metrics only with --metrics");
  // Both slots busy → fail_on_no_slot answers 503.
  const body = JSON.stringify({ messages: [{ role: "user", content: "busy" }], max_tokens: 5 });
  await sim.setFault({ ttft_ms: 600 });
  const busy = [fetch(`${sim.url}/v1/chat/completions`, { method: "POST", body }), fetch(`${sim.url}/v1/chat/completions`, { method: "POST", body })];
  await new Promise((r) => setTimeout(r, 150));
  assert.equal((await fetch(`${sim.url}/slots?fail_on_no_slot=1`)).status, 503);
  await Promise.all(busy);
});

test("llama-server with --metrics serves llamacpp: metrics", async (t) => {
  const sim = await startSim(t, ["--kind", "llamacpp", "--port", "0", "--load-time", "0s", "--metrics"]);
  while ((await fetch(`${sim.url}/health`)).status !== 200) await new Promise((r) => setTimeout(r, 20));
  assert.match(await (await fetch(`${sim.url}/metrics`)).text(), /^llamacpp:prompt_tokens_total 0$/m);
});

test("Ollama: root, version, tags, lazy load visible in /api/ps with size and size_vram, native NDJSON chat", async (t) => {
  const sim = await startSim(t, ["--kind", "ollama", "--port", "0", "--model", "llama3.1:8b-q4", "--load-time", "300ms", "--vram-fraction", "0.5", "--model-mib", "4000"]);
  const root = await fetch(`${sim.url}/`);
  assert.equal(await root.text(), "Ollama is running");
  assert.match(((await (await fetch(`${sim.url}/api/version`)).json()) as { version: string }).version, /^\d+\.\d+\.\d+$/);
  const tags = (await (await fetch(`${sim.url}/api/tags`)).json()) as { models: { name: string; size: number }[] };
  assert.deepEqual(tags.models.map((m) => m.name), ["llama3.1:8b-q4"]);
  assert.deepEqual(await (await fetch(`${sim.url}/api/ps`)).json(), { models: [] }, "server up is not model loaded");
  // A warm-up request loads the model.
  const warm = (await (await fetch(`${sim.url}/api/generate`, { method: "POST", body: JSON.stringify({ model: "llama3.1:8b-q4", keep_alive: "10m" }) })).json()) as { done: boolean; done_reason: string };
  assert.deepEqual([warm.done, warm.done_reason], [true, "load"]);
  const ps = (await (await fetch(`${sim.url}/api/ps`)).json()) as { models: { name: string; size: number; size_vram: number; expires_at: string }[] };
  assert.equal(ps.models.length, 1);
  assert.equal(ps.models[0]!.size, 4000 * 1024 * 1024);
  assert.equal(ps.models[0]!.size_vram, 2000 * 1024 * 1024, "half offloaded to the CPU");
  assert.ok(Date.parse(ps.models[0]!.expires_at) > Date.now() + 9 * 60_000);
  const ndjson = await observe(`${sim.url}/api/chat`, { body: JSON.stringify({ model: "llama3.1:8b-q4", messages: [{ role: "user", content: "hello" }] }) });
  assert.equal(ndjson.outcome, "complete");
  assert.match(String(ndjson.headers["content-type"]), /application\/x-ndjson/);
  const lines = ndjson.body.trim().split("\n").map((l) => JSON.parse(l) as { message: { content: string }; done: boolean; done_reason?: string; eval_count?: number });
  assert.equal(lines.map((l) => l.message.content).join(""), canonical("hello"));
  assert.deepEqual([lines.at(-1)!.done, lines.at(-1)!.done_reason], [true, "stop"]);
  assert.equal(lines.at(-1)!.eval_count, canonicalTokens(chatKey([{ role: "user", content: "hello" }])).length);
  const missing = await fetch(`${sim.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ model: "nope", messages: [] }) });
  assert.equal(missing.status, 404);
  assert.match(await missing.text(), /model \\"nope\\" not found, try pulling it first/);
});

test("Ollama: /api/show states the trained context_length in model_info, and num_ctx in parameters only when the Modelfile sets it", async (t) => {
  const configured = await startSim(t, ["--kind", "ollama", "--port", "0", "--model", "llama3.1:8b", "--ctx-size", "8192"]);
  const plain = await startSim(t, ["--kind", "ollama", "--port", "0", "--model", "llama3", "--load-time", "0s"], { env: { OLLAMA_CONTEXT_LENGTH: "16384" } });
  type Show = { parameters: string; modelfile: string; template: string; details: { family: string }; model_info: Record<string, unknown> };
  const show = async (url: string, body: unknown) => {
    const r = await fetch(`${url}/api/show`, { method: "POST", body: JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as Show & { error?: string } };
  };
  const a = await show(configured.url, { model: "llama3.1:8b" });
  assert.equal(a.status, 200);
  assert.match(a.body.parameters, /^num_ctx {24}8192$/m, "key padded to 30 columns, as `ollama show` prints it");
  assert.match(a.body.modelfile, /^PARAMETER num_ctx 8192$/m);
  assert.equal(a.body.model_info["general.architecture"], "llama");
  assert.equal(a.body.model_info["llama.context_length"], 131072, "the trained window, not the runtime one");
  assert.equal(a.body.details.family, "llama");
  const b = await show(plain.url, { name: "llama3:latest" });
  assert.equal(b.status, 200, "the older `name` field, and a bare name meaning :latest");
  assert.doesNotMatch(b.body.parameters, /num_ctx/, "a model pulled as is has no num_ctx: the window is the server default");
  assert.deepEqual(await show(plain.url, { model: "mistral" }), { status: 404, body: { error: "model 'mistral' not found" } });
  assert.deepEqual(await show(plain.url, {}), { status: 400, body: { error: "model is required" } });
  await (await fetch(`${plain.url}/api/generate`, { method: "POST", body: JSON.stringify({ model: "llama3" }) })).arrayBuffer();
  const ps = (await (await fetch(`${plain.url}/api/ps`)).json()) as { models: { context_length: number }[] };
  assert.equal(ps.models[0]?.context_length, 16384, "loaded with OLLAMA_CONTEXT_LENGTH");
});

for (const kind of ["vllm", "llamacpp", "ollama"] as const) {
  test(`${kind}: the official openai client parses JSON, SSE with usage, completions and embeddings`, async (t) => {
    const model = kind === "ollama" ? "llama3.1:8b" : "m1";
    const sim = await startSim(t, ["--kind", kind, "--port", "0", "--load-time", "0s", "--model", model]);
    if (kind === "llamacpp") while ((await fetch(`${sim.url}/health`)).status !== 200) await new Promise((r) => setTimeout(r, 20));
    const client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: "sk-test", maxRetries: 0 });
    const whole = await client.chat.completions.create({ model, messages: [{ role: "user", content: "What is llmsup?" }] });
    assert.equal(whole.choices[0]!.message.content, canonical("What is llmsup?"), "deterministic canonical answer");
    assert.equal(whole.choices[0]!.finish_reason, "stop");
    assert.equal(whole.model, model);
    assert.ok(whole.usage && whole.usage.completion_tokens > 0 && whole.usage.total_tokens === whole.usage.prompt_tokens + whole.usage.completion_tokens);

    const stream = await client.chat.completions.create({ model, messages: [{ role: "user", content: "What is llmsup?" }], stream: true, stream_options: { include_usage: true } });
    let text = "";
    let finish: string | null = null;
    let usage: unknown;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, whole.choices[0]!.message.content, "the stream carries the same answer");
    assert.equal(finish, "stop");
    assert.deepEqual(usage, whole.usage);

    const short = await client.chat.completions.create({ model, messages: [{ role: "user", content: "What is llmsup?" }], max_tokens: 3 });
    assert.equal(short.choices[0]!.finish_reason, "length");
    assert.equal(short.usage?.completion_tokens, 3);

    const completion = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 5 });
    assert.equal(completion.choices[0]!.finish_reason, "length");
    assert.ok(completion.choices[0]!.text.length > 0);

    const emb = await client.embeddings.create({ model, input: ["alpha", "beta"] });
    assert.equal(emb.data.length, 2);
    assert.equal(emb.data[0]!.embedding.length, 16);
    const norm = Math.sqrt(emb.data[0]!.embedding.reduce((a, x) => a + x * x, 0));
    assert.ok(Math.abs(norm - 1) < 1e-5, "decoded from base64 into a unit vector");
  });
}

test("assistant prefill: vLLM with continue_final_message, llama-server and Ollama with a final assistant message", async (t) => {
  const question = [{ role: "user", content: "Tell me about GPUs" }];
  const full = canonicalTokens(chatKey(question)).join("");
  const prefix = canonicalTokens(chatKey(question)).slice(0, 5).join("");
  for (const kind of ["vllm", "llamacpp", "ollama"] as const) {
    const model = kind === "ollama" ? "llama3.1:8b" : "m";
    const sim = await startSim(t, ["--kind", kind, "--port", "0", "--load-time", "0s", "--model", model]);
    if (kind === "llamacpp") while ((await fetch(`${sim.url}/health`)).status !== 200) await new Promise((r) => setTimeout(r, 20));
    const body = {
      model,
      messages: [...question, { role: "assistant", content: prefix }],
      stream: true,
      ...(kind === "vllm" ? { continue_final_message: true, add_generation_prompt: false } : {}),
    };
    const r = await observe(`${sim.url}/v1/chat/completions`, { body: JSON.stringify(body) });
    assert.equal(prefix + sseContent(r.body), full, `${kind} continues the answer where the prefill stops`);
    if (kind === "vllm") {
      // Without continue_final_message vLLM starts a new assistant turn.
      const fresh = await observe(`${sim.url}/v1/chat/completions`, { body: JSON.stringify({ ...body, continue_final_message: undefined, add_generation_prompt: undefined }) });
      assert.notEqual(prefix + sseContent(fresh.body), full);
    }
    sim.killGroup();
  }
});

test("SSE framing: role first, content deltas, a finish chunk, a usage chunk, then [DONE]", async (t) => {
  const sim = await startSim(t, ["--kind", "vllm", "--port", "0", "--load-time", "0s", "--model", "m"]);
  const r = await observe(`${sim.url}/v1/chat/completions`, { body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "x" }], stream: true, max_tokens: 2, stream_options: { include_usage: true } }) });
  assert.equal(r.outcome, "complete");
  assert.match(String(r.headers["content-type"]), /^text\/event-stream/);
  const data = sseData(r.body);
  assert.equal(data.at(-1), "[DONE]");
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d) as { object: string; choices: { delta: Record<string, string>; finish_reason: string | null }[]; usage: unknown });
  assert.deepEqual(chunks[0]!.choices[0]!.delta, { role: "assistant", content: "" });
  assert.equal(chunks.filter((c) => c.choices[0]?.delta.content).length, 2);
  assert.equal(chunks.at(-2)!.choices[0]!.finish_reason, "length");
  assert.deepEqual(chunks.at(-1)!.choices, []);
  assert.ok(chunks.at(-1)!.usage);
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk"));
});

test("context overflow answers 400 with each server's own message", async (t) => {
  const expectations = { vllm: /However, the model's context length is only 64 tokens/, llamacpp: /exceeds the available context size/, ollama: /prompt too long; exceeded max context length/ };
  for (const kind of ["vllm", "llamacpp", "ollama"] as const) {
    const model = kind === "ollama" ? "llama3.1:8b" : "m";
    const sim = await startSim(t, ["--kind", kind, "--port", "0", "--load-time", "0s", "--model", model, "--max-model-len", "64"]);
    if (kind === "llamacpp") while ((await fetch(`${sim.url}/health`)).status !== 200) await new Promise((r) => setTimeout(r, 20));
    const r = await fetch(`${sim.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 100 }) });
    assert.equal(r.status, 400, kind);
    assert.match(await r.text(), expectations[kind]);
    sim.killGroup();
  }
});
