/**
 * The embeddings tier of a route (`cache_embeddings = { backend, model }`):
 * POST /v1/embeddings in OpenAI's shape, which vLLM, Ollama (its
 * OpenAI-compatible API), llama-server (--embeddings) and OpenAI serve alike.
 * The request is a thin shell; reading the answer is pure (embeddingsOf).
 */
import type { BackendConfig } from "../config/types.ts";
import { apiKeyIfReadable } from "../health/api-key.ts";

export interface EmbeddingTarget {
  readonly backend: string;
  readonly model: string;
}

/** Embeds texts (one vector each, in order); rejects on any failure, within `timeoutMs`. */
export type Embedder = (target: EmbeddingTarget, texts: readonly string[], timeoutMs: number, signal?: AbortSignal) => Promise<number[][]>;

/** Why an embeddings answer is unusable; the message names it without quoting the answer. */
export class EmbeddingError extends Error {}

/** The vectors of an OpenAI embeddings answer, by `index`; throws EmbeddingError when it is not one answer per text. Pure. */
export function embeddingsOf(body: unknown, count: number): number[][] {
  const data = (body as { data?: unknown } | null)?.data;
  if (!Array.isArray(data)) throw new EmbeddingError("the answer has no data list");
  const out: (number[] | undefined)[] = new Array(count).fill(undefined);
  data.forEach((d, i) => {
    const item = d as { index?: unknown; embedding?: unknown } | null;
    const index = typeof item?.index === "number" ? item.index : i;
    if (!Number.isInteger(index) || index < 0 || index >= count) throw new EmbeddingError(`an embedding has index ${String(index)} for ${count} inputs`);
    out[index] = vectorOf(item?.embedding);
  });
  const missing = out.findIndex((v) => v === undefined);
  if (missing >= 0) throw new EmbeddingError(`no embedding for input ${missing}`);
  const vectors = out as number[][];
  if (vectors.some((v) => v.length !== vectors[0]!.length)) throw new EmbeddingError("the embeddings differ in length");
  return vectors;
}

function vectorOf(e: unknown): number[] {
  if (Array.isArray(e)) {
    if (e.length === 0 || !e.every((x) => typeof x === "number" && Number.isFinite(x))) throw new EmbeddingError("an embedding is not a list of numbers");
    return e as number[];
  }
  if (typeof e === "string") {
    // encoding_format "base64": little-endian float32.
    const buf = Buffer.from(e, "base64");
    if (buf.length === 0 || buf.length % 4 !== 0) throw new EmbeddingError("a base64 embedding is not float32 values");
    return Array.from({ length: buf.length / 4 }, (_, i) => buf.readFloatLE(i * 4));
  }
  throw new EmbeddingError("an embedding is missing");
}

/** The backend's /v1/embeddings URL: its url with any trailing /v1 (as the router's upstream paths). */
export function embeddingsUrl(backendUrl: string): string {
  const u = new URL(backendUrl);
  const base = u.pathname.replace(/\/+$/, "").replace(/\/v1$/, "");
  return `${u.origin}${base}/v1/embeddings`;
}

/**
 * The embedder over HTTP, finding the backend by name at each call (so a
 * reload's new URL or key applies). Errors name the backend and what went
 * wrong, never the key or the texts.
 */
export function httpEmbedder(backends: () => readonly BackendConfig[]): Embedder {
  return async (target, texts, timeoutMs, signal) => {
    const backend = backends().find((b) => b.name === target.backend);
    if (!backend) throw new EmbeddingError(`backend ${target.backend} is not configured`);
    const key = apiKeyIfReadable(backend);
    const timeout = AbortSignal.timeout(Math.max(1, timeoutMs));
    const res = await fetch(embeddingsUrl(backend.url), {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
      body: JSON.stringify({ model: target.model, input: texts, encoding_format: "float" }),
      signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
    }).catch((e: unknown) => {
      const err = e as { name?: string; message?: string; cause?: { code?: string } };
      throw new EmbeddingError(err.name === "TimeoutError" ? `no answer from ${target.backend} within ${timeoutMs}ms` : `${target.backend} unreachable (${err.cause?.code ?? err.name ?? "error"})`);
    });
    let body: unknown;
    try {
      body = await res.json();
    } catch (e) {
      const err = e as { name?: string };
      throw new EmbeddingError(err.name === "TimeoutError" ? `no whole answer from ${target.backend} within ${timeoutMs}ms` : `${target.backend} answered ${res.status} without JSON`);
    }
    if (res.status >= 400) throw new EmbeddingError(`${target.backend} answered ${res.status}`);
    return embeddingsOf(body, texts.length);
  };
}
