/**
 * Near-duplicate prompts without a model (the GPUs are down when this runs):
 * character trigrams, TF-IDF weighted cosine for the verdict, MinHash LSH
 * bands to find candidates without scanning the store. Pure.
 *
 * - Trigrams over the similarity text padded with spaces: robust to typos,
 *   plurals, word order changes of a few words, punctuation and case.
 * - TF-IDF: sub-linear term frequency, damped inverse document frequency
 *   over the stored prompts, so the grams every prompt shares ("how do i",
 *   " the ") count less than the ones that say what the question is about.
 * - MinHash (BANDS × ROWS values) over the gram set; each band hashed with the
 *   scope into one 52-bit key. Two prompts with trigram Jaccard J share at
 *   least one band with probability 1 − (1 − J^ROWS)^BANDS: ≈0.97 at J = 0.6,
 *   ≈0.999 at J = 0.7, ≈0.01 at J = 0.15 (what unrelated questions share).
 *   A cosine of 0.85 between near-equal-length prompts means J ≈ 0.74.
 */

export const GRAM = 3;
export const BANDS = 25;
export const ROWS = 4;
/** Prompts longer than this (normalised characters) are cached for exact matches only. */
export const MAX_SIMILAR_CHARS = 4_000;

/** Trigram ids (32-bit hashes) with their counts, sorted by id. */
export interface GramVector {
  readonly ids: Uint32Array;
  readonly counts: Uint32Array;
}

/** murmur3's 32-bit finaliser: a cheap, well-mixed permutation of 32-bit values. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The trigram vector of a similarity text (see key.ts similarityText); empty for "". */
export function gramVector(text: string): GramVector {
  if (text === "") return { ids: new Uint32Array(0), counts: new Uint32Array(0) };
  const s = ` ${text} `;
  const counts = new Map<number, number>();
  for (let i = 0; i + GRAM <= s.length; i++) {
    let h = 0x811c9dc5;
    for (let j = i; j < i + GRAM; j++) h = Math.imul(h ^ s.charCodeAt(j), 0x01000193);
    const id = h >>> 0;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  const ids = Uint32Array.from(counts.keys()).sort();
  const c = new Uint32Array(ids.length);
  for (let i = 0; i < ids.length; i++) c[i] = counts.get(ids[i]!)!;
  return { ids, counts: c };
}

/** Packs a vector for storage: the ids, then the counts, as little-endian u32. */
export function packVector(v: GramVector): Uint8Array {
  const out = new Uint32Array(v.ids.length * 2);
  out.set(v.ids, 0);
  out.set(v.counts, v.ids.length);
  return new Uint8Array(out.buffer);
}

/**
 * The inverse of packVector, viewing the bytes in place when they are aligned;
 * undefined for bytes that cannot be a packed vector. (Ids out of order, as in
 * a damaged row, give a wrong similarity, never a hang: the cosine's merge
 * always advances.)
 */
export function unpackVector(bytes: Uint8Array): GramVector | undefined {
  if (bytes.byteLength % 8 !== 0) return undefined;
  const n = bytes.byteLength / 8;
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const u32 = new Uint32Array(aligned.buffer, aligned.byteOffset, 2 * n);
  return { ids: u32.subarray(0, n), counts: u32.subarray(n) };
}

/**
 * Pseudo-documents every gram is assumed to appear in: damps IDF while the
 * store is small, so that one stored prompt does not make every gram it lacks
 * look rare (the threshold would mean something else in an empty store than
 * in a full one). With thousands of prompts IDF is the usual one.
 */
export const IDF_PRIOR = 20;

/** Damped inverse document frequency of a gram found in `df` of `n` stored prompts. */
export function idf(df: number, n: number): number {
  return Math.log((n + IDF_PRIOR) / (df + IDF_PRIOR)) + 1;
}

/** A gram vector with its TF-IDF weights and norm, computed once per lookup. */
export interface Weighted {
  readonly ids: Uint32Array;
  readonly w: Float64Array;
  readonly norm: number;
}

/** Sub-linear TF times IDF for every gram; `idfOf` gives a gram's IDF (memoise it across candidates). */
export function weigh(v: GramVector, idfOf: (id: number) => number): Weighted {
  const w = new Float64Array(v.ids.length);
  let sq = 0;
  for (let i = 0; i < v.ids.length; i++) {
    const x = (1 + Math.log(v.counts[i]!)) * idfOf(v.ids[i]!);
    w[i] = x;
    sq += x * x;
  }
  return { ids: v.ids, w, norm: Math.sqrt(sq) };
}

/** Cosine of two weighted vectors, 0..1 (0 when either is empty). */
export function cosineWeighted(a: Weighted, b: Weighted): number {
  if (a.norm === 0 || b.norm === 0) return 0;
  let dot = 0;
  let i = 0;
  let j = 0;
  while (i < a.ids.length && j < b.ids.length) {
    const x = a.ids[i]!;
    const y = b.ids[j]!;
    if (x === y) dot += a.w[i++]! * b.w[j++]!;
    else if (x < y) i++;
    else j++;
  }
  return Math.min(1, dot / (a.norm * b.norm));
}

/** TF-IDF cosine of two gram vectors, 0..1. `dfOf` gives a gram's document frequency among `n` stored prompts. */
export function cosine(a: GramVector, b: GramVector, dfOf: (id: number) => number, n: number): number {
  const idfOf = (id: number) => idf(dfOf(id), n);
  return cosineWeighted(weigh(a, idfOf), weigh(b, idfOf));
}

const SEEDS = (() => {
  const out = new Uint32Array(BANDS * ROWS);
  let s = 0x2545f491;
  for (let i = 0; i < out.length; i++) {
    s = fmix32(s + 0x9e3779b9);
    out[i] = s;
  }
  return out;
})();

/** MinHash signature (BANDS × ROWS values) of a gram set; all 0xffffffff for an empty set. */
export function minhash(ids: Uint32Array): Uint32Array {
  const sig = new Uint32Array(SEEDS.length).fill(0xffffffff);
  for (let i = 0; i < ids.length; i++) {
    const x = ids[i]!;
    for (let k = 0; k < SEEDS.length; k++) {
      const h = fmix32(x ^ SEEDS[k]!);
      if (h < sig[k]!) sig[k] = h;
    }
  }
  return sig;
}

/** One 52-bit key per band: the band's rows hashed with the band index and the scope. */
export function bandKeys(sig: Uint32Array, scope32: number): number[] {
  const keys: number[] = [];
  for (let b = 0; b < BANDS; b++) {
    let h1 = fmix32((scope32 ^ Math.imul(b + 1, 0x9e3779b9)) >>> 0);
    let h2 = fmix32((h1 ^ 0x5bd1e995) >>> 0);
    for (let r = 0; r < ROWS; r++) {
      const v = sig[b * ROWS + r]!;
      h1 = fmix32((h1 ^ v) >>> 0);
      h2 = fmix32((Math.imul(h2, 31) + v) >>> 0);
    }
    keys.push((h2 & 0xfffff) * 0x1_0000_0000 + h1);
  }
  return keys;
}
