/**
 * Context windows, read from the backends instead of only configured: after a
 * 400 context-length error the router moves to the next tier whose window is
 * larger *or unknown*, so a window must be a fact the server stated, never a
 * guess. What counts is the window one request may use, not the trained one.
 *
 * Where each kind says it:
 * - vllm, openai: `GET /v1/models`, the entry whose `id` (else `root`) is the
 *   model: `max_model_len` (vLLM, also behind proxies), else `context_length`
 *   (OpenRouter, Together), `context_window` (Groq), `max_context_length`
 *   (Mistral), else OpenRouter's `top_provider.context_length`.
 * - llamacpp: `GET /props` → `default_generation_settings.n_ctx`, the window of
 *   one slot: `--ctx-size` is split between `--parallel` slots (a unified KV
 *   cache gives each slot all of it; /props reports whichever is true).
 *   `/v1/models` `meta.n_ctx_train` is the trained window and is not used.
 * - ollama: `GET /api/ps` → the loaded model's `context_length`, the window in
 *   use; else `POST /api/show` → `num_ctx` in `parameters`, set by the
 *   Modelfile, which wins over the server default when the model loads; else
 *   unknown. `model_info["<arch>.context_length"]` is the trained maximum, far
 *   above the num_ctx Ollama runs with (its default, or OLLAMA_CONTEXT_LENGTH),
 *   so it would be a wrong, large window: unknown is said instead.
 * - anthropic: unknown.
 *
 * Parsers are pure; `discoverContext` does the I/O under one deadline and never
 * throws; `ContextWindows` keeps what was found. A window written in the config
 * (the tier's `context`, else its backend's) always wins over a discovered one.
 */
import { apiKeyIfReadable } from "./api-key.ts";
import type { BackendConfig, TierConfig } from "../config/types.ts";
import type { Clock } from "../platform/clock.ts";

/** No server has a window this large: a bigger number is a bug or a unit mix-up. */
export const MAX_CONTEXT_TOKENS = 100_000_000;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** A plausible window in tokens (a positive integer, or a string of digits), else undefined. */
export function contextTokens(v: unknown): number | undefined {
  const n = typeof v === "string" && /^\s*\d+\s*$/.test(v) ? Number(v) : v;
  return typeof n === "number" && Number.isSafeInteger(n) && n > 0 && n <= MAX_CONTEXT_TOKENS ? n : undefined;
}

const MODEL_LIST_FIELDS = ["max_model_len", "context_length", "context_window", "max_context_length"] as const;

/** From an OpenAI-style `/v1/models` list (vLLM, OpenRouter, Groq, Mistral, proxies): the window of `model`. */
export function parseModelsList(body: unknown, model: string): number | undefined {
  const list: unknown[] = isObj(body) && Array.isArray(body.data) ? body.data : Array.isArray(body) ? body : [];
  const entries = list.filter(isObj);
  const entry = entries.find((m) => m.id === model) ?? entries.find((m) => m.root === model);
  if (!entry) return undefined;
  for (const field of MODEL_LIST_FIELDS) {
    const n = contextTokens(entry[field]);
    if (n !== undefined) return n;
  }
  return isObj(entry.top_provider) ? contextTokens(entry.top_provider.context_length) : undefined;
}

/** From llama-server's `/props`: the per-slot window, what one request gets. */
export function parseLlamacppProps(body: unknown): number | undefined {
  return isObj(body) && isObj(body.default_generation_settings) ? contextTokens(body.default_generation_settings.n_ctx) : undefined;
}

/** Ollama's names: a bare name means its `:latest` tag (a colon before the last `/` is a registry port). */
export function sameOllamaModel(a: string, b: string): boolean {
  const tagged = (m: string) => (/:[^/]*$/.test(m) ? m : `${m}:latest`);
  return tagged(a) === tagged(b);
}

/** From Ollama's `/api/ps`: the window `model` is loaded with; undefined when it is not loaded (or the server is older than `context_length`). */
export function parseOllamaPs(body: unknown, model: string): number | undefined {
  const loaded = isObj(body) && Array.isArray(body.models) ? body.models.filter(isObj) : [];
  const entry = loaded.find((m) => [m.name, m.model].some((n) => typeof n === "string" && sameOllamaModel(n, model)));
  return entry ? contextTokens(entry.context_length) : undefined;
}

/** From Ollama's `/api/show`: the Modelfile's `num_ctx`, if it sets one. The trained `context_length` is deliberately ignored (see the top). */
export function parseOllamaShow(body: unknown): number | undefined {
  if (!isObj(body) || typeof body.parameters !== "string") return undefined;
  let found: number | undefined;
  for (const line of body.parameters.split("\n")) {
    const m = /^\s*num_ctx\s+(\S+)\s*$/.exec(line);
    if (m) found = contextTokens(m[1]);
  }
  return found;
}

export interface DiscoverOptions {
  /** One deadline for all the requests of a discovery. */
  readonly timeoutMs: number;
  readonly fetch?: typeof fetch;
  /** Sent as a bearer token (remote APIs, vLLM started with --api-key). */
  readonly apiKey?: string;
}

/** The backend's URL without trailing slashes or a final `/v1` (an OpenAI base URL often has one). */
function rootUrl(url: string): string {
  return url.replace(/\/+$/, "").replace(/\/v1$/, "");
}

