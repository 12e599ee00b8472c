/**
 * The API keys clients of the routing socket present: read once from router.api_keys_file or
 * router.api_keys_env, compared with timingSafeEqual. A file or variable that is named but holds no
 * key stops the start: serving every client without a key is what setting it was meant to prevent.
 */
import { readFile } from "node:fs/promises";
import { timingSafeEqual } from "node:crypto";
import type { Config } from "../config/types.ts";
import { LlmsupError } from "../errors/error.ts";

/** The keys of an api_keys_file: one per line; blank lines and # comments are not keys. Pure. */
export function keysOfFile(text: string): string[] {
  return text.split("\n").map((l) => l.replace(/#.*/, "").trim()).filter(Boolean);
}

/** The keys of an api_keys_env value: comma-separated, spaces around them trimmed. Pure. */
export function keysOfEnv(value: string): string[] {
  return value.split(",").map((k) => k.trim()).filter(Boolean);
}

/**
 * API keys from a file (one per line, # comments) or a variable (comma-separated).
 * A file or variable that is named but holds no key is refused (LLMSUP_E_API_KEYS_EMPTY):
 * serving every client without a key is what setting it was meant to prevent.
 */
export async function loadApiKeys(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const r = config.router;
  if (r.api_keys_file) {
    let text: string;
    try {
      text = await readFile(r.api_keys_file, "utf8");
    } catch (e) {
      throw new LlmsupError("LLMSUP_E_SECRET_UNREADABLE", `cannot read router.api_keys_file ${r.api_keys_file}: ${(e as NodeJS.ErrnoException).code}`, {});
    }
    const keys = keysOfFile(text);
    if (keys.length === 0) {
      throw new LlmsupError("LLMSUP_E_API_KEYS_EMPTY", `router.api_keys_file ${r.api_keys_file} holds no key (only blank lines and comments): refusing to serve every client without one; put one key per line in it, or remove router.api_keys_file`, {});
    }
    return keys;
  }
  if (r.api_keys_env) {
    const v = env[r.api_keys_env];
    if (v === undefined) throw new LlmsupError("LLMSUP_E_SECRET_UNREADABLE", `environment variable ${r.api_keys_env} (router.api_keys_env) is not set`, {});
    const keys = keysOfEnv(v);
    if (keys.length === 0) {
      throw new LlmsupError("LLMSUP_E_API_KEYS_EMPTY", `environment variable ${r.api_keys_env} (router.api_keys_env) holds no key (it is empty, or only spaces and commas): refusing to serve every client without one; set it to comma-separated keys, or remove router.api_keys_env`, {});
    }
    return keys;
  }
  return [];
}

/** Whether `given` is one of `keys`; each of the same length is compared with timingSafeEqual, and every key is tried. */
export function keyMatches(given: string, keys: readonly Buffer[]): boolean {
  const g = Buffer.from(given);
  let ok = false;
  for (const k of keys) if (k.length === g.length && timingSafeEqual(k, g)) ok = true;
  return ok;
}
