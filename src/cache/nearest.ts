/**
 * Choosing the near-duplicate to serve among the LSH candidates. Pure.
 *
 * A candidate qualifies when its TF-IDF cosine with the question reaches the
 * threshold and it contains the same numbers ("port 8080" is no answer to
 * "port 8081", however alike the words); the most similar one wins, the
 * newest on a tie.
 */
import type { Candidate } from "./db.ts";
import { cosineWeighted, idf, weigh, type GramVector } from "./similarity.ts";

export function bestMatch(
  query: { readonly grams: GramVector; readonly numbers: string },
  candidates: readonly Candidate[],
  dfOf: (gram: number) => number,
  indexed: number,
  threshold: number,
): { readonly id: number; readonly similarity: number } | undefined {
  // IDF once per gram for the whole lookup: the candidates share most of them.
  const memo = new Map<number, number>();
  const idfOf = (id: number) => {
    let v = memo.get(id);
    if (v === undefined) memo.set(id, (v = idf(dfOf(id), indexed)));
    return v;
  };
  const q = weigh(query.grams, idfOf);
  let best: { id: number; similarity: number; createdAt: number } | undefined;
  for (const c of candidates) {
    if (!c.grams || c.numbers !== query.numbers) continue;
    const s = cosineWeighted(q, weigh(c.grams, idfOf));
    if (s < threshold) continue;
    if (!best || s > best.similarity || (s === best.similarity && c.createdAt > best.createdAt)) best = { id: c.id, similarity: s, createdAt: c.createdAt };
  }
  return best && { id: best.id, similarity: best.similarity };
}
