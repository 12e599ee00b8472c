/** What an answer becomes in the store, or why it is not kept. Pure. */
import type { CacheConfig } from "../config/types.ts";
import type { Endpoint } from "../router/router.ts";
import type { EmbeddingTarget } from "./embeddings.ts";
import type { NewEntry } from "./db.ts";
import { entryBytes } from "./eviction.ts";
import { prepareKey, type SkipReason } from "./key.ts";
import { isAnswer } from "./marks.ts";
import { bandKeys, BANDS, gramVector, MAX_SIMILAR_CHARS, minhash } from "./similarity.ts";

/** An answer waiting to be written. */
export interface Pending {
  readonly route: string;
  readonly endpoint: Endpoint;
  readonly request: unknown;
  readonly response: unknown;
  readonly at: number;
  /** The route's embeddings tier (`cache_embeddings`): the prompt gets a vector once stored. */
  readonly embed?: EmbeddingTarget;
}

/** A row to write, with what its prompt's embedding needs: the similarity text and the scope. */
export interface PreparedEntry extends NewEntry {
  readonly text: string;
  readonly scope32: number;
}

/**
 * The row for an answer: its keys, its answer as JSON, its trigram vector and
 * LSH bands (prompts up to MAX_SIMILAR_CHARS: longer ones are matched
 * exactly only), the bytes it is charged. Throws only on input that cannot
 * be serialised (the caller counts it as malformed).
 */
export function entryFor(p: Pending, config: Pick<CacheConfig, "multi_turn" | "max_bytes">): PreparedEntry | SkipReason {
  const prepared = prepareKey(p.route, p.endpoint, p.request, { multiTurn: config.multi_turn, forStore: true });
  if (!prepared.ok) return prepared.reason;
  if (!isAnswer(p.response)) return "no_answer";
  const response = JSON.stringify(p.response);
  const grams = prepared.value.text.length <= MAX_SIMILAR_CHARS ? gramVector(prepared.value.text) : undefined;
  const bytes = entryBytes(Buffer.byteLength(response), grams ? grams.ids.length * 8 : 0, grams ? BANDS : 0);
  if (bytes > config.max_bytes) return "too_large";
  const bands = grams && grams.ids.length > 0 ? bandKeys(minhash(grams.ids), prepared.value.scope32) : undefined;
  return { key: prepared.value.key, route: p.route, at: p.at, numbers: prepared.value.numbers, grams, bands, response, bytes, text: prepared.value.text, scope32: prepared.value.scope32 };
}
