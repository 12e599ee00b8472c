/**
 * Scrubbing credentials out of upstream text: an upstream's error body or
 * SSE error chunk may echo the API key it was sent (some 401 texts do).
 * Pure: the caller passes the secrets; nothing here logs or keeps them.
 *
 * What is replaced with `[redacted]`:
 * - every occurrence of each secret we hold;
 * - for a secret longer than 8 characters, any run of ≥ 8 characters that is
 *   a prefix or a suffix of it (an upstream that truncates or masks the key,
 *   "sk-abcdefgh…" or "…stuvwxyz"), extended as far as it keeps matching.
 *   Shorter fragments (OpenAI's "sk-...abcd" hint shows 4) are left: they
 *   reveal too little to use and would garble ordinary text;
 * - well-known key shapes even when they are not ours: `sk-` followed by
 *   ≥ 16 key characters, `Bearer <token>`, and the value of
 *   `api_key=` / `api-key:` / `"apikey": "…"` / `access_token=` / `x-api-key:`.
 */
export const REDACTED = "[redacted]";

const MIN_FRAGMENT = 8;

const SHAPES: readonly [RegExp, string][] = [
  [/\bsk-[A-Za-z0-9_-]{16,}/g, REDACTED],
  [/\b(Bearer\s+)[A-Za-z0-9._~+/=-]+/gi, `$1${REDACTED}`],
  [/\b((?:x-)?api[_-]?key|access[_-]?token)(["']?\s*[:=]\s*["']?)(?!\[redacted\])[^\s"'&,;}\]]+/gi, `$1$2${REDACTED}`],
];

/** Marks [start, end) ranges of `text` covered by `secret` or its ≥ 8-character prefixes and suffixes. */
function secretRanges(text: string, secret: string, out: [number, number][]): void {
  for (let i = text.indexOf(secret); i >= 0; i = text.indexOf(secret, i + 1)) out.push([i, i + secret.length]);
  if (secret.length <= MIN_FRAGMENT) return;
  const head = secret.slice(0, MIN_FRAGMENT);
  for (let i = text.indexOf(head); i >= 0; i = text.indexOf(head, i + 1)) {
    let n = MIN_FRAGMENT;
    while (n < secret.length && text[i + n] === secret[n]) n++;
    out.push([i, i + n]);
  }
  const tail = secret.slice(-MIN_FRAGMENT);
  for (let i = text.indexOf(tail); i >= 0; i = text.indexOf(tail, i + 1)) {
    let n = MIN_FRAGMENT;
    while (n < secret.length && i - (n - MIN_FRAGMENT) - 1 >= 0 && text[i - (n - MIN_FRAGMENT) - 1] === secret[secret.length - n - 1]) n++;
    out.push([i - (n - MIN_FRAGMENT), i + MIN_FRAGMENT]);
  }
}

/** `text` with every secret (and fragment of one) and every well-known key shape replaced by `[redacted]`. */
export function scrub(text: string, secrets: Iterable<string>): string {
  if (text === "") return text;
  const ranges: [number, number][] = [];
  for (const s of secrets) if (s) secretRanges(text, s, ranges);
  let out = text;
  if (ranges.length > 0) {
    ranges.sort((a, b) => a[0] - b[0]);
    let merged = "";
    let at = 0;
    let open = false;
    for (const [s, e] of ranges) {
      if (e <= at && open) continue;
      if (!open || s > at) {
        merged += text.slice(at, s) + REDACTED;
        open = true;
      }
      at = Math.max(at, e);
    }
    out = merged + text.slice(at);
  }
  for (const [re, by] of SHAPES) out = out.replace(re, by);
  return out;
}
