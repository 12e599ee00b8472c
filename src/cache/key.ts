/**
 * What the emergency cache keys an answer by. Pure.
 *
 * A request is split into three parts:
 *  - the scope: everything a near-duplicate must share exactly — the route, the
 *    model asked for, the endpoint, the parameters that change the shape of the
 *    answer (n, response_format, tools, … and any parameter llmsup does not
 *    know), and the conversation before the last message (system prompt,
 *    earlier turns). A different system prompt ("answer in French") is never a
 *    near-duplicate, however short it is next to the question;
 *  - the sampling parameters (temperature, max_tokens, seed, stop, …): part of
 *    the exact key only, so a near-duplicate may differ in them;
 *  - the prompt: the last message (or the completion prompt), whose text is
 *    compared for similarity.
 */
import { createHash } from "node:crypto";

export type CacheEndpoint = "chat" | "completion" | "embedding";

/** Why a request is not stored (or cannot be looked up). Stable: used in metrics and logs. */
export type SkipReason =
  | "endpoint"
  | "malformed"
  | "non_text"
  | "multi_turn"
  | "tools"
  | "prefill"
  | "batch"
  | "empty"
  | "stream_n"
  | "opt_out"
  | "no_answer"
  | "too_large"
  | "backlog"
  | "unavailable";

export interface PreparedKey {
  /** Exact key: scope + sampling parameters + the prompt's text (whitespace- and Unicode-normalised). 32 hex digits. */
  readonly key: string;
  /** Scope every near-duplicate shares. 32 hex digits. */
  readonly scope: string;
  /** The scope as a 32-bit number (seeds the LSH band keys). */
  readonly scope32: number;
  /** The prompt for similarity: case-folded, accents and punctuation removed, whitespace collapsed. */
  readonly text: string;
  /** The numbers in the prompt, sorted, space-separated: a near-duplicate must contain the same numbers. */
  readonly numbers: string;
}

export type Preparation = { readonly ok: true; readonly value: PreparedKey } | { readonly ok: false; readonly reason: SkipReason };

export interface KeyOptions {
  /** Also key multi-turn and tool-calling conversations ([cache] multi_turn). */
  readonly multiTurn: boolean;
  /** Preparing to store (a streamed request with n > 1 is not stored: its text cannot be split per choice). */
  readonly forStore?: boolean;
}

/** Parameters that never change the answer: not part of any key. */
const IGNORED = new Set([
  "model",
  "messages",
  "prompt",
  "stream",
  "stream_options",
  "user",
  "metadata",
  "store",
  "service_tier",
  "llmsup",
  "safety_identifier",
  "prompt_cache_key",
  "prompt_cache_retention",
]);

/** Parameters that change the words but not the shape of the answer: in the exact key, not in the scope. */
const SAMPLING = new Set([
  "temperature",
  "top_p",
  "top_k",
  "min_p",
  "typical_p",
  "max_tokens",
  "max_completion_tokens",
  "seed",
  "presence_penalty",
  "frequency_penalty",
  "repetition_penalty",
  "repeat_penalty",
  "stop",
  "logit_bias",
  "reasoning_effort",
  "verbosity",
]);

const TOOL_PARAMS = ["tools", "functions", "tool_choice", "function_call"];

/** JSON with object keys sorted at every depth, undefined members dropped. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "null";
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? "null" : canonicalJson(x))).join(",")}]`;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(",")}}`;
}

/** Unicode NFKC, whitespace runs collapsed to one space, trimmed: what "the same text" means for the exact key. */
export function exactText(s: string): string {
  return s.normalize("NFKC").replace(/\s+/gu, " ").trim();
}

/** Text for similarity: NFKC, case-folded, accents dropped, anything but letters and digits a single space. */
export function similarityText(s: string): string {
  return s
    .normalize("NFKC")
    .toLowerCase()
    .normalize("NFD")
    .replace(/\p{M}+/gu, "")
    .replace(/[^\p{L}\p{N}]+/gu, " ")
    .trim();
}

/** The numbers in a text, sorted, as written ("2.5", "10,000" → "10000"). */
export function numbersOf(s: string): string {
  const found = s.normalize("NFKC").match(/\p{N}+(?:[.,]\p{N}+)*/gu) ?? [];
  return found
    .map((n) => (/^\p{N}{1,3}(,\p{N}{3})+$/u.test(n) ? n.replace(/,/g, "") : n))
    .sort()
    .join(" ");
}

