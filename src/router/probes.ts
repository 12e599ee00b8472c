/**
 * Getting back to a healed tier without spending user requests on it.
 *
 * - Tier probes: while a tier's breaker is open, a real minimal request of the
 *   kind it serves (a 1-token completion, or one embedding) goes to it every
 *   `probe_interval` of its backend; the first good answer closes the breaker.
 *   A backend that is DOWN is left to its health checks; `probe_interval = 0`
 *   switches tier probes off for that backend (paid cloud tiers).
 * - Backend checks: a suspicion (a connection reset under one request) gets a
 *   shallow probe at once; a backend found unreachable is DOWN (the "passive"
 *   health source) until a shallow probe passes, checked every interval.
 */
import type { BackendConfig, TierConfig } from "../config/types.ts";
import type { HealthRegistry } from "../health/registry.ts";
import type { Logger } from "../log/logger.ts";
import type { Clock, TimerHandle } from "../platform/clock.ts";
import { tierKey } from "./tier-book.ts";
import { ENDPOINT_PATHS, type Endpoint } from "./types.ts";
import type { Upstreams } from "./upstream.ts";

export interface ProbeDeps {
  readonly backends: ReadonlyMap<string, BackendConfig>;
  readonly upstreams: Upstreams;
  readonly health: HealthRegistry;
  readonly clock: Clock;
  readonly log: Logger;
  /** Whether the tier's breaker is still not closed (probing goes on). */
  readonly stillOut: (t: TierConfig) => boolean;
  /** A probe answered well: close the breaker. */
  readonly healed: (t: TierConfig, detail: string) => void;
}

/** The smallest real request of each endpoint: one token, or one embedding. */
export function probeBody(endpoint: Endpoint, model: string): Record<string, unknown> {
  if (endpoint === "embedding") return { model, input: "llmsup probe" };
  if (endpoint === "completion") return { model, prompt: "ping", max_tokens: 1, temperature: 0, stream: false };
  return { model, messages: [{ role: "user", content: "ping" }], max_tokens: 1, temperature: 0, stream: false };
}

/** Whether a probe's answer is a real answer of its endpoint. */
export function probeAnswered(endpoint: Endpoint, status: number, text: string): boolean {
  if (status < 200 || status >= 300) return false;
  try {
    const j = JSON.parse(text) as { choices?: unknown; data?: unknown };
    return endpoint === "embedding" ? Array.isArray(j.data) && j.data.length > 0 : Array.isArray(j.choices) && j.choices.length > 0;
  } catch {
    return false;
  }
}

export class RecoveryProbes {
  private readonly d: ProbeDeps;
  private readonly tierTimers = new Map<string, TimerHandle>();
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly checkTimers = new Map<string, TimerHandle>();
  private readonly checking = new Set<string>();
  private readonly stop = new AbortController();

  constructor(deps: ProbeDeps) {
    this.d = deps;
  }

  // ------------------------------------------------------------------ tiers

  /** The tier's breaker opened: probe it every probe_interval until it closes. */
  tierOut(t: TierConfig, endpoint: Endpoint): void {
    const key = tierKey(t);
    this.endpoints.set(key, endpoint);
    const b = this.d.backends.get(t.backend);
    if (!b || b.health.probe_interval <= 0 || this.tierTimers.has(key) || this.stop.signal.aborted) return;
    this.tierTimers.set(key, this.d.clock.setTimeout(() => void this.probeTier(t, b), b.health.probe_interval));
  }

  /** The endpoint a tier's probes use (what it failed on). */
  endpointOf(t: TierConfig): Endpoint | undefined {
    return this.endpoints.get(tierKey(t));
  }

  private async probeTier(t: TierConfig, b: BackendConfig): Promise<void> {
    const key = tierKey(t);
    this.tierTimers.delete(key);
    if (this.stop.signal.aborted || !this.d.stillOut(t)) return;
    if (this.d.health.get(t.backend).state !== "down") {
      const endpoint = this.endpoints.get(key) ?? "chat";
      const r = await this.request(t, b, endpoint);
      if (this.stop.signal.aborted) return;
      if (r.ok) {
        this.d.healed(t, r.detail);
        return;
      }
      this.d.log.debug({ event: "router.probe.failed", backend: t.backend, model: t.model, detail: r.detail }, `probe of ${t.backend}/${t.model} failed: ${r.detail}`);
    }
    if (this.d.stillOut(t)) this.tierOut(t, this.endpoints.get(key) ?? "chat");
  }

  private async request(t: TierConfig, b: BackendConfig, endpoint: Endpoint): Promise<{ ok: boolean; detail: string }> {
    const up = await this.d.upstreams.attempt({
      backend: b,
      tier: t,
      path: ENDPOINT_PATHS[endpoint],
      body: JSON.stringify(probeBody(endpoint, t.model)),
      stream: false,
      requestId: `probe-${Date.now().toString(36)}`,
      clientSignal: this.stop.signal,
      remainingMs: Math.min(b.health.deep_timeout, t.total_timeout),
    });
    if (up.kind === "failure") return { ok: false, detail: `${up.failure}: ${up.detail}` };
    let text = "";
    try {
      text = (await up.body.whole()).toString("utf8");
    } catch (e) {
      return { ok: false, detail: up.scrub(`the answer broke off: ${(e as Error).message}`) };
    } finally {
      up.done();
    }
    // The whole text is scrubbed before it is cut: a key cut in two would slip past as two short pieces.
    return probeAnswered(endpoint, up.status, text) ? { ok: true, detail: `a ${endpoint} probe answered` } : { ok: false, detail: `HTTP ${up.status}: ${up.scrub(text).slice(0, 120)}` };
  }

  // ------------------------------------------------------------------ backends

  /** Evidence that the backend cannot be reached: DOWN now, checked until a shallow probe passes. */
  unreachable(backend: string, reason: string): void {
    this.d.health.set(backend, "passive", "down", reason);
    this.scheduleCheck(backend);
  }

  /** A suspicion about the backend (a reset under one request): a shallow probe now; DOWN only if it fails. */
  suspect(backend: string, why: string): void {
    if (this.checking.has(backend) || this.checkTimers.has(backend)) return;
    void this.check(backend, why);
  }

  private scheduleCheck(backend: string): void {
    const b = this.d.backends.get(backend);
    if (!b || this.checkTimers.has(backend) || this.stop.signal.aborted) return;
    const every = b.health.probe_interval > 0 ? b.health.probe_interval : b.health.interval;
    this.checkTimers.set(backend, this.d.clock.setTimeout(() => {
      this.checkTimers.delete(backend);
      void this.check(backend);
    }, every));
  }

  private async check(backend: string, suspicion?: string): Promise<void> {
    const b = this.d.backends.get(backend);
    if (!b || this.checking.has(backend) || this.stop.signal.aborted) return;
    this.checking.add(backend);
    try {
      const r = await this.d.upstreams.check(b, b.health.timeout);
      if (this.stop.signal.aborted) return;
      if (r.ok) {
        if (this.d.health.has(backend, "passive")) this.d.health.set(backend, "passive", "healthy", "");
        return;
      }
      this.d.health.set(backend, "passive", "down", suspicion ? `${suspicion}, and a health probe right after failed: ${r.detail}` : `health probe failed: ${r.detail}`);
      this.scheduleCheck(backend);
    } finally {
      this.checking.delete(backend);
    }
  }

  close(): void {
    this.stop.abort();
    for (const t of [...this.tierTimers.values(), ...this.checkTimers.values()]) t.cancel();
    this.tierTimers.clear();
    this.checkTimers.clear();
  }
}
