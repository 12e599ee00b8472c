/**
 * Streams broken after the commit point, through the official openai client: continued on the next
 * tier by whatever it can take (assistant prefill, or the prefill-free form once a model rejects a
 * prefill), as one complete answer with a marked seam; or, where the answer's state cannot be carried
 * over, ended with an explicit stream_interrupted error that says why.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI, { APIError } from "openai";
import { canonicalTokens, chatKey } from "../../src/sim/backend/answer.ts";
import { CONTINUE_PROMPT, continueForm, isPrefillRejection, prefillRejected, Seam, trimRepeat, untransferable } from "../../src/router/continuation.ts";
import { startSim, type SimProcess } from "../helpers/sim.ts";
import { backend, startRouter, type RouterHarness } from "../helpers/router.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";

const Q = "Why do streams break?";
const TOKENS = canonicalTokens(chatKey([{ role: "user", content: Q }]));
const FULL = TOKENS.join("");

/** Cleanups of the shared simulators and router, run once at the end. */
const cleanups: (() => void | Promise<void>)[] = [];
const shared = { after: (fn: () => void | Promise<void>) => void cleanups.push(fn) };
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

async function sim(kind: string, args: string[] = []): Promise<SimProcess> {
  const s = await startSim(shared, ["--kind", kind, "--port", "0", "--load-time", "0s", ...args]);
  await waitUntil(`${s.url} to answer`, () => answers200(`${s.url}${kind === "ollama" ? "/" : "/health"}`));
  return s;
}

const FAULTS = {
  cut: ["--cut-after", "5"],
  stall: ["--stall-after", "5", "--stall-time", "30s"],
  malformed: ["--malformed-after", "5"],
} as const;
/** The fallbacks: the backend's name, its kind as declared, and whether the simulator refuses a prefill. */
const FALLBACKS = [
  { name: "vllm", kind: "vllm", sim: "vllm", rejects: false },
  { name: "llamacpp", kind: "llamacpp", sim: "llamacpp", rejects: false },
  { name: "ollama", kind: "ollama", sim: "ollama", rejects: false },
  { name: "remote", kind: "openai", sim: "llamacpp", rejects: false },
  { name: "remote-noprefill", kind: "openai", sim: "llamacpp", rejects: true },
] as const;

let h: RouterHarness;
let client: OpenAI;
let raws: string[] = [];
const sims = new Map<string, SimProcess>();

before(async () => {
  const started = await Promise.all([
    ...Object.entries(FAULTS).map(async ([name, args]) => [`p-${name}`, await sim("llamacpp", [...args])] as const),
    ...FALLBACKS.map(async (f) => [f.name, await sim(f.sim, ["--model", "fb", ...(f.rejects ? ["--reject-prefill"] : [])])] as const),
    (async () => ["p-plain", await sim("llamacpp", ["--cut-after", "5"])] as const)(),
  ]);
  for (const [name, s] of started) sims.set(name, s);
  let toml = "";
  for (const [name, s] of sims) toml += backend(name, FALLBACKS.find((f) => f.name === name)?.kind ?? "llamacpp", s.port);
  // One route per (fault, fallback): each primary (backend, model) fails on its own breaker.
  for (const fault of Object.keys(FAULTS)) {
    for (const f of FALLBACKS) {
      toml += `[[route]]\nmodel = "${fault}-${f.name}"\ntiers = [\n{ backend = "p-${fault}", model = "p-${fault}-${f.name}", idle_timeout = "300ms" },\n{ backend = "${f.name}", model = "fb" },\n]\n`;
    }
  }
  toml += `[[route]]\nmodel = "untransferable"\ntiers = [\n{ backend = "p-plain", model = "p" },\n{ backend = "llamacpp", model = "fb" },\n]\n`;
  h = await startRouter(shared, toml);
  // The client records every response's raw SSE, comments included, which the openai client drops.
  client = new OpenAI({
    baseURL: "http://llmsup/v1",
    apiKey: "unused",
    maxRetries: 0,
    timeout: 10_000,
    fetch: (async (url: string, init: RequestInit) => {
      // Without the client's signal: the recorded copy reads to the end even when the client stops reading.
      const r = await h.fetch(new URL(url).pathname, { ...init, signal: undefined } as never);
      const [mine, theirs] = r.body!.tee();
      const i = raws.push("") - 1;
      void new Response(mine).text().then((t) => (raws[i] = t));
      return new Response(theirs as ReadableStream, { status: r.status, headers: r.headers as unknown as Headers });
    }) as unknown as typeof fetch,
  });
});

async function lastRequest(s: SimProcess): Promise<Record<string, unknown>> {
  return ((await (await fetch(`${s.url}/_sim/state`)).json()) as { last_request: Record<string, unknown> }).last_request;
}

