/**
 * Failover drills: cause a failure on purpose, send a marked request stream
 * through the routing socket meanwhile, and report what a client and an
 * operator would have seen.
 *
 * - primary-outage: the router treats the first tier's backend as down for the
 *   duration; its process is not touched.
 * - backend-crash: SIGKILL of the first tier's process; the supervisor's
 *   restart path brings it back.
 * - backend-hang: SIGSTOP of its process group for the duration, then SIGCONT;
 *   the wedge path (timeouts, probes) must notice.
 */
import { randomBytes } from "node:crypto";
import { Agent } from "undici";
import type { AlertEvent } from "../alerts/events.ts";
import type { Config, RouteConfig } from "../config/types.ts";
import { LlmsupError } from "../errors/error.ts";
import type { HealthRegistry } from "../health/registry.ts";
import type { Clock } from "../platform/clock.ts";
import { signalGroup } from "../platform/procfs.ts";
import type { Router } from "../router/router.ts";
import type { Supervisor } from "../supervisor/supervisor.ts";
import type { DaemonEvent } from "../daemon/daemon.ts";
import { verdictOf, type DrillReport, type DrillScenario } from "./report.ts";

export interface DrillDeps {
  readonly config: Config;
  readonly socket: string;
  readonly health: HealthRegistry;
  readonly supervisor: Supervisor;
  readonly router: () => Router;
  readonly subscribe: (fn: (e: DaemonEvent) => void) => () => void;
  /** Alerts raised since a time. */
  readonly alertsSince: (at: number) => readonly AlertEvent[];
  /** Mails delivered so far; undefined when alerts are off. */
  readonly delivered: () => number | undefined;
  readonly clock: Clock;
}

export interface DrillSpec {
  readonly scenario: DrillScenario;
  readonly route?: string;
  readonly durationMs: number;
  /** Time between two requests of the marked stream. */
  readonly intervalMs?: number;
  /** How long to wait for the first tier to answer again after the failure ends. */
  readonly recoveryTimeoutMs?: number;
}

interface Sent {
  readonly n: number;
  readonly at: number;
  done?: number;
  ok?: boolean;
  tier?: number;
}

const MAX_IN_FLIGHT = 32;

