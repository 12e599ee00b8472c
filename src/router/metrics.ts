/** Prometheus metrics of the router (prom-client), one registry per router so tests stay apart. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { HotCounter, HotHistogram } from "./hot-metrics.ts";

/** What the metrics read of the tier-state model at each scrape. */
export interface ModelView {
  readonly model: string;
  readonly serving: number;
  readonly tiers: readonly { readonly backend: string; readonly model: string; readonly breaker: string; readonly admission: { readonly admissible: boolean; readonly code?: string } }[];
}

export class RouterMetrics {
  readonly registry = new Registry();
  // Counted on every request: hot-metrics.ts.
  private readonly requests: HotCounter;
  private readonly failovers: Counter<"route" | "from" | "to" | "reason">;
  private readonly hedges: Counter<"route" | "from" | "to" | "outcome">;
  private readonly qualityFailures: Counter<"backend" | "model" | "detector">;
  private readonly ttftHist: HotHistogram;
  private readonly overheadHist: HotHistogram;
  private readonly continuations: Counter<"route" | "from" | "to" | "outcome">;
  private readonly cacheHits: Counter<"route" | "match">;
  private readonly cacheMisses: Counter<"route">;
  private readonly cacheSimilarity: Histogram<"route">;
  private readonly cacheLookupHist: Histogram;
  private readonly cacheStores: Counter<"route" | "outcome">;
  private readonly cacheEvictions: Counter<"reason">;
  private readonly cacheEntries: Gauge;
  private readonly cacheBytes: Gauge;
  private model: () => readonly ModelView[] = () => [];
  private inflight: () => readonly { readonly backend: string; readonly requests: number }[] = () => [];
  private connections: () => number = () => 0;
  private upstream: () => readonly { readonly backend: string; readonly connected: number; readonly queued: number }[] = () => [];
  private readonly connectionsRefused: Counter;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.requests = new HotCounter(this.registry, "llmsup_requests_total", "Requests by route, tier, backend and outcome (ok, or the failure class).", ["route", "tier", "backend", "outcome"]);
    this.failovers = new Counter({ name: "llmsup_failovers_total", help: "Failovers from one tier to the next, by reason.", labelNames: ["route", "from", "to", "reason"], registers });
    this.hedges = new Counter({ name: "llmsup_hedges_total", help: "Hedged first tokens: a tier slow to its first token (from) got the next tier (to) started alongside; outcome: won (the hedge answered), lost (the tier it hedged answered, or the request ended otherwise), failed (the hedge failed).", labelNames: ["route", "from", "to", "outcome"], registers });
    this.qualityFailures = new Counter({ name: "llmsup_quality_failures_total", help: "Model failures caught on answers (a tier failure each), by backend, model and detector: loop, empty, garbage, refusal.", labelNames: ["backend", "model", "detector"], registers });
    this.ttftHist = new HotHistogram(this.registry, "llmsup_time_to_first_token_seconds", "Time to first token (whole answer when not streaming).", ["route", "backend"], [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60]);
    this.overheadHist = new HotHistogram(this.registry, "llmsup_router_overhead_seconds", "Time the router itself adds to a request.", [], [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05]);
    this.continuations = new Counter({ name: "llmsup_stream_continuations_total", help: "Streams that broke after their first bytes and were carried to another tier (from, to: backends); outcome: continued (the other tier finished the answer) or failed (it failed too).", labelNames: ["route", "from", "to", "outcome"], registers });
    this.cacheHits = new Counter({ name: "llmsup_cache_hits_total", help: "Answers served from the emergency cache (every tier down), by match: exact or similar.", labelNames: ["route", "match"], registers });
    this.cacheMisses = new Counter({ name: "llmsup_cache_misses_total", help: "Emergency cache lookups (every tier down) that found nothing to serve.", labelNames: ["route"], registers });
    this.cacheSimilarity = new Histogram({ name: "llmsup_cache_hit_similarity", help: "Prompt similarity of the answers served from the emergency cache (1 = exact).", labelNames: ["route"], buckets: [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1], registers });
    this.cacheLookupHist = new Histogram({ name: "llmsup_cache_lookup_seconds", help: "Time of an emergency cache lookup.", buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1], registers });
    this.cacheStores = new Counter({ name: "llmsup_cache_stores_total", help: "Answers offered to the emergency cache, by outcome: stored, or why not (opt_out, multi_turn, tools, …).", labelNames: ["route", "outcome"], registers });
    this.cacheEvictions = new Counter({ name: "llmsup_cache_evictions_total", help: "Answers removed from the emergency cache: ttl (expired) or lru (over max_entries / max_bytes).", labelNames: ["reason"], registers });
    this.cacheEntries = new Gauge({ name: "llmsup_cache_entries", help: "Answers in the emergency cache.", registers });
    this.cacheBytes = new Gauge({ name: "llmsup_cache_bytes", help: "Bytes the emergency cache's answers take (bounded by [cache] max_bytes).", registers });
    const metrics = this;
    new Gauge({
      name: "llmsup_breaker_state",
      help: "Circuit breaker per (backend, model) of the routes' tiers: 0 closed, 0.5 half-open, 1 open.",
      labelNames: ["backend", "model"],
      registers,
      collect() {
        this.reset();
        for (const r of metrics.model()) for (const t of r.tiers) this.set({ backend: t.backend, model: t.model }, t.breaker === "open" ? 1 : t.breaker === "half_open" ? 0.5 : 0);
      },
    });
    new Gauge({
      name: "llmsup_route_serving_tier",
      help: "The tier serving each route by the tier-state model (0 = first tier); -1 when no tier can serve.",
      labelNames: ["route"],
      registers,
      collect() {
        this.reset();
        for (const r of metrics.model()) this.set({ route: r.model }, r.serving);
      },
    });
    new Gauge({
      name: "llmsup_tier_admissible",
      help: "1 when a route's tier may serve now, else 0; reason is why not (backend_down, breaker_open, misconfigured, cooldown, unsupported, not_configured) or admissible.",
      labelNames: ["route", "tier", "backend", "reason"],
      registers,
      collect() {
        this.reset();
        for (const r of metrics.model()) {
          r.tiers.forEach((t, i) => this.set({ route: r.model, tier: String(i), backend: t.backend, reason: t.admission.admissible ? "admissible" : (t.admission.code ?? "unknown") }, t.admission.admissible ? 1 : 0));
        }
      },
    });
    new Gauge({
      name: "llmsup_backend_inflight_requests",
      help: "Requests on each backend now (attempts running, streams until their last byte): what `llmsup drain --wait` waits for.",
      labelNames: ["backend"],
      registers,
      collect() {
        this.reset();
        for (const b of metrics.inflight()) this.set({ backend: b.backend }, b.requests);
      },
    });
    new Gauge({
      name: "llmsup_backend_upstream_connections",
      help: "Connections the router holds open to each backend's server now, idle keep-alive ones included.",
      labelNames: ["backend"],
      registers,
      collect() {
        this.reset();
        for (const b of metrics.upstream()) this.set({ backend: b.backend }, b.connected);
      },
    });
    new Gauge({
      name: "llmsup_backend_queued_requests",
      help: "Requests waiting in llmsup for a connection to each backend (only when its max_connections are all in use); the wait counts toward the tier's ttft_timeout.",
      labelNames: ["backend"],
      registers,
      collect() {
        this.reset();
        for (const b of metrics.upstream()) this.set({ backend: b.backend }, b.queued);
      },
    });
    this.connectionsRefused = new Counter({ name: "llmsup_client_connections_refused_total", help: "Client connections refused because router.max_connections were open (answered 503 overloaded and closed).", registers });
    new Gauge({
      name: "llmsup_client_connections",
      help: "Client connections the router holds now, over the unix socket and TCP (bounded by router.max_connections).",
      registers,
      collect() {
        this.set(metrics.connections());
      },
    });
    // The client library's standard process_* and nodejs_* names, unprefixed as every Prometheus client exports them;
    // a coarse event-loop monitor: the default 10 ms timer alone costs an idle daemon measurable CPU.
    if (options.defaultMetrics) {
      collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 250 });
      // Gauges named like counters (promtool: non-counter metrics should not have "_total" suffix); each is the sum of its per-type gauge, which stays (nodejs_active_handles{type}, …).
      for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) this.registry.removeSingleMetric(name);
    }
  }

  /** Where the in-flight gauge reads each configured backend's count (the current router). */
  followInflight(view: () => readonly { readonly backend: string; readonly requests: number }[]): void {
    this.inflight = view;
  }

  /** Where the upstream connection and queue gauges read each configured backend's figures (the current router's pools). */
  followConnectionsUpstream(view: () => readonly { readonly backend: string; readonly connected: number; readonly queued: number }[]): void {
    this.upstream = view;
  }

  /** Where the client-connection gauge reads its count (the routing socket's server). */
  followConnections(view: () => number): void {
    this.connections = view;
  }

  connectionRefused(): void {
    this.connectionsRefused.inc();
  }

  /** Where the route and tier gauges read the tier-state model (the current router). */
  follow(view: () => readonly ModelView[]): void {
    this.model = view;
  }

  request(route: string, tier: number, backend: string, outcome: string): void {
    this.requests.inc([route, String(tier), backend, outcome]);
  }

  failover(route: string, from: string, to: string, reason: string): void {
    this.failovers.inc({ route, from, to, reason });
  }

  /** A broken stream's continuation on another tier ended: the answer was finished there, or that tier failed too. */
  continuation(route: string, from: string, to: string, outcome: "continued" | "failed"): void {
    this.continuations.inc({ route, from, to, outcome });
  }

  hedge(route: string, from: string, to: string, outcome: "won" | "lost" | "failed"): void {
    this.hedges.inc({ route, from, to, outcome });
  }

  quality(backend: string, model: string, detector: string): void {
    this.qualityFailures.inc({ backend, model, detector });
  }

  ttft(route: string, backend: string, seconds: number): void {
    this.ttftHist.observe([route, backend], seconds);
  }

  overhead(seconds: number): void {
    this.overheadHist.observe([], seconds);
  }

  // The emergency cache (src/cache/cache.ts CacheMetricsSink).

  cacheLookup(route: string, outcome: "exact" | "similar" | "semantic" | "miss", seconds: number, similarity?: number): void {
    this.cacheLookupHist.observe(seconds);
    if (outcome === "miss") {
      this.cacheMisses.inc({ route });
      return;
    }
    this.cacheHits.inc({ route, match: outcome });
    if (similarity !== undefined) this.cacheSimilarity.observe({ route }, similarity);
  }

  cacheStore(route: string, outcome: string): void {
    this.cacheStores.inc({ route, outcome });
  }

  cacheSize(entries: number, bytes: number): void {
    this.cacheEntries.set(entries);
    this.cacheBytes.set(bytes);
  }

  cacheEvicted(reason: "ttl" | "lru", n: number): void {
    this.cacheEvictions.inc({ reason }, n);
  }
}
