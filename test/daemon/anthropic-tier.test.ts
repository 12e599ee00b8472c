/**
 * A team's fallback chain across providers — an Anthropic model first, then an OpenAI-compatible one,
 * then a smaller Anthropic model — served through a real llmsup daemon to the official openai client:
 * every tier answers in OpenAI's shapes, and failures of the Anthropic tiers go where every tier's go.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import OpenAI from "openai";
import { Agent, fetch as undiciFetch } from "undici";
import { canonicalToolCall, canonicalTokens, chatKey } from "../../src/sim/backend/answer.ts";
import { CONTINUE_PROMPT } from "../../src/router/continuation.ts";
import { startDaemon, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";
import { startSim } from "../helpers/sim.ts";

const CLAUDE_KEY = "sk-ant-api03-primary-key-for-tests-0123456789abcdef";
const HAIKU_KEY = "sk-ant-api03-fallback-key-for-tests-0123456789abcdef";
const OPENAI_KEY = "sk-openai-test-key-0123456789abcdef";

const canonical = (messages: { role: string; content: string }[]) => canonicalTokens(chatKey(messages)).join("");

interface SimState {
  requests: number;
  last_request: { messages?: { role: string; content: unknown }[]; max_tokens?: number; system?: unknown } | undefined;
}
/** A streamed chat answer as the client assembles it: the text, the last finish_reason, the usage chunk. */
async function readStream(stream: AsyncIterable<OpenAI.ChatCompletionChunk>): Promise<{ text: string; finish: string | null; usage: OpenAI.CompletionUsage | undefined }> {
  let text = "";
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const c of stream) {
    text += c.choices[0]?.delta.content ?? "";
    finish = c.choices[0]?.finish_reason ?? finish;
    if (c.usage) usage = c.usage;
  }
  return { text, finish, usage };
}

const state = async (url: string) => (await (await fetch(`${url}/_sim/state`)).json()) as SimState;