export async function runDrill(d: DrillDeps, spec: DrillSpec): Promise<DrillReport> {
  const route = pickRoute(d.config, spec.route);
  const tier0 = route.tiers[0]!;
  const backendName = tier0.backend;
  const backend = d.config.backends.find((b) => b.name === backendName)!;
  const needsProcess = spec.scenario !== "primary-outage";
  const pid = d.supervisor.names().includes(backendName) ? d.supervisor.owner(backendName).snapshot().pid : undefined;
  if (needsProcess && (!backend.managed || pid === undefined)) {
    throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", `drill ${spec.scenario} needs tier 0 of ${route.model} (${backendName}) to be a running managed backend`, {});
  }
  if (d.router().servingTier(route) !== 0) {
    throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", `${route.model} is not on its first tier right now; a drill would blur a real incident`, {});
  }
  if (!route.tiers.slice(1).some((t) => d.router().unavailable(t) === undefined)) {
    throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", `no fallback tier of ${route.model} can take requests right now; the drill would be a real outage`, {});
  }

  const id = randomBytes(4).toString("hex");
  const deliveredBefore = d.delivered();
  const agent = new Agent({ connect: { socketPath: d.socket }, connections: MAX_IN_FLIGHT });
  const sent: Sent[] = [];
  const timeline: { at: number; what: string }[] = [];
  const t0 = d.clock.now();
  const note = (what: string) => timeline.push({ at: d.clock.now(), what });
  let detectedAt: number | undefined;
  const detected = (why: string) => {
    if (detectedAt === undefined) {
      detectedAt = d.clock.now();
      note(`detected: ${why}`);
    }
  };
  const off = d.subscribe((e) => {
    if (e.event === "backend.state" && e.backend === backendName && e.at >= t0) {
      note(`${backendName}: ${e.from} → ${e.to} (${e.reason})`);
      if (e.to === "exited" || e.to === "degraded" || e.to === "stopping") detected(`${backendName} ${e.to}`);
    } else if ((e.event === "router.route.fallback" || e.event === "router.route.recovered" || e.event === "router.route.down") && e.route === route.model) {
      note(e.event === "router.route.recovered" ? `${route.model} back on tier 0` : e.event === "router.route.down" ? `${route.model}: every tier down` : `${route.model} now on tier ${e.to.index} (${e.to.backend})`);
    } else if (e.event === "router.failover" && e.route === route.model && e.from.backend === backendName) {
      detected(`a request failed on tier 0 (${e.reason})`);
    }
  });
  const offHealth = d.health.onChange((name, h) => {
    if (name === backendName && h.state !== "healthy") detected(`${backendName} ${h.state}: ${h.reason}`);
  });

  // The marked request stream.
  let n = 0;
  let streaming = true;
  const inFlight = new Set<Promise<void>>();
  const fire = () => {
    if (inFlight.size >= MAX_IN_FLIGHT) return;
    const s: Sent = { n: ++n, at: d.clock.now() };
    sent.push(s);
    const p = ask(agent, route, id, s.n).then((r) => {
      s.done = d.clock.now();
      s.ok = r.ok;
      s.tier = r.tier;
    });
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };
  const interval = spec.intervalMs ?? 250;
  const pump = setInterval(() => streaming && fire(), interval);
  fire();

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const failAt = d.clock.now();
  note(`failure injected: ${spec.scenario} on ${backendName}`);
  let endAt = failAt;
  try {
    if (spec.scenario === "primary-outage") {
      d.health.set(backendName, "drill", "down", `drill ${id}: primary-outage`);
      await sleep(spec.durationMs);
      d.health.set(backendName, "drill", "healthy", "");
      endAt = d.clock.now();
      note("failure ended: tier 0 back in service");
    } else if (spec.scenario === "backend-crash") {
      process.kill(pid!, "SIGKILL");
      await sleep(spec.durationMs);
      endAt = failAt;
    } else {
      signalGroup(pid!, "SIGSTOP");
      await sleep(spec.durationMs);
      signalGroup(pid!, "SIGCONT");
      endAt = d.clock.now();
      note("failure ended: SIGCONT");
    }
    // Until an answer comes from tier 0 again.
    const deadline = d.clock.now() + (spec.recoveryTimeoutMs ?? Math.max(30_000, backend.process?.startup_timeout ?? 0));
    while (d.clock.now() < deadline && !sent.some((s) => s.done !== undefined && s.at >= endAt && s.ok && s.tier === 0)) await sleep(100);
  } finally {
    streaming = false;
    clearInterval(pump);
    if (spec.scenario === "backend-hang" && endAt === failAt) signalGroup(pid!, "SIGCONT");
    if (spec.scenario === "primary-outage") d.health.set(backendName, "drill", "healthy", "");
  }
  await Promise.race([Promise.all(inFlight), sleep(10_000)]);
  off();
  offHealth();
  await agent.close().catch(() => undefined);

  const finished = sent.filter((s) => s.done !== undefined);
  const firstFallback = finished.filter((s) => s.ok && s.tier !== undefined && s.tier > 0 && s.at >= failAt).sort((a, b) => a.done! - b.done!)[0];
  const recovered = finished.filter((s) => s.ok && s.tier === 0 && s.at >= endAt).sort((a, b) => a.done! - b.done!)[0];
  const raised = d.alertsSince(t0).some((a) => (a.kind === "failover" || a.kind === "all_tiers_down") && a.route === route.model);
  const before = deliveredBefore;
  let delivered: boolean | null = null;
  if (before !== undefined) {
    const until = d.clock.now() + 10_000;
    while (d.clock.now() < until && (d.delivered() ?? 0) <= before && raised) await sleep(100);
    delivered = raised && (d.delivered() ?? 0) > before;
  }
  const base = {
    id,
    scenario: spec.scenario,
    route: route.model,
    backend: backendName,
    started_at: new Date(t0).toISOString(),
    duration_ms: spec.durationMs,
    requests: sent.length,
    client_errors: sent.filter((s) => s.done !== undefined && !s.ok).length + sent.filter((s) => s.done === undefined).length,
    fallback_answers: finished.filter((s) => s.ok && (s.tier ?? 0) > 0).length,
    detection_ms: detectedAt === undefined ? null : detectedAt - failAt,
    failover_ms: firstFallback ? firstFallback.done! - failAt : null,
    recovery_ms: recovered ? recovered.done! - endAt : null,
    worst_latency_ms: Math.max(0, ...finished.map((s) => s.done! - s.at)),
    alert: { raised, delivered },
    timeline: timeline.map((t) => ({ at_ms: t.at - t0, what: t.what })),
  };
  return { ...base, ...verdictOf(base) };
}

function pickRoute(config: Config, name: string | undefined): RouteConfig {
  const routes = config.routes;
  const r = name ? routes.find((x) => x.model === name) : (routes.find((x) => x.model !== "*") ?? routes[0]);
  if (!r) throw new LlmsupError("LLMSUP_E_DRILL_REFUSED", name ? `no route ${name} (routes: ${routes.map((x) => x.model).join(", ")})` : "no route to drill", {});
  return r;
}

async function ask(agent: Agent, route: RouteConfig, id: string, n: number): Promise<{ ok: boolean; tier?: number }> {
  try {
    const r = await agent.request({
      origin: "http://llmsup",
      path: "/v1/chat/completions",
      method: "POST",
      headers: { "content-type": "application/json", "x-llmsup-drill": id, "x-llmsup-cache": "no-store" },
      body: JSON.stringify({ model: route.model === "*" ? "drill" : route.model, messages: [{ role: "user", content: `llmsup drill ${id}, request ${n}` }], max_tokens: 4 }),
    });
    const text = await r.body.text();
    const tier = Number(r.headers["x-llmsup-tier"]);
    let ok = r.statusCode === 200;
    if (ok) {
      try {
        ok = Array.isArray((JSON.parse(text) as { choices?: unknown }).choices);
      } catch {
        ok = false;
      }
    }
    return { ok, tier: Number.isInteger(tier) ? tier : undefined };
  } catch {
    return { ok: false };
  }
}
