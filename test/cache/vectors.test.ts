/**
 * Semantic matching, pure parts: the vector maths, the in-memory index and
 * its selection, reading an embeddings answer, the background queue's bounds,
 * and the simulator's embedding model that tests rely on.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { EmbedQueue, type EmbedJob } from "../../src/cache/embed-queue.ts";
import { EmbeddingError, embeddingsOf, embeddingsUrl } from "../../src/cache/embeddings.ts";
import { vectorBytes } from "../../src/cache/eviction.ts";
import { better, cosineOf, dotAt, normalise, packFloat32, unpackFloat32, VectorIndex, VectorIndexes } from "../../src/cache/vectors.ts";
import { semanticEmbedding, simEmbedding } from "../../src/sim/backend/semantic-embedding.ts";
import { embeddingOf } from "../../src/sim/backend/answer.ts";

const unit = (...xs: number[]) => normalise(xs)!;

test("normalise gives a unit vector, and nothing for an empty, zero or non-finite one", () => {
  const v = normalise([3, 4])!;
  assert.ok(Math.abs(v[0]! - 0.6) < 1e-6 && Math.abs(v[1]! - 0.8) < 1e-6);
  assert.equal(normalise([]), undefined);
  assert.equal(normalise([0, 0, 0]), undefined);
  assert.equal(normalise([1, Number.NaN]), undefined);
  assert.equal(normalise([1, Number.POSITIVE_INFINITY]), undefined);
});

test("dotAt reads the row at an offset, any length (the unrolled loop and its tail agree with a plain sum)", () => {
  for (const n of [1, 3, 4, 5, 8, 13]) {
    const q = Float32Array.from({ length: n }, (_, i) => (i % 3) - 1 + i / 10);
    const data = new Float32Array(n * 3);
    for (let i = 0; i < data.length; i++) data[i] = Math.sin(i);
    const plain = (row: number) => q.reduce((s, x, i) => s + x * data[row * n + i]!, 0);
    for (const row of [0, 1, 2]) assert.ok(Math.abs(dotAt(q, data, row * n) - plain(row)) < 1e-5, `n=${n} row=${row}`);
  }
  assert.ok(Math.abs(cosineOf([1, 0], [1, 1]) - Math.SQRT1_2) < 1e-6);
  assert.equal(cosineOf([1, 0], [1, 0, 0]), 0, "different lengths never compare");
});

test("a vector survives packing as little-endian float32; a torn or non-finite blob is refused", () => {
  const v = Float32Array.from([0.5, -1.25, 3e-8, 1]);
  const blob = packFloat32(v);
  assert.equal(blob.byteLength, 16);
  assert.equal(new DataView(blob.buffer).getFloat32(4, true), -1.25);
  assert.deepEqual(unpackFloat32(blob), v);
  assert.equal(unpackFloat32(blob.subarray(0, 7)), undefined);
  assert.equal(unpackFloat32(new Uint8Array(0)), undefined);
  assert.equal(unpackFloat32(packFloat32(Float32Array.from([Number.NaN]))), undefined);
});

test("nearest: the most similar of the same scope and numbers, not expired, at or above the threshold; the newest on a tie", () => {
  const ix = new VectorIndex(3);
  ix.set(1, unit(1, 0, 0), 7, "", 100);
  ix.set(2, unit(1, 0.3, 0), 7, "", 100);
  ix.set(3, unit(1, 0, 0), 8, "", 100); // another scope
  ix.set(4, unit(1, 0, 0), 7, "42", 100); // other numbers
  const q = { vector: unit(1, 0.05, 0), scope: 7, numbers: "", notBefore: 0, threshold: 0.9 };
  assert.equal(ix.nearest(q)?.id, 1);
  assert.ok(ix.nearest(q)!.similarity > 0.99 && ix.nearest(q)!.similarity <= 1);
  assert.equal(ix.nearest({ ...q, numbers: "42" })?.id, 4);
  assert.equal(ix.nearest({ ...q, scope: 9 }), undefined, "no entry of that scope");
  assert.equal(ix.nearest({ ...q, vector: unit(0, 0, 1) }), undefined, "below the threshold");
  assert.equal(ix.nearest({ ...q, notBefore: 101 }), undefined, "all expired");
  // A tie: the newer entry wins.
  ix.set(5, unit(1, 0, 0), 7, "", 200);
  assert.equal(ix.nearest(q)?.id, 5);
  ix.touchCreated(1, 300);
  assert.equal(ix.nearest(q)?.id, 1, "a newer answer under the same key is the newer one");
  assert.equal(better(0.5, 1, undefined), true);
  assert.equal(better(0.5, 1, { id: 1, similarity: 0.5, createdAt: 2 }), false);
});

test("removing swaps the last row into the hole: every remaining entry is still found, with its own vector", () => {
  const ix = new VectorIndex(4);
  const dirs = Array.from({ length: 200 }, (_, i) => unit(Math.cos(i), Math.sin(i), Math.cos(i * 7), 1 + (i % 5)));
  dirs.forEach((v, i) => ix.set(i + 1, v, 1, "", i));
  assert.equal(ix.size, 200, "grown past its first capacity");
  for (let i = 0; i < 200; i += 3) assert.equal(ix.remove(i + 1), true);
  assert.equal(ix.remove(1), false, "already gone");
  for (let i = 0; i < 200; i++) {
    const hit = ix.nearest({ vector: dirs[i]!, scope: 1, numbers: "", notBefore: 0, threshold: 0.99999 });
    if (i % 3 === 0) assert.notEqual(hit?.id, i + 1, `entry ${i + 1} was removed`);
    else assert.equal(hit?.id, i + 1, `entry ${i + 1} still found as itself`);
  }
  assert.equal(ix.size, 200 - 67);
});

test("indexes by model: one dimension per model, an entry in one model at a time", () => {
  const all = new VectorIndexes();
  assert.equal(all.set("a", 1, unit(1, 0), 1, "", 0), true);
  assert.equal(all.set("a", 2, unit(1, 0, 0), 1, "", 0), false, "another dimension for the same model");
  assert.equal(all.set("b", 2, unit(1, 0, 0), 1, "", 0), true);
  assert.equal(all.set("b", 1, unit(0, 1, 0), 1, "", 0), true, "entry 1 moves to model b");
  assert.equal(all.of("a")!.size, 0);
  assert.equal(all.dimOfEntry(1), 3);
  assert.equal(all.size, 2);
  all.remove(1);
  assert.equal(all.has(1), false);
  assert.equal(all.dimOfEntry(1), undefined);
  assert.equal(vectorBytes(256), 256 * 4 + 48);
});

test("an embeddings answer: vectors by index, floats or base64; anything else is an EmbeddingError", () => {
  const body = { object: "list", data: [{ index: 1, embedding: [0, 1] }, { index: 0, embedding: [1, 0] }] };
  assert.deepEqual(embeddingsOf(body, 2), [[1, 0], [0, 1]]);
  const b64 = Buffer.alloc(8);
  b64.writeFloatLE(0.25, 0);
  b64.writeFloatLE(-2, 4);
  assert.deepEqual(embeddingsOf({ data: [{ embedding: b64.toString("base64") }] }, 1), [[0.25, -2]]);
  assert.throws(() => embeddingsOf({ error: "x" }, 1), EmbeddingError);
  assert.throws(() => embeddingsOf({ data: [{ index: 0, embedding: [1] }] }, 2), /no embedding for input 1/);
  assert.throws(() => embeddingsOf({ data: [{ index: 5, embedding: [1] }] }, 1), EmbeddingError);
  assert.throws(() => embeddingsOf({ data: [{ embedding: ["x"] }] }, 1), EmbeddingError);
  assert.throws(() => embeddingsOf({ data: [{ embedding: [1, 2] }, { embedding: [1] }] }, 2), /differ in length/);
  assert.equal(embeddingsUrl("http://127.0.0.1:8080"), "http://127.0.0.1:8080/v1/embeddings");
  assert.equal(embeddingsUrl("https://api.openai.com/v1/"), "https://api.openai.com/v1/embeddings");
  assert.equal(embeddingsUrl("http://h:1/proxy/v1"), "http://h:1/proxy/v1/embeddings");
});

test("the background queue: bounded (more are dropped), at most `concurrency` requests, batches of one target, idle when done", async () => {
  const calls: { target: string; texts: readonly string[]; release: (v: number[][]) => void; fail: (e: Error) => void }[] = [];
  const done: string[] = [];
  const failed: string[] = [];
  const q = new EmbedQueue({
    embed: (target, texts) => new Promise((resolve, reject) => calls.push({ target: `${target.backend}/${target.model}`, texts, release: resolve, fail: reject })),
    maxQueued: 5,
    concurrency: 2,
    batch: 2,
    timeoutMs: 1_000,
    onEmbedded: (jobs) => done.push(...jobs.map((j) => j.text)),
    onFailed: (jobs) => failed.push(...jobs.map((j) => j.text)),
  });
  const job = (text: string, backend = "cpu"): EmbedJob => ({ key: text, route: "r", target: { backend, model: "m" }, text, scope: 1 });
  const pushed = ["a", "b", "c", "d", "e", "f"].map((x, i) => q.push(job(x, i === 1 ? "other" : "cpu")));
  assert.deepEqual(pushed, [true, true, true, true, true, false], "the sixth is dropped");
  await new Promise((r) => setImmediate(r));
  assert.equal(calls.length, 2, "two requests at a time");
  assert.deepEqual(calls.map((c) => [c.target, c.texts]), [["cpu/m", ["a", "c"]], ["other/m", ["b"]]], "a batch holds one target's prompts");
  assert.equal(q.queued, 2);
  const idle = q.idle();
  calls[0]!.release([[1], [2]]);
  calls[1]!.fail(new Error("down"));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(calls.slice(2).map((c) => c.texts), [["d", "e"]]);
  calls[2]!.release([[1], [2]]);
  await idle;
  assert.deepEqual(done, ["a", "c", "d", "e"]);
  assert.deepEqual(failed, ["b"]);
  q.close();
  assert.equal(q.push(job("g")), false, "closed");
});

test("the simulator's semantic embeddings: paraphrases above 0.9, unrelated questions near 0, deterministic, dimension as asked", () => {
  const cos = (a: string, b: string) => cosineOf(semanticEmbedding(a), semanticEmbedding(b));
  assert.ok(cos("How do GPUs fail?", "In what ways can GPUs break?") > 0.9);
  assert.ok(cos("How do GPUs fail?", "In what ways can GPUs break?") < 0.999, "close, not identical");
  assert.ok(cos("How can I make my server faster?", "How do I speed up my machine?") > 0.9);
  assert.ok(Math.abs(cos("How do GPUs fail?", "What is the capital of France?")) < 0.3);
  assert.ok(Math.abs(cos("In what ways can GPUs break?", "How do I bake bread?")) < 0.3);
  assert.deepEqual(semanticEmbedding("How do GPUs fail?"), semanticEmbedding("How do GPUs fail?"));
  assert.equal(semanticEmbedding("x", 384).length, 384);
  assert.equal(simEmbedding({ semanticEmbeddings: true, embeddingDim: 32 }, "How do GPUs fail?").length, 32);
  assert.deepEqual(simEmbedding({}, "hello"), embeddingOf("hello"), "without the option: the hash embedding as before");
});

test("the SIMD kernel and the JavaScript scan agree on every score and choice, through growth and removals, for dimensions not a multiple of the lanes", () => {
  for (const dim of [3, 8, 13, 384]) {
    const simd = new VectorIndex(dim);
    const js = new VectorIndex(dim, { simd: false });
    assert.equal(simd.simd, true, "Node 24 has WebAssembly SIMD");
    assert.equal(js.simd, false);
    const vec = (i: number) => normalise(Array.from({ length: dim }, (_, j) => Math.sin(i * 7.3 + j * 1.1) + (j === i % dim ? 2 : 0)))!;
    for (let i = 0; i < 300; i++) {
      simd.set(i, vec(i), i % 2, "", i);
      js.set(i, vec(i), i % 2, "", i);
    }
    for (let i = 0; i < 300; i += 4) {
      simd.remove(i);
      js.remove(i);
    }
    for (let i = 0; i < 300; i += 7) {
      const q = { vector: vec(i), scope: i % 2, numbers: "", notBefore: 0, threshold: -1 };
      const a = simd.nearest(q);
      const b = js.nearest(q);
      assert.equal(a?.id, b?.id, `dim ${dim}, query ${i}`);
      assert.ok(Math.abs(a!.similarity - b!.similarity) < 1e-5);
      if (i % 4 !== 0) assert.equal(a?.id, i, "a stored vector finds itself");
    }
  }
});

test("an index made for the vectors a store holds does not grow while they are read; past that it grows", () => {
  const all = new VectorIndexes();
  all.reserve("m", 500);
  all.set("m", 0, unit(1, 0, 0, 0), 1, "", 0);
  const bytes = all.bytes;
  for (let i = 1; i < 500; i++) all.set("m", i, unit(1, i, 0, 0), 1, "", 0);
  assert.equal(all.bytes, bytes, "no growth for the reserved rows");
  all.set("m", 500, unit(0, 1, 0, 0), 1, "", 0);
  assert.ok(all.bytes > bytes, "one more grows it");
  assert.equal(all.of("m")!.nearest({ vector: unit(0, 1, 0, 0), scope: 1, numbers: "", notBefore: 0, threshold: 0.999 })?.id, 500);
});