test("a fallback chain Anthropic → OpenAI → smaller Anthropic model, through the daemon to the openai client", async (t) => {
  const fast = ["--ttft", "5ms", "--token-rate", "1000"];
  // The primary provider serves one model per scenario, so that one scenario's breaker or cooldown is not another's.
  const claude = await startSim(t, ["--kind", "anthropic", "--port", "0", "--api-key", CLAUDE_KEY, "--model", "claude-sonnet-4-5", "--model", "claude-opus-4-1", "--model", "claude-opus-4-0", "--model", "claude-sonnet-4-0", "--model", "claude-3-5-haiku", ...fast]);
  const openai = await startSim(t, ["--kind", "vllm", "--port", "0", "--load-time", "0s", "--model", "gpt-4o-mini", ...fast]);
  const haiku = await startSim(t, ["--kind", "anthropic", "--port", "0", "--api-key", HAIKU_KEY, "--model", "claude-haiku-4-6", ...fast]);
  const files = await writeDaemonConfig(t, [], "");
  const keyFile = path.join(files.dir, "claude.key");
  writeFileSync(keyFile, `${CLAUDE_KEY}\n`, { mode: 0o600 });
  const chain = (model: string) =>
    `[[route]]\nmodel = "${model}"\ntiers = [{ backend = "claude", model = "${model === "team" ? "claude-sonnet-4-5" : model}" }, { backend = "openai", model = "gpt-4o-mini" }, { backend = "haiku", model = "claude-haiku-4-6" }]\n`;
  writeFileSync(
    files.config,
    readFileSync(files.config, "utf8") +
      `[[backend]]\nname = "claude"\nkind = "anthropic"\nurl = "${claude.url}"\napi_key_file = "${keyFile}"\n\n` +
      `[[backend]]\nname = "openai"\nkind = "openai"\nurl = "${openai.url}/v1"\napi_key_env = "TEST_OPENAI_KEY"\n\n` +
      `[[backend]]\nname = "haiku"\nkind = "anthropic"\nurl = "${haiku.url}"\napi_key_env = "TEST_HAIKU_KEY"\n\n` +
      chain("team") +
      chain("claude-opus-4-1") +
      chain("claude-opus-4-0") +
      chain("claude-3-5-haiku") +
      `[[route]]\nmodel = "continued"\ntiers = [{ backend = "claude", model = "claude-sonnet-4-0" }, { backend = "haiku", model = "claude-haiku-4-6" }]\n` +
      `[[route]]\nmodel = "prefilled"\ntiers = [{ backend = "openai", model = "gpt-4o-mini" }, { backend = "claude", model = "claude-sonnet-4-5" }]\n`,
  );
  const d = await startDaemon(t, files, { TEST_OPENAI_KEY: OPENAI_KEY, TEST_HAIKU_KEY: HAIKU_KEY });
  await waitStatus(d, "every route on its first tier, the Anthropic backends probed healthy", (s) => s.router.routes.every((r) => r.serving_tier === 0) && s.backends.every((b) => b.health === "healthy"), 15_000);

  const agent = new Agent({ connect: { socketPath: files.socket } });
  t.after(() => agent.close());
  const client = new OpenAI({ baseURL: "http://llmsup/v1", apiKey: "unused", maxRetries: 0, timeout: 20_000, fetch: ((url: string, init: object) => undiciFetch(url, { ...init, dispatcher: agent })) as unknown as typeof fetch });

  await t.test("a JSON answer from the Anthropic tier: the canonical text of the whole conversation, the system prompt sent as system, max_tokens set, usage in OpenAI's terms", async () => {
    const messages = [
      { role: "system" as const, content: "You are terse." },
      { role: "user" as const, content: "What is a tier?" },
    ];
    const { data, response } = await client.chat.completions.create({ model: "team", messages }).withResponse();
    assert.equal(response.headers.get("x-llmsup-tier"), "0");
    assert.equal(response.headers.get("x-llmsup-backend"), "claude");
    assert.equal(data.object, "chat.completion");
    assert.equal(data.choices[0]!.message.content, canonical(messages));
    assert.equal(data.choices[0]!.finish_reason, "stop");
    assert.ok(data.usage && data.usage.prompt_tokens > 0);
    assert.equal(data.usage.completion_tokens, canonicalTokens(chatKey(messages)).length);
    assert.equal(data.usage.total_tokens, data.usage.prompt_tokens + data.usage.completion_tokens);
    const sent = (await state(claude.url)).last_request!;
    assert.equal(sent.system, "You are terse.");
    assert.deepEqual(sent.messages, [{ role: "user", content: "What is a tier?" }]);
    assert.equal(typeof sent.max_tokens, "number", "max_tokens is always set for Anthropic");
  });

  await t.test("a streamed answer: OpenAI chunks carrying the whole text, finish_reason stop, and the usage chunk asked for", async () => {
    const messages = [{ role: "user" as const, content: "Stream a sentence." }];
    const stream = await client.chat.completions.create({ model: "team", messages, stream: true, stream_options: { include_usage: true } });
    const { text, finish, usage } = await readStream(stream);
    assert.equal(text, canonical(messages));
    assert.equal(finish, "stop");
    assert.ok(usage, "the usage chunk came");
    assert.equal(usage.completion_tokens, canonicalTokens(chatKey(messages)).length);
    assert.ok(usage.prompt_tokens > 0);
  });

  await t.test("a completion request: its prompt asked as one user turn, the answer a text_completion", async () => {
    const c = await client.completions.create({ model: "team", prompt: "Once upon a time", max_tokens: 5 });
    assert.equal(c.object, "text_completion");
    assert.equal(c.choices[0]!.text, canonicalTokens(chatKey([{ role: "user", content: "Once upon a time" }])).slice(0, 5).join(""));
    assert.equal(c.choices[0]!.finish_reason, "length");
    assert.equal(c.usage?.completion_tokens, 5);
  });

  await t.test("an embeddings request passes over the Anthropic tiers, blaming neither: the OpenAI-compatible tier answers it; a route of Anthropic tiers only says no tier serves it (400 endpoint_not_served)", async () => {
    const before = (await state(claude.url)).requests;
    const { data, response } = await client.embeddings.create({ model: "team", input: "x" }).withResponse();
    assert.equal(response.headers.get("x-llmsup-backend"), "openai");
    assert.equal(response.headers.get("x-llmsup-tier"), "1");
    assert.ok(data.data[0]!.embedding.length > 0);
    await assert.rejects(
      client.embeddings.create({ model: "continued", input: "x" }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && (e.error as { code?: string } | undefined)?.code === "endpoint_not_served" && /no embedding API/.test(e.message),
    );
    assert.equal((await state(claude.url)).requests, before, "nothing was sent to Anthropic");
    const s = await waitStatus(d, "status", () => true);
    assert.ok(s.json.router.routes.every((r) => r.serving_tier === 0), "no route left its first tier over it");
  });

  await t.test("tools: the Anthropic tool use streamed as OpenAI tool-call deltas, assembled by the openai client into the call and its JSON arguments; the tool result goes back as a tool_result", async () => {
    const messages = [{ role: "user" as const, content: "Look it up." }];
    const tools = [{ type: "function" as const, function: { name: "lookup", description: "find things", parameters: { type: "object", properties: { query: { type: "string" } } } } }];
    const s = client.chat.completions.stream({ model: "team", messages, tools, tool_choice: "required" });
    let pieces = 0;
    s.on("tool_calls.function.arguments.delta", () => pieces++);
    const done = await s.finalChatCompletion();
    const call = done.choices[0]!.message.tool_calls![0]!;
    assert.equal(done.choices[0]!.finish_reason, "tool_calls");
    assert.equal(call.type === "function" && call.function.name, "lookup");
    const expected = canonicalToolCall(chatKey(messages), [{ function: { name: "lookup" } }]).pieces.join("");
    assert.deepEqual(call.type === "function" && JSON.parse(call.function.arguments), JSON.parse(expected));
    assert.ok(pieces > 3, `the arguments came in pieces (${pieces})`);
    assert.equal((await state(claude.url)).last_request!.messages!.length, 1);

    const answered = await client.chat.completions.create({ model: "team", tools, messages: [...messages, done.choices[0]!.message, { role: "tool", tool_call_id: call.id, content: "found: 42" }] });
    assert.equal(answered.choices[0]!.finish_reason, "stop");
    assert.equal(typeof answered.choices[0]!.message.content, "string");
    const sent = (await state(claude.url)).last_request!.messages!;
    assert.deepEqual(sent.map((m) => m.role), ["user", "assistant", "user"]);
    assert.deepEqual((sent[2]!.content as { type: string; tool_use_id: string }[])[0], { type: "tool_result", tool_use_id: call.id, content: "found: 42" });
  });

  await t.test("a 429 with retry-after beyond the wait: the Anthropic tier cools down and the OpenAI tier answers", async () => {
    await claude.setFault({ rate_limit: { count: 1, retry_after: 30 } });
    const messages = [{ role: "user" as const, content: "Rate limited?" }];
    const { data, response } = await client.chat.completions.create({ model: "claude-opus-4-0", messages }).withResponse();
    assert.equal(response.headers.get("x-llmsup-tier"), "1");
    assert.equal(response.headers.get("x-llmsup-backend"), "openai");
    assert.equal(data.choices[0]!.message.content, canonical(messages));
    const s = await waitStatus(d, "the rate-limited route served by its OpenAI tier", (x) => x.router.routes.find((r) => r.model === "claude-opus-4-0")!.serving_tier === 1, 5_000);
    assert.equal(s.json.router.routes.find((r) => r.model === "team")!.serving_tier, 0, "another model of the same backend is not cooled down");
    await claude.setFault({});
  });

  await t.test("a 529 overload: retried once on the Anthropic tier, then the OpenAI tier answers", async () => {
    await claude.setFault({ status: { code: 529, count: 2 } });
    const before = (await state(claude.url)).requests;
    const messages = [{ role: "user" as const, content: "Overloaded?" }];
    const { data, response } = await client.chat.completions.create({ model: "claude-opus-4-1", messages }).withResponse();
    assert.equal(response.headers.get("x-llmsup-tier"), "1");
    assert.equal(response.headers.get("x-llmsup-attempts"), "3");
    assert.equal(data.choices[0]!.message.content, canonical(messages));
    assert.equal((await state(claude.url)).requests - before, 2, "the overloaded tier was asked twice");
    await claude.setFault({});
  });

  await t.test("a refused key (401) on the Anthropic tier falls over to the next tier; the key reaches no client", async () => {
    await claude.setFault({ status: { code: 401, count: 1, message: "invalid x-api-key", echo_auth: true } });
    const before = (await state(claude.url)).requests;
    const messages = [{ role: "user" as const, content: "Refused?" }];
    const { data, response } = await client.chat.completions.create({ model: "claude-3-5-haiku", messages }).withResponse();
    assert.equal(response.headers.get("x-llmsup-tier"), "1");
    assert.equal((await state(claude.url)).requests - before, 1, "the Anthropic tier was asked, and refused");
    assert.equal(data.choices[0]!.message.content, canonical(messages));
    const s = await waitStatus(d, "the refused tier out", (x) => x.router.routes.find((r) => r.model === "claude-3-5-haiku")!.serving_tier === 1, 5_000);
    const secret = "primary-key-for-tests";
    assert.ok(!JSON.stringify(s.json).includes(secret) && !d.stdout().includes(secret) && !d.stderr().includes(secret), "the echoed key is in no status or log line");
    await claude.setFault({});
  });

  await t.test("a stream broken mid-answer by an in-stream error event is finished on the Anthropic tier whose model takes no prefill: asked again without prefill, the answer is whole, and the tier is remembered as prefill-free", async () => {
    await claude.setFault({ error_after: 6 });
    const ask = async (content: string) => {
      const messages = [{ role: "user" as const, content }];
      const stream = await client.chat.completions.create({ model: "continued", messages, stream: true, stream_options: { include_usage: true } });
      const { text, finish, usage } = await readStream(stream);
      return { text, finish, usage, expected: canonical(messages), tokens: canonicalTokens(chatKey(messages)).length };
    };
    const before = (await state(haiku.url)).requests;
    const first = await ask("Tell me a long story.");
    assert.equal(first.text, first.expected, "the client got the whole answer, once");
    assert.equal(first.finish, "stop");
    assert.ok(first.usage && first.usage.completion_tokens >= first.tokens, "usage counts both tiers' tokens");
    const haikuState = await state(haiku.url);
    assert.equal(haikuState.requests - before, 2, "the prefill was refused once, then the prefill-free form answered");
    const last = haikuState.last_request!.messages!;
    assert.deepEqual(last.slice(-2).map((m) => m.role), ["assistant", "user"]);
    assert.equal(last[last.length - 1]!.content, CONTINUE_PROMPT);

    const second = await ask("Tell me another long story.");
    assert.equal(second.text, second.expected);
    assert.equal((await state(haiku.url)).requests - haikuState.requests, 1, "remembered: no prefill is tried again");
    await claude.setFault({});
  });

  await t.test("a stream cut on the OpenAI tier is finished by an Anthropic model that takes a prefill: the partial answer as the final assistant turn, only the rest relayed", async () => {
    await openai.setFault({ cut_after: 5 });
    const before = (await state(claude.url)).requests;
    const messages = [{ role: "user" as const, content: "Explain the chain." }];
    const stream = await client.chat.completions.create({ model: "prefilled", messages, stream: true });
    let text = "";
    for await (const c of stream) text += c.choices[0]?.delta.content ?? "";
    assert.equal(text, canonical(messages));
    const s = await state(claude.url);
    assert.equal(s.requests - before, 1, "one request: the prefill was taken");
    const sent = s.last_request!.messages!;
    assert.deepEqual(sent.map((m) => m.role), ["user", "assistant"]);
    assert.equal(sent[1]!.content, canonicalTokens(chatKey(messages)).slice(0, 5).join(""));
    await openai.setFault({});
  });

  await t.test("'prompt is too long' from the Anthropic tier is the context class: the next tier is asked, and nothing is held against the first", async () => {
    await claude.setFault({ context_error: true });
    const messages = [{ role: "user" as const, content: "A very long prompt." }];
    const { data, response } = await client.chat.completions.create({ model: "continued", messages }).withResponse();
    assert.equal(response.headers.get("x-llmsup-tier"), "1");
    assert.equal(response.headers.get("x-llmsup-backend"), "haiku");
    assert.equal(data.choices[0]!.message.content, canonical(messages));
    await claude.setFault({});
    const again = await client.chat.completions.create({ model: "continued", messages: [{ role: "user", content: "Short." }] }).withResponse();
    assert.equal(again.response.headers.get("x-llmsup-tier"), "0", "the first tier still serves");
  });

  await t.test("the Anthropic backends' health probes (GET /v1/models with x-api-key and anthropic-version) kept them healthy all along", async () => {
    const s = await waitStatus(d, "status", () => true);
    const health = Object.fromEntries(s.json.backends.map((b) => [b.name, b.health]));
    assert.deepEqual(health, { claude: "healthy", openai: "healthy", haiku: "healthy" });
    assert.ok(!s.json.events.some((e) => /claude|haiku/.test(e.summary) && /down|unreachable/i.test(e.summary)), s.json.events.map((e) => e.summary).join("\n"));
  });
});
