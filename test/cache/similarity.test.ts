/** The near-duplicate measure: trigram TF-IDF cosine, and the LSH bands that find candidates. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { similarityText } from "../../src/cache/key.ts";
import { bandKeys, BANDS, cosine, gramVector, minhash, packVector, unpackVector } from "../../src/cache/similarity.ts";

const vec = (s: string) => gramVector(similarityText(s));
const flat = () => 0;
const sim = (a: string, b: string) => cosine(vec(a), vec(b), flat, 0);
const sharedBands = (a: string, b: string, scopeA = 1, scopeB = 1) => {
  const ka = new Set(bandKeys(minhash(vec(a).ids), scopeA));
  return bandKeys(minhash(vec(b).ids), scopeB).filter((k) => ka.has(k)).length;
};

test("the same question written differently is 1; rephrasings are close; other questions are far", () => {
  assert.equal(sim("How do GPUs fail?", "how do gpus FAIL"), 1);
  assert.ok(sim("Explain the difference between TCP and UDP.", "Please explain the difference between TCP and UDP.") >= 0.9);
  assert.ok(sim("Explain the difference between TCP and UDP.", "Explain the difference between UDP and TCP") >= 0.9, "word order of a few words");
  assert.ok(sim("What is the capital of France?", "What's the capital of France?") >= 0.85);
  assert.ok(sim("What is the capital of France?", "What is the capital of Spain?") < 0.85);
  assert.ok(sim("How do GPUs fail?", "What is the capital of France?") < 0.1);
});

test("the measure is symmetric, bounded, and 0 for empty text", () => {
  const pairs = [
    ["a b c", "a b c d"],
    ["restart the vllm server", "how to restart vllm"],
  ];
  for (const [a, b] of pairs) {
    const ab = sim(a!, b!);
    assert.ok(Math.abs(ab - sim(b!, a!)) < 1e-12);
    assert.ok(ab >= 0 && ab <= 1);
  }
  assert.equal(cosine(gramVector(""), vec("x"), flat, 0), 0);
});

test("IDF: grams every stored prompt has count less than the ones that tell questions apart", () => {
  const a = vec("how do i sort a list in python");
  const b = vec("how do i sort a dict in python");
  // A store full of "how do i … in python" questions: their shared grams are common.
  const common = new Set(vec("how do i in python sort a").ids);
  const dfOf = (id: number) => (common.has(id) ? 5_000 : 3);
  assert.ok(cosine(a, b, dfOf, 10_000) < cosine(a, b, flat, 0), "the differing word weighs more");
  // With one prompt stored, IDF is damped: the threshold means what it means in a full store.
  const one = new Set(a.ids);
  const small = cosine(b, a, (id) => (one.has(id) ? 1 : 0), 1);
  assert.ok(Math.abs(small - cosine(a, b, flat, 0)) < 0.02, `${small}`);
});

test("gram vectors survive packing; bytes that are not a vector are refused", () => {
  const v = vec("the quick brown fox jumps over the lazy dog");
  const back = unpackVector(packVector(v))!;
  assert.deepEqual([...back.ids], [...v.ids]);
  assert.deepEqual([...back.counts], [...v.counts]);
  assert.equal(unpackVector(new Uint8Array(7)), undefined);
  const scrambled = unpackVector(new Uint8Array(new Uint32Array([5, 3, 1, 1]).buffer))!;
  assert.ok(cosine(scrambled, v, flat, 0) >= 0, "a damaged vector gives some similarity, no hang");
  // An unaligned view (as SQLite may hand back) reads the same.
  const bytes = packVector(v);
  const shifted = new Uint8Array(bytes.length + 1);
  shifted.set(bytes, 1);
  assert.deepEqual([...unpackVector(shifted.subarray(1))!.ids], [...v.ids]);
});

test("LSH: near-duplicates share bands, unrelated prompts do not, and scopes never meet", () => {
  assert.equal(sharedBands("How do GPUs fail?", "How do GPUs fail?"), BANDS);
  assert.ok(sharedBands("Explain the difference between TCP and UDP.", "Please explain the difference between TCP and UDP.") >= 1);
  assert.equal(sharedBands("How do GPUs fail?", "What is the capital of France?"), 0);
  assert.equal(sharedBands("How do GPUs fail?", "How do GPUs fail?", 1, 2), 0, "the scope seeds every band key");
  for (const k of bandKeys(minhash(vec("anything").ids), 0xffffffff)) assert.ok(Number.isSafeInteger(k) && k >= 0);
});

test("LSH recall: near-duplicates above the default threshold are found in nearly every case", () => {
  // Deterministic edits of varied prompts: a word dropped, a word added, a typo.
  const words = "gpu memory driver kernel thermal power clock queue batch prompt context vector layer weight sample output server engine cache route".split(" ");
  let near = 0;
  let found = 0;
  for (let i = 0; i < 400; i++) {
    const w = Array.from({ length: 8 + (i % 7) }, (_, j) => words[(i * 7 + j * 13 + ((i * j) % 5)) % words.length]!);
    const a = w.join(" ");
    const edited = [...w];
    if (i % 3 === 0) edited.splice(i % w.length, 1);
    else if (i % 3 === 1) edited.splice(i % w.length, 0, "please");
    else edited[i % w.length] = edited[i % w.length]!.replace(/.$/, "x");
    const b = edited.join(" ");
    if (sim(a, b) < 0.85) continue;
    near++;
    if (sharedBands(a, b) > 0) found++;
  }
  assert.ok(near > 100, `enough near pairs (${near})`);
  assert.ok(found / near >= 0.97, `recall ${found}/${near}`);
});

test("the match served: at or above the threshold, same numbers, most similar, newest on a tie", async () => {
  const { bestMatch } = await import("../../src/cache/nearest.ts");
  type Cand = Parameters<typeof bestMatch>[1][number];
  const cand = (id: number, text: string, createdAt: number, numbers = ""): Cand => ({ id, createdAt, numbers, grams: vec(text) });
  const q = { grams: vec("restart the vllm server after the update"), numbers: "" };
  const pick = (cs: Cand[], threshold = 0.85) => bestMatch(q, cs, () => 0, 0, threshold)?.id;
  assert.equal(pick([cand(1, "restart the vllm server after the update", 10), cand(2, "restart the vllm server after the update", 20)]), 2, "newest on a tie");
  assert.equal(pick([cand(1, "restart the vllm server after an update", 30), cand(2, "restart the vllm server after the update", 10)]), 2, "most similar first");
  assert.equal(pick([cand(1, "restart the vllm server after the update", 10, "8080")]), undefined, "other numbers");
  assert.equal(pick([cand(1, "restart the ollama server", 10)]), undefined, "below the threshold");
  assert.equal(pick([cand(1, "restart the ollama server", 10)], 0.1), 1, "the threshold is the caller's");
  assert.equal(pick([{ id: 1, createdAt: 1, numbers: "", grams: undefined }]), undefined, "a candidate without a vector");
});
