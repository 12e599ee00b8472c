/** A backend's API key, read from the variable or file its configuration names. The one place keys are read. */
import { readFileSync } from "node:fs";
import type { BackendConfig } from "../config/types.ts";
import { LlmsupError } from "../errors/error.ts";

/** The key, or undefined when none is configured; throws LLMSUP_E_SECRET_UNREADABLE when it is named but cannot be read. */
export function readApiKey(backend: BackendConfig): string | undefined {
  if (backend.api_key_env) {
    const v = process.env[backend.api_key_env]?.trim();
    if (!v) throw new LlmsupError("LLMSUP_E_SECRET_UNREADABLE", `environment variable ${backend.api_key_env} (API key of backend ${backend.name}) is not set`, { backend: backend.name });
    return v;
  }
  if (backend.api_key_file) {
    try {
      return readFileSync(backend.api_key_file, "utf8").trim() || undefined;
    } catch (e) {
      throw new LlmsupError("LLMSUP_E_SECRET_UNREADABLE", `cannot read ${backend.api_key_file} (API key of backend ${backend.name}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { backend: backend.name });
    }
  }
  return undefined;
}

/** The Anthropic API version llmsup speaks: the anthropic-version header of its requests and probes. */
export const ANTHROPIC_VERSION = "2023-06-01";

/** How a backend is sent its key: x-api-key and anthropic-version for Anthropic's API, else Authorization: Bearer. */
export function authHeaders(kind: string, key: string | undefined): Record<string, string> {
  if (kind === "anthropic") return { ...(key ? { "x-api-key": key } : {}), "anthropic-version": ANTHROPIC_VERSION };
  return key ? { authorization: `Bearer ${key}` } : {};
}

/** The key when it can be read, else undefined (probes go without one; the router reports the problem). */
export function apiKeyIfReadable(backend: BackendConfig): string | undefined {
  try {
    return readApiKey(backend);
  } catch {
    return undefined;
  }
}