/** The text of a message's content, or undefined when it carries anything but text (images, audio, files). */
export function contentText(content: unknown): string | undefined {
  if (typeof content === "string") return content;
  if (content === null || content === undefined) return "";
  if (!Array.isArray(content)) return undefined;
  let out = "";
  for (const p of content) {
    if (!p || typeof p !== "object") return undefined;
    const part = p as { type?: unknown; text?: unknown };
    if (part.type !== "text" || typeof part.text !== "string") return undefined;
    out += part.text;
  }
  return out;
}

/** Whether the client asked that this exchange not be stored: `x-llmsup-cache: no-store` or `cache-control: no-store`. */
export function optedOut(headers: Readonly<Record<string, string | string[] | undefined>> | undefined): boolean {
  if (!headers) return false;
  for (const name of ["x-llmsup-cache", "cache-control"]) {
    const v = headers[name];
    const text = Array.isArray(v) ? v.join(",") : (v ?? "");
    if (text.split(",").some((t) => t.trim().toLowerCase() === "no-store")) return true;
  }
  return false;
}

function hash(parts: readonly string[]): Buffer {
  const h = createHash("sha256");
  for (const p of parts) h.update(p).update("\u0000");
  return h.digest();
}

interface Split {
  /** Canonical form of everything before the prompt (earlier messages; the last message's role and name). */
  readonly context: string;
  readonly prompt: string;
}

function splitChat(body: Record<string, unknown>, multiTurn: boolean): Split | SkipReason {
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) return "malformed";
  const norm: { role: string; rest: Record<string, unknown>; text: string }[] = [];
  for (const m of messages) {
    if (!m || typeof m !== "object" || Array.isArray(m)) return "malformed";
    const { role, content, ...rest } = m as Record<string, unknown>;
    if (typeof role !== "string") return "malformed";
    const text = contentText(content);
    if (text === undefined) return "non_text";
    norm.push({ role, rest, text });
  }
  const last = norm[norm.length - 1]!;
  if (!multiTurn) {
    if (TOOL_PARAMS.some((p) => body[p] !== undefined)) return "tools";
    if (norm.some((m) => m.role === "tool" || m.role === "function" || m.rest.tool_calls !== undefined)) return "tools";
    const users = norm.filter((m) => m.role === "user").length;
    const others = norm.filter((m) => m.role !== "user" && m.role !== "system" && m.role !== "developer").length;
    if (users > 1 || others > 0) return "multi_turn";
    if (last.role !== "user") return "prefill";
  } else if (last.role !== "user" && last.role !== "tool" && last.role !== "function") {
    // An assistant message last asks for a continuation of that text (prefill): not a question.
    return "prefill";
  }
  const context = canonicalJson([...norm.slice(0, -1).map((m) => ({ role: m.role, ...m.rest, content: exactText(m.text) })), { role: last.role, ...last.rest }]);
  return { context, prompt: last.text };
}

function splitCompletion(body: Record<string, unknown>): Split | SkipReason {
  let p = body.prompt;
  if (Array.isArray(p)) {
    // Token ids ([1, 2, 3]) are no text to compare; several prompts are a batch.
    if (p.some((x) => typeof x === "number")) return "non_text";
    if (p.length !== 1) return "batch";
    p = p[0];
  }
  if (typeof p !== "string") return p === undefined ? "malformed" : "non_text";
  return { context: "", prompt: p };
}

/** The keys of a request, or why it cannot be cached. Never throws on bad input. */
export function prepareKey(route: string, endpoint: CacheEndpoint, body: unknown, options: KeyOptions): Preparation {
  if (endpoint === "embedding") return { ok: false, reason: "endpoint" };
  if (!body || typeof body !== "object" || Array.isArray(body)) return { ok: false, reason: "malformed" };
  const b = body as Record<string, unknown>;
  const split = endpoint === "chat" ? splitChat(b, options.multiTurn) : splitCompletion(b);
  if (typeof split === "string") return { ok: false, reason: split };
  if (options.forStore && b.stream === true && typeof b.n === "number" && b.n > 1) return { ok: false, reason: "stream_n" };
  const prompt = exactText(split.prompt);
  if (prompt === "") return { ok: false, reason: "empty" };
  const shape: Record<string, unknown> = {};
  const sampling: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(b)) {
    if (IGNORED.has(k) || v === undefined) continue;
    (SAMPLING.has(k) ? sampling : shape)[k] = v;
  }
  const model = typeof b.model === "string" ? b.model : "";
  const scopeHash = hash([route, model, endpoint, canonicalJson(shape), split.context]);
  const scope = scopeHash.subarray(0, 16).toString("hex");
  const key = hash([scope, canonicalJson(sampling), prompt]).subarray(0, 16).toString("hex");
  return { ok: true, value: { key, scope, scope32: scopeHash.readUInt32LE(16), text: similarityText(prompt), numbers: numbersOf(prompt) } };
}
