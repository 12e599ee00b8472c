/** Turning schema issues into ConfigProblems an operator can act on. */
import type { z } from "zod";
import type { ConfigProblem } from "./types.ts";
import { INLINE_SECRET_KEYS } from "./schema.ts";

export type PathSegment = string | number;

/** ["backend", 2, "process", "restart_sec"] → "backend[2].process.restart_sec" */
export function formatPath(segments: readonly PathSegment[]): string {
  let out = "";
  for (const s of segments) {
    if (typeof s === "number") out += `[${s}]`;
    else if (/^[A-Za-z0-9_-]+$/.test(s)) out += out === "" ? s : `.${s}`;
    else out += out === "" ? JSON.stringify(s) : `.${JSON.stringify(s)}`;
  }
  return out;
}

/** A short, safe rendering of a value for "found …"; never used for secret keys. */
export function describeValue(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (typeof v === "string") return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  if (v instanceof Date) return `a date (${v.toISOString()})`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === "object") return "a table";
  return typeof v;
}

function typeName(v: unknown): string {
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return "array";
  if (v instanceof Date) return "date";
  if (v === null) return "null";
  if (typeof v === "object") return "table";
  if (typeof v === "bigint") return "integer";
  return typeof v;
}

const TYPE_WORDS: Record<string, string> = {
  object: "a table",
  array: "an array",
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
};

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

/** The keys an object schema accepts at `path` below `schema`, for suggestions. */
export function knownKeysAt(schema: z.ZodType, path: readonly PathSegment[]): string[] {
  let s: unknown = schema;
  const unwrap = (x: unknown): unknown => {
    for (let i = 0; i < 10; i++) {
      const def = (x as { _zod?: { def?: Record<string, unknown> } })?._zod?.def;
      if (!def) return x;
      if (def.type === "pipe") x = def.in;
      else if ("innerType" in def) x = def.innerType;
      else return x;
    }
    return x;
  };
  s = unwrap(s);
  for (const seg of path) {
    const def = (s as { _zod: { def: Record<string, unknown> } })._zod.def;
    if (typeof seg === "number" && def.type === "array") s = unwrap(def.element);
    else if (typeof seg === "string" && def.type === "object") s = unwrap((def.shape as Record<string, unknown>)[seg]);
    else return [];
    if (!s) return [];
  }
  const def = (s as { _zod?: { def?: Record<string, unknown> } })._zod?.def;
  return def?.type === "object" ? Object.keys(def.shape as object) : [];
}

function inlineSecretProblem(path: string, key: string): ConfigProblem {
  const base = path.replace(/\.[^.]+$/, "");
  const prefix = key === "api_keys" ? "api_keys" : key.startsWith("api") ? "api_key" : "password";
  return {
    path,
    rule: "inline_secret",
    message: `secrets are not accepted inline; put it in a file readable only by llmsup and set ${base ? `${base}.` : ""}${prefix}_file = "/etc/llmsup/<name>", or name an environment variable with ${prefix}_env`,
    expected: `${prefix}_file or ${prefix}_env`,
    found: "an inline secret (value not shown)",
  };
}

/** Converts schema issues under `prefix` into problems. */
export function problemsFromIssues(
  issues: readonly z.core.$ZodIssue[],
  prefix: readonly PathSegment[],
  schema: z.ZodType,
): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  for (const issue of issues) {
    const rel = issue.path.filter((p): p is PathSegment => typeof p !== "symbol");
    const segs = [...prefix, ...rel];
    const path = formatPath(segs);
    const input = (issue as { input?: unknown }).input;
    switch (issue.code) {
      case "unrecognized_keys": {
        const known = knownKeysAt(schema, rel);
        for (const key of issue.keys) {
          const keyPath = formatPath([...segs, key]);
          if (INLINE_SECRET_KEYS.has(key.toLowerCase())) {
            out.push(inlineSecretProblem(keyPath, key));
            continue;
          }
          const hint = closest(key, known);
          out.push({
            path: keyPath,
            rule: "unknown_key",
            message: `unknown key${hint ? `; did you mean "${hint}"?` : known.length ? `; accepted here: ${known.join(", ")}` : ""}`,
            expected: known.length ? `one of ${known.join(", ")}` : undefined,
            found: JSON.stringify(key),
          });
        }
        break;
      }
      case "invalid_type": {
        if (input === undefined) {
          out.push({ path, rule: "missing", message: `is required (${TYPE_WORDS[issue.expected] ?? issue.expected})`, expected: TYPE_WORDS[issue.expected] ?? issue.expected, found: "nothing" });
        } else {
          const expected = issue.message.startsWith("expected") ? issue.message.replace(/^expected /, "") : TYPE_WORDS[issue.expected] ?? issue.expected;
          out.push({
            path,
            rule: "type",
            message: `expected ${expected}, found ${typeName(input)} ${describeValue(input)}`,
            expected,
            found: describeValue(input),
          });
        }
        break;
      }
      case "invalid_value": {
        const values = issue.values.map((v) => JSON.stringify(v)).join(", ");
        out.push({ path, rule: "enum", message: `expected one of ${values}, found ${describeValue(input)}`, expected: `one of ${values}`, found: describeValue(input) });
        break;
      }
      case "too_small":
      case "too_big": {
        const bound = Number(issue.code === "too_small" ? issue.minimum : issue.maximum);
        const isList = issue.origin === "array";
        const isString = issue.origin === "string";
        const word = issue.code === "too_small" ? (issue.inclusive === false ? "more than" : "at least") : issue.inclusive === false ? "less than" : "at most";
        const expected = issue.message.startsWith("expected")
          ? issue.message.replace(/^expected /, "")
          : isList
            ? `${word} ${bound} item${bound === 1 ? "" : "s"}`
            : isString
              ? bound === 1 && issue.code === "too_small"
                ? "a non-empty string"
                : `${word} ${bound} characters`
              : `a number ${word} ${bound}`;
        const found = isList ? `${(input as unknown[] | undefined)?.length ?? 0} items` : describeValue(input);
        out.push({ path, rule: "range", message: `expected ${expected}, found ${found}`, expected, found });
        break;
      }
      default: {
        const rule = (issue as { params?: { rule?: string } }).params?.rule ?? (issue.code === "invalid_format" ? "format" : "invalid");
        const expected = issue.message.replace(/^expected /, "");
        out.push({
          path,
          rule,
          message: input === undefined ? issue.message : `${issue.message}, found ${describeValue(input)}`,
          expected,
          found: input === undefined ? undefined : describeValue(input),
        });
      }
    }
  }
  return out;
}
