/**
 * Readiness and liveness probes, kind by kind (REFERENCE.md):
 * - vLLM: the port refuses connections while loading; /health 200 once serving.
 * - llama-server: /health 503 "Loading model" while loading, then 200.
 * - Ollama: / answers at once; a configured model is loaded by a warm-up and shows in /api/ps.
 * The deep probe is a 1-token completion, because /health can say 200 while the engine is wedged.
 */
import type { BackendConfig } from "../config/types.ts";

export type Readiness =
  | { readonly state: "ready" }
  | { readonly state: "loading"; readonly detail: string }
  | { readonly state: "failed"; readonly reason: string };

export interface ProbeResult {
  readonly ok: boolean;
  readonly latencyMs: number;
  /** Why it failed, or a degradation noticed while it succeeded. */
  readonly detail?: string;
  /** Alive but not at full strength (Ollama model partly on the CPU). */
  readonly degraded?: boolean;
}

export interface Prober {
  readiness(): Promise<Readiness>;
  shallow(): Promise<ProbeResult>;
  /** A 1-token completion; `skipped` when there is nothing to probe without side effects. */
  deep(): Promise<ProbeResult & { readonly skipped?: boolean }>;
}

interface HttpAnswer {
  readonly status: number;
  readonly body: string;
}

/** GET/POST with a deadline; connection errors come back as a short reason. */
async function http(url: string, timeoutMs: number, body?: unknown): Promise<HttpAnswer | { readonly error: string }> {
  try {
    const r = await fetch(url, {
      method: body === undefined ? "GET" : "POST",
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { status: r.status, body: await r.text() };
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    if (err.name === "TimeoutError" || err.name === "AbortError") return { error: `no answer within ${timeoutMs}ms` };
    return { error: err.cause?.code ?? err.cause?.message ?? err.message };
  }
}

function join(base: string, p: string): string {
  return `${base.replace(/\/+$/, "")}${p}`;
}

interface OllamaPs {
  models?: { name?: string; model?: string; size?: number; size_vram?: number; expires_at?: string }[];
}

function parseJson<T>(text: string): T | undefined {
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

/**
 * Probes for one backend. `models` are the upstream model names routes send
 * to it: the deep probe uses the first; Ollama's readiness loads them all.
 */
export function createProber(backend: BackendConfig, models: readonly string[], options: { readonly keepAlive?: string } = {}): Prober {
  const h = backend.health;
  const url = (p: string) => join(backend.url, p);
  const timed = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
    const t0 = performance.now();
    const r = await fn();
    return [r, Math.round(performance.now() - t0)];
  };

  const ollamaLoaded = async (): Promise<{ ps?: OllamaPs; error?: string }> => {
    const r = await http(url("/api/ps"), h.timeout);
    if ("error" in r) return { error: r.error };
    if (r.status !== 200) return { error: `/api/ps answered ${r.status}` };
    return { ps: parseJson<OllamaPs>(r.body) ?? { models: [] } };
  };

  return {
    async readiness() {
      if (backend.kind === "ollama") {
        const root = await http(url("/"), h.timeout);
        if ("error" in root) return { state: "loading", detail: `not accepting connections yet (${root.error})` };
        if (root.status !== 200) return { state: "loading", detail: `/ answered ${root.status}` };
        for (const model of models) {
          const warm = await http(url("/api/generate"), backend.process?.startup_timeout ?? 600_000, { model, keep_alive: options.keepAlive ?? "30m" });
          if ("error" in warm) return { state: "loading", detail: `warm-up of ${model}: ${warm.error}` };
          if (warm.status === 404) return { state: "failed", reason: `model ${model} is not installed in Ollama (pull it first): ${warm.body.slice(0, 200)}` };
          if (warm.status !== 200) return { state: "failed", reason: `warm-up of ${model} failed with ${warm.status}: ${warm.body.slice(0, 300)}` };
        }
        if (models.length > 0) {
          const { ps, error } = await ollamaLoaded();
          if (error) return { state: "loading", detail: error };
          const names = new Set((ps?.models ?? []).flatMap((m) => [m.name, m.model]));
          const missing = models.filter((m) => !names.has(m));
          if (missing.length) return { state: "loading", detail: `waiting for ${missing.join(", ")} in /api/ps` };
        }
        return { state: "ready" };
      }
      const r = await http(url("/health"), h.timeout);
      if ("error" in r) return { state: "loading", detail: `not accepting connections yet (${r.error})` };
      if (r.status === 200) return { state: "ready" };
      if (backend.kind === "llamacpp" && r.status === 503 && /Loading model/i.test(r.body)) return { state: "loading", detail: "loading model" };
      return { state: "loading", detail: `/health answered ${r.status}` };
    },

    async shallow() {
      if (backend.kind === "ollama") {
        const [{ ps, error }, latencyMs] = await timed(ollamaLoaded);
        if (error) return { ok: false, latencyMs, detail: error };
        const partial = (ps?.models ?? []).filter((m) => typeof m.size === "number" && typeof m.size_vram === "number" && m.size_vram < m.size);
        if (partial.length) {
          const m = partial[0]!;
          return { ok: true, latencyMs, degraded: true, detail: `${m.name} is partly on the CPU (${Math.round((100 * m.size_vram!) / m.size!)}% in VRAM)` };
        }
        return { ok: true, latencyMs };
      }
      const [r, latencyMs] = await timed(() => http(url("/health"), h.timeout));
      if ("error" in r) return { ok: false, latencyMs, detail: r.error };
      if (r.status !== 200) return { ok: false, latencyMs, detail: `/health answered ${r.status}` };
      return { ok: true, latencyMs };
    },

    async deep() {
      const model = models[0];
      if (!model) return { ok: true, latencyMs: 0, skipped: true, detail: "no route names a model on this backend" };
      if (backend.kind === "ollama") {
        // Probe only a loaded model, and leave its expiry where it was: a probe must not pin it in VRAM.
        const { ps, error } = await ollamaLoaded();
        if (error) return { ok: false, latencyMs: 0, detail: error };
        const loaded = (ps?.models ?? []).find((m) => m.name === model || m.model === model);
        if (!loaded) return { ok: true, latencyMs: 0, skipped: true, detail: `${model} is not loaded` };
        const remaining = loaded.expires_at ? Math.max(1, Math.floor((Date.parse(loaded.expires_at) - Date.now()) / 1000)) : 60;
        const [r, latencyMs] = await timed(() =>
          http(url("/api/generate"), h.deep_timeout, { model, prompt: "ping", stream: false, keep_alive: remaining, options: { num_predict: 1, temperature: 0 } }),
        );
        if ("error" in r) return { ok: false, latencyMs, detail: `1-token generation: ${r.error}` };
        if (r.status !== 200) return { ok: false, latencyMs, detail: `1-token generation answered ${r.status}` };
        return { ok: true, latencyMs };
      }
      const [r, latencyMs] = await timed(() =>
        http(url("/v1/chat/completions"), h.deep_timeout, { model, messages: [{ role: "user", content: "ping" }], max_tokens: 1, temperature: 0, stream: false }),
      );
      if ("error" in r) return { ok: false, latencyMs, detail: `1-token completion: ${r.error}` };
      if (r.status !== 200) return { ok: false, latencyMs, detail: `1-token completion answered ${r.status}: ${r.body.slice(0, 200)}` };
      const parsed = parseJson<{ choices?: unknown[] }>(r.body);
      if (!parsed?.choices?.length) return { ok: false, latencyMs, detail: "1-token completion returned no choice" };
      return { ok: true, latencyMs };
    },
  };
}
