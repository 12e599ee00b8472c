/**
 * The simulated embeddings endpoint with `--semantic-embeddings`: POST
 * /v1/embeddings in OpenAI's shape (the official client, floats and base64),
 * paraphrases close and unrelated texts apart, the dimension as asked, and the
 * usual faults.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI, { APIConnectionTimeoutError, APIError } from "openai";
import { cosineOf } from "../../src/cache/vectors.ts";
import { startSim } from "../helpers/sim.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";

for (const kind of ["llamacpp", "ollama", "vllm"] as const) {
  test(`${kind}: paraphrases embed close, unrelated questions apart, ${kind === "llamacpp" ? 48 : 256} floats; a 5xx and a hang as configured`, async (t) => {
    const dim = kind === "llamacpp" ? ["--embedding-dim", "48"] : [];
    const sim = await startSim(t, ["--kind", kind, "--port", "0", "--load-time", "0s", "--model", "embed", "--semantic-embeddings", ...dim]);
    await waitUntil(`${sim.url} to answer`, () => answers200(`${sim.url}/v1/models`));
    const client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 5_000 });
    const inputs = ["How do GPUs fail?", "In what ways can GPUs break?", "What is the capital of France?"];
    const viaBase64 = await client.embeddings.create({ model: "embed", input: inputs });
    const viaFloats = await client.embeddings.create({ model: "embed", input: inputs, encoding_format: "float" });
    const [a, b, c] = viaFloats.data.map((d) => d.embedding);
    assert.equal(a!.length, kind === "llamacpp" ? 48 : 256);
    assert.ok(cosineOf(a!, b!) > 0.9, `paraphrase ${cosineOf(a!, b!)}`);
    assert.ok(Math.abs(cosineOf(a!, c!)) < 0.3, `unrelated ${cosineOf(a!, c!)}`);
    viaBase64.data.forEach((d, i) => d.embedding.forEach((x, j) => assert.ok(Math.abs(x - viaFloats.data[i]!.embedding[j]!) < 1e-6)));
    const again = await client.embeddings.create({ model: "embed", input: inputs[0]!, encoding_format: "float" });
    assert.deepEqual(again.data[0]!.embedding, a, "deterministic");

    await sim.setFault({ status: { code: 503 } });
    await assert.rejects(client.embeddings.create({ model: "embed", input: "x" }), (e) => e instanceof APIError && e.status === 503);
    await sim.setFault({ hang: true });
    const hanging = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 500 });
    await assert.rejects(hanging.embeddings.create({ model: "embed", input: "x" }), APIConnectionTimeoutError);
  });
}
