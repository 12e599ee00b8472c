/**
 * Client requests are checked before any tier is tried (DESIGN.md: "a request
 * that is itself invalid is refused before any tier and never counts against
 * one"). Only the fields the router or every OpenAI-compatible server relies
 * on are checked, so a mistake such as `"stream": "true"` is a 400 naming the
 * field instead of an answer the router cannot read, blamed on the backend.
 * Lenient where servers differ (role names, content-part shapes, extra keys).
 * Pure; the nesting walk is iterative, so a 10,000-deep body cannot exhaust
 * the stack.
 */
import type { Endpoint } from "./types.ts";

export type Validation = { readonly ok: true } | { readonly ok: false; readonly param: string; readonly message: string };

/** Levels of objects and arrays a body may nest, the body itself counting as one. */
export const MAX_DEPTH = 64;

const OK: Validation = { ok: true };

export function validateRequest(endpoint: Endpoint, body: Record<string, unknown>): Validation {
  return (
    depth(body) ??
    optional(body, "model", "a string", isString, false) ??
    optional(body, "stream", "a boolean", isBoolean) ??
    streamOptions(body.stream_options) ??
    optional(body, "max_tokens", "an integer ≥ 1", isCount) ??
    optional(body, "max_completion_tokens", "an integer ≥ 1", isCount) ??
    optional(body, "n", "an integer ≥ 1", isCount) ??
    optional(body, "temperature", "a finite number", isNumber) ??
    optional(body, "top_p", "a finite number", isNumber) ??
    (endpoint === "chat" ? messages(body.messages) : endpoint === "completion" ? textOrTokens(body.prompt, "prompt", true) : textOrTokens(body.input, "input", false)) ??
    OK
  );
}

type Failure = Extract<Validation, { ok: false }>;

function fail(param: string, expected: string, found: unknown): Failure {
  return { ok: false, param, message: `${param} must be ${expected}; found ${describe(found)}` };
}

/** A top-level key as `param`: itself when it reads as a field name, else quoted and cut (a key may be "" or 1 MB long). */
function fieldName(k: string): string {
  return /^[A-Za-z_$][\w$.-]{0,63}$/.test(k) ? k : JSON.stringify(cut(k));
}

/** At most 40 characters and an ellipsis, never half of a surrogate pair. */
function cut(s: string): string {
  if (s.length <= 40) return s;
  const high = s.charCodeAt(39) >= 0xd800 && s.charCodeAt(39) <= 0xdbff;
  return `${s.slice(0, high ? 39 : 40)}…`;
}

/** A short description of a value: its type, and the value itself only when short. */
function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return v.length === 0 ? "an empty array" : `an array of ${v.length}`;
  if (typeof v === "object") return "an object";
  if (typeof v === "string") return `the string ${JSON.stringify(cut(v))}`;
  return `the ${typeof v} ${String(v)}`;
}

const isString = (v: unknown): boolean => typeof v === "string";
const isBoolean = (v: unknown): boolean => typeof v === "boolean";
/** Finite: JSON.parse reads 1e400 as Infinity, which a backend would be sent as null. */
const isNumber = (v: unknown): boolean => Number.isFinite(v);
const isCount = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 1;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isTokenId = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 0;

/** An absent field passes; null passes unless `nullable` is false. */
function optional(body: Record<string, unknown>, key: string, expected: string, check: (v: unknown) => boolean, nullable = true): Failure | undefined {
  const v = body[key];
  if (v === undefined || (v === null && nullable) || check(v)) return undefined;
  return fail(key, nullable ? `${expected} or null` : expected, v);
}

/** The first place nested deeper than MAX_DEPTH, named by its top-level field. Iterative, and allocation-free for leaves (a long token array costs one pass). */
function depth(body: Record<string, unknown>): Failure | undefined {
  const values: object[] = [body];
  const levels: number[] = [1];
  const fields: string[] = [""];
  while (values.length > 0) {
    const value = values.pop()!;
    const level = levels.pop()!;
    const field = fields.pop()!;
    if (level > MAX_DEPTH) {
      return { ok: false, param: field, message: `${field} nests objects and arrays more than ${MAX_DEPTH} levels deep; llmsup accepts at most ${MAX_DEPTH} levels (the body itself counting as one)` };
    }
    const push = (v: unknown, k: string) => {
      if (typeof v !== "object" || v === null) return;
      values.push(v);
      levels.push(level + 1);
      fields.push(level === 1 ? fieldName(k) : field);
    };
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) if (typeof value[i] === "object") push(value[i], String(i));
    } else for (const k in value) push((value as Record<string, unknown>)[k], k);
  }
  return undefined;
}

function streamOptions(v: unknown): Failure | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) return fail("stream_options", "an object or null", v);
  const u = v.include_usage;
  if (u !== undefined && u !== null && typeof u !== "boolean") return fail("stream_options.include_usage", "a boolean", u);
  return undefined;
}

function messages(v: unknown): Failure | undefined {
  if (!Array.isArray(v) || v.length === 0) return fail("messages", "a non-empty array of messages", v);
  for (let i = 0; i < v.length; i++) {
    const m: unknown = v[i];
    const at = `messages[${i}]`;
    if (!isObject(m)) return fail(at, "an object with a role and content", m);
    if (typeof m.role !== "string") return fail(`${at}.role`, "a string", m.role);
    const c = m.content;
    if (c === undefined) {
      if (m.tool_calls === undefined && m.function_call === undefined) return fail(`${at}.content`, "a string, null or an array of content parts (absent only beside tool_calls)", c);
    } else if (Array.isArray(c)) {
      const bad = c.findIndex((p) => !isObject(p));
      if (bad >= 0) return fail(`${at}.content[${bad}]`, "a content part (an object)", c[bad]);
    } else if (c !== null && typeof c !== "string") {
      return fail(`${at}.content`, "a string, null or an array of content parts", c);
    }
  }
  return undefined;
}

/** A prompt or an input: a string, or a non-empty array of strings, of token ids, or of token-id arrays. */
function textOrTokens(v: unknown, param: string, emptyString: boolean): Failure | undefined {
  const expected = "a string, an array of strings, an array of token ids or an array of token-id arrays";
  if (typeof v === "string") return v === "" && !emptyString ? fail(param, "a non-empty string", v) : undefined;
  if (!Array.isArray(v) || v.length === 0) return fail(param, expected, v);
  const first: unknown = v[0];
  const each =
    typeof first === "string"
      ? { what: "a string", ok: isString }
      : typeof first === "number"
        ? { what: "a token id (an integer ≥ 0)", ok: isTokenId }
        : Array.isArray(first)
          ? { what: "a non-empty array of token ids", ok: (a: unknown) => Array.isArray(a) && a.length > 0 && a.every(isTokenId) }
          : undefined;
  if (!each) return fail(`${param}[0]`, "a string, a token id or an array of token ids", first);
  const bad = v.findIndex((x) => !each.ok(x));
  return bad >= 0 ? fail(`${param}[${bad}]`, `${each.what}, like ${param}[0]`, v[bad]) : undefined;
}
