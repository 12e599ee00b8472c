/**
 * Active probes of remote backends (another box, a cloud API): a cheap GET
 * every `interval` — never a completion, so they cost no model time and pin
 * no Ollama model. Consecutive failures take the backend DOWN; slow answers
 * make it DEGRADED; a good answer also clears a passive (connection) DOWN.
 */
import { apiKeyIfReadable, authHeaders } from "./api-key.ts";
import type { BackendConfig, Config } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock, TimerHandle } from "../platform/clock.ts";
import type { HealthRegistry } from "./registry.ts";

const PROBE_PATH: Record<string, string> = { openai: "/v1/models", vllm: "/health", llamacpp: "/health", ollama: "/", anthropic: "/v1/models" };

export function probeUrl(b: BackendConfig): string {
  const base = b.url.replace(/\/+$/, "");
  const p = PROBE_PATH[b.kind] ?? "/health";
  // An OpenAI (or Anthropic) base URL often already ends in /v1.
  return (b.kind === "openai" || b.kind === "anthropic") && /\/v1$/.test(base) ? `${base}/models` : `${base}${p}`;
}


export class RemoteProber {
  private readonly timers = new Map<string, TimerHandle>();
  private readonly failures = new Map<string, number>();
  private stopped = false;
  private readonly backends: readonly BackendConfig[];
  private readonly health: HealthRegistry;
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(config: Config, health: HealthRegistry, clock: Clock, log: Logger) {
    this.backends = config.backends.filter((b) => !b.managed);
    this.health = health;
    this.clock = clock;
    this.log = log.child({ component: "health" });
  }

  start(): void {
    for (const b of this.backends) void this.probe(b);
  }

  /** One probe now; schedules the next. */
  async probe(b: BackendConfig): Promise<void> {
    if (this.stopped) return;
    const h = b.health;
    const t0 = performance.now();
    let problem: string | undefined;
    try {
      const key = apiKeyIfReadable(b);
      const r = await fetch(probeUrl(b), { headers: authHeaders(b.kind, key), signal: AbortSignal.timeout(h.timeout) });
      await r.arrayBuffer();
      if (r.status === 401 || r.status === 403) problem = `probe answered ${r.status}: the API key is refused`;
      else if (r.status >= 400) problem = `probe answered ${r.status}`;
    } catch (e) {
      const err = e as Error & { cause?: { code?: string } };
      problem = err.name === "TimeoutError" ? `no answer within ${h.timeout}ms` : (err.cause?.code ?? err.message);
    }
    const latency = Math.round(performance.now() - t0);
    if (this.stopped) return;
    if (problem) {
      const n = (this.failures.get(b.name) ?? 0) + 1;
      this.failures.set(b.name, n);
      if (n >= h.failures_to_down) this.health.set(b.name, "probe", "down", `${n} probes failed: ${problem}`);
      this.log.debug({ event: "health.probe.failed", backend: b.name, failures: n, problem }, `probe of ${b.name} failed: ${problem}`);
    } else {
      this.failures.set(b.name, 0);
      this.health.set(b.name, "passive", "healthy", "");
      if (latency > h.degraded_latency) this.health.set(b.name, "probe", "degraded", `probe took ${latency}ms (> ${h.degraded_latency}ms)`);
      else this.health.set(b.name, "probe", "healthy", "");
    }
    this.timers.set(b.name, this.clock.setTimeout(() => void this.probe(b), h.interval));
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) t.cancel();
  }
}