/** The windows of several models of one backend, each undefined when unknown; one list request serves them all. Never throws. */
export async function discoverContexts(backend: BackendConfig, models: readonly string[], opts: DiscoverOptions): Promise<(number | undefined)[]> {
  const signal = AbortSignal.timeout(opts.timeoutMs);
  const doFetch = opts.fetch ?? fetch;
  const auth: Record<string, string> = opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {};
  const read = async (path: string, post?: unknown): Promise<unknown> => {
    try {
      const init: RequestInit = post === undefined ? { headers: auth } : { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify(post) };
      const r = await doFetch(`${rootUrl(backend.url)}${path}`, { ...init, signal });
      const text = await r.text();
      return r.ok ? (JSON.parse(text) as unknown) : undefined;
    } catch {
      return undefined;
    }
  };
  switch (backend.kind) {
    case "vllm":
    case "openai": {
      const list = await read("/v1/models");
      return models.map((m) => parseModelsList(list, m));
    }
    case "llamacpp": {
      const n = parseLlamacppProps(await read("/props"));
      return models.map(() => n);
    }
    case "ollama": {
      const ps = await read("/api/ps");
      // `name` too: Ollama before 0.2 knew no `model`.
      return Promise.all(models.map(async (m) => parseOllamaPs(ps, m) ?? parseOllamaShow(await read("/api/show", { model: m, name: m }))));
    }
    default:
      return models.map(() => undefined);
  }
}

/** The window of `model` on `backend`, or undefined when unknown, unreachable or past `timeoutMs`. Never throws. */
export async function discoverContext(backend: BackendConfig, model: string, opts: DiscoverOptions): Promise<number | undefined> {
  return (await discoverContexts(backend, [model], opts))[0];
}

export type WindowSource = "config" | "discovered" | "unknown";

export interface TierWindow {
  readonly tokens?: number;
  readonly source: WindowSource;
  /** When it was discovered (ms since the epoch). */
  readonly at?: number;
}

export interface ContextWindowsOptions {
  readonly fetch?: typeof fetch;
  /** When a window was learned (the daemon's clock). */
  readonly clock: Clock;
  /** Deadline of one refresh; default the backend's health timeout. */
  readonly timeoutMs?: number;
  /** The backend's API key; default read from its api_key_env / api_key_file, none when unreadable. */
  readonly apiKey?: (b: BackendConfig) => string | undefined;
}


const keyOf = (backend: string, model: string) => `${backend}\n${model}`;

/** Discovered windows per (backend, model). A failed discovery keeps what was known. */
export class ContextWindows {
  private readonly found = new Map<string, { readonly tokens: number; readonly at: number }>();
  /** Bumped by forget(), so a refresh still in flight does not bring a forgotten window back. */
  private readonly generation = new Map<string, number>();
  private readonly opts: ContextWindowsOptions;
  private readonly clock: Clock;

  constructor(opts: ContextWindowsOptions) {
    this.opts = opts;
    this.clock = opts.clock;
  }

  /** The discovered window of (backend, model); config overrides are windowOf's business. */
  get(backend: string, model: string): number | undefined {
    return this.found.get(keyOf(backend, model))?.tokens;
  }

  /** A tier's window and where it comes from: the config first, then discovery, else unknown. */
  windowOf(tier: Pick<TierConfig, "backend" | "model" | "context">): TierWindow {
    if (tier.context !== undefined) return { tokens: tier.context, source: "config" };
    const d = this.found.get(keyOf(tier.backend, tier.model));
    return d ? { tokens: d.tokens, source: "discovered", at: d.at } : { source: "unknown" };
  }

  /** Stores a window learned elsewhere (e.g. the `n_ctx` of llama-server's context error); false when `tokens` is not a plausible window. */
  record(backend: string, model: string, tokens: unknown): boolean {
    const n = contextTokens(tokens);
    if (n === undefined) return false;
    this.found.set(keyOf(backend, model), { tokens: n, at: this.clock.now() });
    return true;
  }

  /** Asks the backend for the windows of `models` and stores those it states; unknown or failed ones keep their old value. Never throws. */
  async refresh(backend: BackendConfig, models: readonly string[]): Promise<void> {
    const gen = this.generation.get(backend.name) ?? 0;
    const unique = [...new Set(models)];
    let apiKey: string | undefined;
    try {
      apiKey = (this.opts.apiKey ?? apiKeyIfReadable)(backend);
    } catch {
      apiKey = undefined;
    }
    const windows = await discoverContexts(backend, unique, { timeoutMs: this.opts.timeoutMs ?? backend.health.timeout, fetch: this.opts.fetch, apiKey });
    if ((this.generation.get(backend.name) ?? 0) !== gen) return;
    windows.forEach((n, i) => {
      if (n !== undefined) this.record(backend.name, unique[i]!, n);
    });
  }

  /** Drops every window of `backend` (its process was replaced, its config changed). */
  forget(backend: string): void {
    this.generation.set(backend, (this.generation.get(backend) ?? 0) + 1);
    for (const k of [...this.found.keys()]) if (k.startsWith(`${backend}\n`)) this.found.delete(k);
  }
}
