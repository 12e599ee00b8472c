/**
 * The simulated embedding model: deterministic vectors for /v1/embeddings.
 *
 * By default a text's vector is a hash of it (answer.ts embeddingOf): equal
 * texts are equal, all others unrelated. With `--semantic-embeddings` the
 * vector is made so that paraphrases are close, as a real embedding model
 * makes them: a small built-in table maps words to concepts ("break",
 * "crash", "fail" → fail; "GPUs", "graphics cards" → gpu), words that say
 * little ("how", "in what ways", "can") are dropped, and the vector is a
 * hashed bag of the concepts (weight 1) plus the words as written (a small
 * weight, so a paraphrase is close but not identical). Each concept or word
 * stands for a fixed pseudo-random direction, so unrelated texts are nearly
 * orthogonal: "How do GPUs fail?" and "In what ways can GPUs break?" ≈ 0.96,
 * "What is the capital of France?" ≈ 0 against either. Pure.
 */
import { embeddingOf } from "./answer.ts";
import { mulberry32 } from "./http.ts";

/** The default dimension of semantic vectors (hash vectors keep answer.ts's 16). */
export const SEMANTIC_DIM = 256;

/** A written word's share of the vector next to its concept's. */
const SURFACE_WEIGHT = 0.3;

/** Words that carry no topic of their own. */
const STOPWORDS = new Set(
  (
    "a an the of to in on at by for from with about as into onto is are was were be been being am do does did doing done how what which " +
    "why when where who whom whose can could would should will shall may might must i me my we our you your it its this that these those " +
    "there their they them he she his her some any ways way please tell explain describe kind kinds sort sorts just really actually " +
    "and or but so if then than also very much many more most make makes get gets up"
  ).split(" "),
);

/** Concept ← the words that say it. */
const CONCEPTS: Readonly<Record<string, readonly string[]>> = {
  fail: ["fail", "fails", "failed", "failing", "failure", "failures", "break", "breaks", "broke", "broken", "breaking", "crash", "crashes", "crashed", "crashing", "die", "dies", "died", "malfunction", "malfunctions", "wrong"],
  gpu: ["gpu", "gpus", "graphics", "card", "cards", "accelerator", "accelerators", "cuda"],
  start: ["start", "starts", "started", "restart", "restarts", "launch", "launches", "boot", "boots", "reboot", "run", "running"],
  stop: ["stop", "stops", "halt", "shutdown", "kill", "terminate"],
  fast: ["fast", "faster", "quick", "quickly", "speed", "speedy", "rapid", "rapidly"],
  slow: ["slow", "slower", "slowly", "sluggish", "laggy", "lag", "latency"],
  memory: ["memory", "ram", "vram", "oom"],
  problem: ["error", "errors", "fault", "faults", "bug", "bugs", "problem", "problems", "issue", "issues", "trouble"],
  fix: ["fix", "fixes", "repair", "resolve", "solve", "troubleshoot", "debug", "mend"],
  install: ["install", "installs", "setup", "set", "configure", "configuration", "deploy"],
  server: ["server", "servers", "host", "hosts", "machine", "machines", "node", "nodes"],
  big: ["big", "large", "huge", "bigger", "larger"],
  small: ["small", "little", "tiny", "smaller"],
  create: ["create", "creates", "build", "builds", "write", "writes"],
  use: ["use", "uses", "using", "utilise", "utilize", "employ"],
  difference: ["difference", "differences", "differ", "different", "compare", "comparison", "versus", "vs"],
  cost: ["cost", "costs", "price", "prices", "expensive", "cheap", "pay"],
  heat: ["heat", "hot", "overheat", "overheats", "overheating", "temperature", "temperatures", "thermal", "cooling"],
  learn: ["learn", "learning", "study", "understand", "beginner"],
  capital: ["capital"],
  weather: ["weather", "rain", "sunny", "forecast"],
  cook: ["cook", "cooking", "bake", "baking", "recipe", "recipes"],
};

const CONCEPT_OF: ReadonlyMap<string, string> = new Map(Object.entries(CONCEPTS).flatMap(([c, words]) => words.map((w) => [w, c] as const)));

/** The words of a text: lower case, letters and digits only. */
function words(text: string): string[] {
  return text.toLowerCase().normalize("NFKD").match(/[\p{L}\p{N}]+/gu) ?? [];
}

/** A word's concept: from the table (also without a plural s), else the word itself. */
function conceptOf(word: string): string {
  const known = CONCEPT_OF.get(word);
  if (known) return known;
  if (word.length > 3 && word.endsWith("s")) return CONCEPT_OF.get(word.slice(0, -1)) ?? word.slice(0, -1);
  return word;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The fixed pseudo-random direction a token stands for, added into `v` with a weight. */
function addDirection(v: Float64Array, token: string, weight: number): void {
  const rnd = mulberry32(fnv1a(token));
  for (let i = 0; i < v.length; i++) v[i]! += weight * (rnd() * 2 - 1);
}

/** A unit vector of `dims` floats close to those of the text's paraphrases. */
export function semanticEmbedding(text: string, dims = SEMANTIC_DIM): number[] {
  const v = new Float64Array(dims);
  const kept = words(text).filter((w) => !STOPWORDS.has(w));
  const concepts = new Set(kept.map(conceptOf));
  for (const c of concepts) addDirection(v, `concept:${c}`, 1);
  for (const w of new Set(kept)) addDirection(v, `word:${w}`, SURFACE_WEIGHT);
  if (concepts.size === 0) addDirection(v, `text:${text}`, 1);
  let norm = 0;
  for (const x of v) norm += x * x;
  norm = Math.sqrt(norm) || 1;
  return Array.from(v, (x) => Math.fround(x / norm));
}

/** The simulated model's vector for a text, as the server's options ask. */
export function simEmbedding(options: { readonly semanticEmbeddings?: boolean; readonly embeddingDim?: number }, text: string): number[] {
  return options.semanticEmbeddings ? semanticEmbedding(text, options.embeddingDim ?? SEMANTIC_DIM) : embeddingOf(text, options.embeddingDim);
}