for (const fault of Object.keys(FAULTS)) {
  for (const f of FALLBACKS) {
    test(`a stream broken by a ${fault} after its first tokens is finished on ${f.name} (${f.kind}${f.rejects ? ", rejects prefill" : ""}) as one complete answer`, async () => {
      raws = [];
      const t0 = Date.now();
      const stream = await client.chat.completions.create({ model: `${fault}-${f.name}`, messages: [{ role: "user", content: Q }], stream: true, stream_options: { include_usage: true } });
      let text = "";
      let finish: string | null | undefined;
      let lastModel = "";
      let usage: OpenAI.CompletionUsage | undefined | null;
      for await (const c of stream) {
        text += c.choices[0]?.delta?.content ?? "";
        finish = c.choices[0]?.finish_reason ?? finish;
        if (c.choices.length > 0) lastModel = c.model;
        if (c.usage) usage = c.usage;
      }
      assert.equal(text, FULL, "nothing lost, nothing repeated");
      assert.equal(finish, "stop");
      assert.equal(lastModel, "fb", "the final chunks name the model that finished the answer");
      assert.equal(usage?.completion_tokens, TOKENS.length, "usage adds up both tiers' output");
      assert.equal(usage?.total_tokens, usage!.prompt_tokens + usage!.completion_tokens);
      await waitUntil("the raw stream to be recorded", () => raws[0] !== "");
      const raw = raws[0]!;
      assert.match(raw, new RegExp(`^: llmsup: the answer continues on tier 1 \\(${f.name}\\) after tier 0 broke off`, "m"), "the seam is marked");
      assert.match(raw, /data: \[DONE\]/);
      assert.doesNotMatch(raw, /"error"|does not support/i, "no prefill error reaches the client");
      const sent = await lastRequest(sims.get(f.name)!);
      const messages = sent.messages as { role: string; content: string }[];
      if (f.rejects) {
        assert.deepEqual(messages.slice(-1), [{ role: "user", content: CONTINUE_PROMPT }], "continued in the prefill-free form");
        assert.ok(prefillRejected(h.router, h.config.routes.find((r) => r.model === `${fault}-${f.name}`)!.tiers[1]!), "the rejection is remembered");
      } else {
        assert.equal(messages.at(-1)?.role, "assistant", "continued by prefill");
        assert.equal(sent.continue_final_message, f.kind === "vllm" ? true : undefined);
      }
      assert.ok(Date.now() - t0 < 3_000);
    });
  }
}

for (const [name, extra, reason] of [
  ["a tool call", { tools: [{ type: "function", function: { name: "lookup", parameters: { type: "object" } } }] }, /tool call's arguments/],
  ["json_schema output", { response_format: { type: "json_schema", json_schema: { name: "a", schema: { type: "object" } } } }, /guided decoding \(response_format json_schema\)/],
  ["n = 2", { n: 2 }, /n = 2 choices/],
] as const) {
  test(`a stream of ${name} broken mid-way ends with stream_interrupted that says why it was not continued`, async () => {
    raws = [];
    const before = (await lastRequest(sims.get("llamacpp")!)) ?? {};
    const stream = await client.chat.completions.create({ model: "untransferable", messages: [{ role: "user", content: Q }], stream: true, ...extra } as OpenAI.ChatCompletionCreateParamsStreaming);
    let got = 0;
    await assert.rejects(
      (async () => {
        for await (const c of stream) if (c.choices[0]?.delta) got++;
      })(),
      (e: unknown) => e instanceof APIError && /could not be completed.*not continued/.test(e.message) && reason.test(e.message),
    );
    assert.ok(got > 0, "the answer had begun");
    await waitUntil("the raw stream to be recorded", () => raws[0] !== "");
    assert.match(raws[0]!, /"code":"stream_interrupted"/);
    assert.doesNotMatch(raws[0]!, /\[DONE\]|: llmsup: the answer continues/);
    assert.deepEqual(await lastRequest(sims.get("llamacpp")!), before, "no other tier was asked");
  });
}

test("continuation rules, as pure functions", () => {
  assert.equal(continueForm("auto", false), "prefill");
  assert.equal(continueForm("auto", true), "free", "a learnt rejection holds for auto");
  assert.equal(continueForm(true, true), "prefill");
  assert.equal(continueForm(false, false), "free");
  assert.ok(isPrefillRejection(400, '{"error":{"message":"This model does not support assistant message prefill. The conversation must end with a user message."}}'));
  assert.ok(isPrefillRejection(400, '{"error":{"message":"Assistant response prefill is incompatible with enable_thinking."}}'));
  assert.ok(!isPrefillRejection(400, '{"error":{"message":"the request exceeds the available context size"}}'));
  assert.ok(!isPrefillRejection(500, "prefill"));
  assert.match(untransferable("chat", { messages: [], logprobs: true }) ?? "", /logprobs/);
  assert.match(untransferable("chat", { messages: [], guided_regex: "a+" }) ?? "", /guided_regex/);
  assert.match(untransferable("chat", { messages: [], response_format: { type: "json_object" } }) ?? "", /json_object/);
  assert.equal(untransferable("chat", { messages: [], response_format: { type: "text" }, n: 1 }), undefined);
  // A prefill-free continuation that starts over, or repeats the tail, is trimmed to the new text.
  const before = "The engine kept the queue steady while the kernel";
  assert.equal(trimRepeat(before, `${before} drained.`), " drained.");
  assert.equal(trimRepeat(before, " steady while the kernel drained."), " drained.");
  assert.equal(trimRepeat(before, " the kernel drained."), " the kernel drained.", "a short overlap is not a repeat");
  const seam = new Seam(before, true);
  const out = [...`${before} drained and went on.`.match(/.{1,5}/gs)!].map((p) => seam.feed(p)).join("") + seam.release();
  assert.equal(out, " drained and went on.");
});
