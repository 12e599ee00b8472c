/**
 * Hostile request bodies for the fuzz tests: JSON text written by hand, so it
 * can hold what JSON.stringify never writes (duplicate keys, 1e400, lone
 * surrogate escapes, 3,000-deep nesting), beside near-valid OpenAI requests
 * with one field made wrong, and bytes that are not UTF-8 at all.
 */
import fc from "fast-check";
import type { Endpoint } from "../../src/router/types.ts";

/** Field names the validator and the router read, prototype keys, and a few that mean nothing. */
const KEYS = [
  "model", "messages", "stream", "stream_options", "include_usage", "max_tokens", "max_completion_tokens", "n",
  "temperature", "top_p", "prompt", "input", "role", "content", "tool_calls", "function_call", "type", "text",
  "__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf", "llmsup", "",
] as const;

const NUMBER_LITERALS = [
  "0", "-0", "1", "-1", "2", "0.5", "1.5", "1e400", "-1e400", "1e-400", "1e308", "-1e308", "9007199254740993",
  "123456789012345678901234567890", "0.0000001", "4294967296", "1E2", "-0.0",
] as const;

const STRING_VALUES = ["", "true", "false", "null", "[DONE]", "user", "assistant", "m", "*", "__proto__", "constructor", "\u0000", "\ud83c\udf0d", "é"] as const;

/** A JSON string literal: any Unicode, or a hand-written escape (a lone surrogate, NUL, a quote). */
const stringLiteral: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...STRING_VALUES).map((s) => JSON.stringify(s)),
  fc.string({ unit: "binary", maxLength: 24 }).map((s) => JSON.stringify(s)),
  fc.constantFrom('"\\ud800"', '"\\udc00x"', '"\\u0000"', '"a\\nb"', '"\\"\\\\"'),
);

const numberLiteral: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...NUMBER_LITERALS),
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
);

const keyLiteral: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...KEYS).map((k) => JSON.stringify(k)) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 8 }).map((k) => JSON.stringify(k)) },
);

/** `[[[…x…]]]` or `{"a":{"a":…x…}}`, 1 to 3,000 levels. */
const deep = (inner: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc.tuple(fc.integer({ min: 1, max: 3_000 }), fc.boolean(), inner).map(([levels, arrays, x]) => (arrays ? `${"[".repeat(levels)}${x}${"]".repeat(levels)}` : `${'{"a":'.repeat(levels)}${x}${"}".repeat(levels)}`));

/** Any JSON value as text, leaves weighted towards the awkward ones. */
export const jsonText: fc.Arbitrary<string> = fc.letrec<{ value: string; object: string; array: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    { weight: 3, arbitrary: numberLiteral },
    { weight: 3, arbitrary: stringLiteral },
    { weight: 2, arbitrary: fc.constantFrom("null", "true", "false") },
    { weight: 2, arbitrary: tie("object") },
    { weight: 2, arbitrary: tie("array") },
    { weight: 1, arbitrary: deep(fc.constantFrom("1", "null", '"x"', "{}", "[]")) },
  ),
  object: fc.array(fc.tuple(keyLiteral, tie("value")), { maxLength: 6 }).map((entries) => `{${entries.map(([k, v]) => `${k}:${v}`).join(",")}}`),
  array: fc.array(tie("value"), { maxLength: 6 }).map((items) => `[${items.join(",")}]`),
})).value;

/** A JSON object as text whose fields are drawn from KEYS (duplicates included). */
export const objectText: fc.Arbitrary<string> = fc
  .array(fc.tuple(keyLiteral, jsonText), { maxLength: 8 })
  .map((entries) => `{${entries.map(([k, v]) => `${k}:${v}`).join(",")}}`);

const message = fc.oneof(
  fc.constant('{"role":"user","content":"hi"}'),
  fc.constant('{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}'),
  fc.constant('{"role":"user","content":[{"type":"text","text":"hi"}]}'),
  fc.constant('{"role":"tool","tool_call_id":"c","content":null}'),
  objectText,
  // Message-shaped, with any value in each place.
  fc
    .record({ role: jsonText, content: jsonText, tool_calls: jsonText }, { requiredKeys: [] })
    .map((m) => `{${Object.entries(m).map(([k, v]) => `"${k}":${v}`).join(",")}}`),
);

/** A request for `endpoint` that is valid, with extra or overriding fields (a later duplicate key wins in JSON.parse). */
export function nearValid(endpoint: Endpoint): fc.Arbitrary<string> {
  const base =
    endpoint === "chat"
      ? fc.array(message, { minLength: 1, maxLength: 3 }).map((ms) => `"messages":[${ms.join(",")}]`)
      : endpoint === "completion"
        ? fc.constantFrom('"prompt":"Once"', '"prompt":[1,2,3]', '"prompt":[[1],[2]]', '"prompt":["a","b"]', '"prompt":""')
        : fc.constantFrom('"input":"x"', '"input":[5,6]', '"input":[[5],[6,7]]', '"input":["x","y"]');
  const overrides = fc.array(fc.tuple(keyLiteral, jsonText), { maxLength: 3 }).map((entries) => entries.map(([k, v]) => `,${k}:${v}`).join(""));
  const sampling = fc.constantFrom("", ',"stream":true', ',"stream":false', ',"max_tokens":4', ',"temperature":0', ',"stream":true,"stream_options":{"include_usage":true}');
  return fc.tuple(base, sampling, overrides).map(([b, s, o]) => `{"model":"m"${s},${b}${o}}`);
}

/** A request body as bytes: near-valid, any JSON, a long string inside the body limit, or bytes that may not be UTF-8. */
export function hostileBody(endpoint: Endpoint, longString: { min: number; max: number }): fc.Arbitrary<Uint8Array> {
  const text = (a: fc.Arbitrary<string>) => a.map((s) => new Uint8Array(Buffer.from(s, "utf8")));
  return fc.oneof(
    { weight: 4, arbitrary: text(nearValid(endpoint)) },
    { weight: 3, arbitrary: text(objectText) },
    { weight: 2, arbitrary: text(jsonText) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.integer(longString), fc.constantFrom("model", "content", "stream", "prompt", "x"), fc.constantFrom("a", "é", "\ud83c\udf0d", '\\"'))
        .map(([n, key, unit]) => new Uint8Array(Buffer.from(`{"messages":[{"role":"user","content":"hi"}],"${key}":"${unit.repeat(Math.ceil(n / Buffer.byteLength(unit)))}"}`, "utf8"))),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) },
    {
      // A near-valid request with bytes that are not UTF-8 inside a string.
      weight: 1,
      arbitrary: fc.tuple(nearValid(endpoint), fc.uint8Array({ minLength: 1, maxLength: 8 }).map((b) => b.map((x) => x | 0x80))).map(([s, bad]) => {
        const at = s.indexOf('"m"') + 2;
        const head = Buffer.from(s.slice(0, at), "utf8");
        return new Uint8Array(Buffer.concat([head, Buffer.from(bad), Buffer.from(s.slice(at), "utf8")]));
      }),
    },
  );
}

export const ENDPOINTS: readonly [Endpoint, string][] = [
  ["chat", "/v1/chat/completions"],
  ["completion", "/v1/completions"],
  ["embedding", "/v1/embeddings"],
];
