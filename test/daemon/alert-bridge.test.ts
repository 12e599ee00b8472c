/** From supervisor transitions to alert events, and the live state the alert policy reconciles with. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Alerter } from "../../src/alerts/alerter.ts";
import type { LiveState } from "../../src/alerts/reconcile.ts";
import { validateConfigText } from "../../src/config/load.ts";
import type { Config } from "../../src/config/types.ts";
import { AlertBridge, liveAfterReload, liveAtStart } from "../../src/daemon/alert-bridge.ts";
import type { BackendState, StateEvent } from "../../src/supervisor/states.ts";
import { alertsConfig, ManualClock, realDelivery, SMTP_ENV, startSmtp } from "../alerts/helpers.ts";
import { MIN, T0 } from "../alerts/fixtures.ts";
import { memoryLogger } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";

function config(routes = ["llama", "qwen"], backends = ["vllm-gpu0", "cloud"]): Config {
  const b = backends
    .map((name) =>
      name === "cloud"
        ? `[[backend]]\nname = "cloud"\nkind = "openai"\nurl = "https://api.example.com"\n`
        : `[[backend]]\nname = "${name}"\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\ngpus = [0]\n  [backend.process]\n  command = ["/opt/vllm/bin/python", "-m", "vllm"]\n`,
    )
    .join("\n");
  const r = routes.map((m) => `[[route]]\nmodel = "${m}"\ntiers = [${backends.map((x) => `{ backend = "${x}", model = "m" }`).join(", ")}]\n`).join("\n");
  const v = validateConfigText(`${b}\n${r}`, { hostname: "gpu-box-1" });
  if (!v.ok) assert.fail(v.problems.map((p) => `${p.path}: ${p.message}`).join("\n"));
  return v.config;
}

let at = T0;
function state(from: BackendState, to: BackendState, extra: Partial<StateEvent> = {}): StateEvent {
  at += MIN;
  return { event: "backend.state", backend: "vllm-gpu0", generation: 1, from, to, reason: `${from} → ${to}`, at, ...extra };
}

const oomExit = { at: T0, generation: 1, pid: 4242, code: 1, signal: null, class: "oom" as const, reason: "CUDA out of memory", lastLines: ["torch.OutOfMemoryError: CUDA out of memory"] };

test("fatal, then llmsup reset, then ready: the bridge raises backend_recovered", () => {
  const bridge = new AlertBridge(config());
  assert.deepEqual(bridge.translate(state("exited", "fatal", { exit: oomExit, budget: { used: 5, burst: 5 } })).map((e) => e.kind), ["backend_fatal"]);
  assert.deepEqual(bridge.translate(state("fatal", "starting")), []);
  const ready = state("starting", "ready");
  assert.deepEqual(bridge.translate(ready), [{ kind: "backend_recovered", at: ready.at, backend: "vllm-gpu0" }]);
  assert.deepEqual(bridge.translate(state("ready", "ready")), [], "said once");
});

test("a fatal carried over a daemon restart, reset and ready: a fresh bridge raises backend_recovered", () => {
  const bridge = new AlertBridge(config());
  assert.deepEqual(bridge.translate(state("fatal", "starting")), []);
  assert.deepEqual(bridge.translate(state("starting", "ready")).map((e) => e.kind), ["backend_recovered"]);
});

test("a restart loop that comes back raises backend_recovered; a plain start does not", () => {
  const bridge = new AlertBridge(config());
  assert.deepEqual(bridge.translate(state("starting", "ready")), []);
  assert.deepEqual(bridge.translate(state("exited", "backoff", { exit: oomExit, budget: { used: 2, burst: 5 } })).map((e) => e.kind), ["backend_restarting"]);
  assert.deepEqual(bridge.translate(state("starting", "ready")).map((e) => e.kind), ["backend_recovered"]);
});

test("the live state at start: every route settling, each backend fatal or not as the supervisor restored it, no tier degraded (the router starts afresh)", () => {
  assert.deepEqual(liveAtStart(config(), [{ name: "vllm-gpu0", state: "fatal" }]), {
    routes: { llama: { serving: "settling" }, qwen: { serving: "settling" } },
    backends: { "vllm-gpu0": { fatal: true }, cloud: { fatal: false } },
    degradedTiers: new Set(),
  });
});

test("after a reload each remaining route stands where the new router has it, and the tiers it has DEGRADED; removed routes and backends are not in the live state", () => {
  const tiers = [{ backend: "vllm-gpu0", model: "m", quality: { state: "degraded" } }, { backend: "cloud", model: "m" }];
  const live: LiveState = liveAfterReload(config(["llama", "qwen"], ["cloud"]), [
    { model: "llama", serving: 1, phase: "settled", tiers },
    { model: "qwen", serving: -1, phase: "settled", tiers },
  ] as never);
  assert.deepEqual(live, { routes: { llama: { serving: { index: 1, backend: "cloud" } }, qwen: { serving: null } }, backends: { cloud: {} }, degradedTiers: new Set(["vllm-gpu0/m"]) });
  const settling = liveAfterReload(config(["llama"], ["cloud"]), [{ model: "llama", serving: 1, phase: "settling", tiers }] as never);
  assert.deepEqual(settling.routes, { llama: { serving: "settling" } });
});

test("a fatal carried over a daemon restart, then reset and ready: the all-clear is delivered to critical_to too, paired with the first life's fatal", async (t) => {
  at = T0;
  const smtp = await startSmtp(t);
  const dir = tempDir(t);
  const open = async (clock: ManualClock) => {
    const a = await Alerter.open({ config: alertsConfig(smtp.port), hostname: "gpu-box-1", stateDir: dir, logger: memoryLogger().logger, clock, env: SMTP_ENV, ...realDelivery, timeZone: "UTC" });
    t.after(() => a.close());
    return a;
  };
  const c = config();

  const first = await open(new ManualClock(T0));
  for (const e of new AlertBridge(c).translate(state("exited", "fatal", { exit: oomExit, budget: { used: 5, burst: 5 } }))) first.notify(e);
  assert.equal((await first.flush(5_000)).delivered, 1);
  await first.close();

  const clock = new ManualClock(T0 + 60 * MIN);
  const second = await open(clock);
  second.reconcile(liveAtStart(c, [{ name: "vllm-gpu0", state: "fatal" }]));
  const bridge = new AlertBridge(c);
  at = T0 + 60 * MIN;
  for (const e of [...bridge.translate(state("fatal", "starting")), ...bridge.translate(state("starting", "ready"))]) second.notify(e);
  await smtp.waitFor(2);
  await second.flush(2_000);

  assert.equal(smtp.mails.length, 2);
  const [fatal, ok] = smtp.mails;
  assert.equal(fatal!.subject, "[llmsup] gpu-box-1: vllm-gpu0 FATAL: restart budget spent");
  assert.equal(ok!.subject, "[llmsup] gpu-box-1: vllm-gpu0 ready again after 1h1m");
  assert.deepEqual(ok!.to, ["oncall@example.com", "boss@example.com"]);
  assert.deepEqual(ok!.to, fatal!.to);
});

test("a route moving off a drained backend is no failover mail; off a backend that failed, it is", () => {
  const bridge = new AlertBridge(config());
  const move = (code: string) => ({ event: "router.route.fallback" as const, route: "llama", from: { index: 0, backend: "vllm-gpu0", model: "m" }, to: { index: 1, backend: "cloud", model: "m" }, reason: code === "drained" ? "drained by alice since 2025-01-02T03:04:05Z" : "backend down: process exited", code, at: T0 });
  assert.deepEqual(bridge.translate(move("drained")), []);
  assert.equal(bridge.translate(move("backend_down"))[0]?.kind, "failover");
});

test("a tier DEGRADED by bad answers is one mail naming its routes and what to check; back under the count, an all-clear; after a restart the stale state is forgotten and the next degradation is mailed again", async (t) => {
  const smtp = await startSmtp(t);
  const dir = tempDir(t);
  const c = config(["llama"], ["vllm-gpu0", "cloud"]);
  const quality = (degraded: boolean, when: number) => ({ event: "router.tier.quality" as const, backend: "vllm-gpu0", model: "m", degraded, detections: degraded ? 3 : 2, windowMs: 5 * MIN, at: when });
  const open = async (clock: ManualClock) => {
    const a = await Alerter.open({ config: alertsConfig(smtp.port), hostname: "gpu-box-1", stateDir: dir, logger: memoryLogger().logger, clock, env: SMTP_ENV, ...realDelivery, timeZone: "UTC" });
    t.after(() => a.close());
    return a;
  };
  const first = await open(new ManualClock(T0));
  const bridge = new AlertBridge(c);
  for (const e of bridge.translate(quality(true, T0))) first.notify(e);
  for (const e of bridge.translate(quality(true, T0 + MIN))) first.notify(e);
  await smtp.waitFor(1);
  assert.equal(smtp.mails[0]!.subject, "[llmsup] gpu-box-1: vllm-gpu0/m DEGRADED: 3 bad answers in 5m");
  assert.match(smtp.mails[0]!.text, /route llama/);
  assert.match(smtp.mails[0]!.text, /llmsup events --kind quality/);
  assert.equal((await first.flush(5_000)).delivered, 1, "a repeat of the same state is no second mail");
  await first.close();

  // A restart: the router starts with no bad answers counted, so the subject is forgotten, silently.
  const second = await open(new ManualClock(T0 + 60 * MIN));
  second.reconcile(liveAtStart(c, []));
  for (const e of new AlertBridge(c).translate(quality(true, T0 + 61 * MIN))) second.notify(e);
  await smtp.waitFor(2);
  assert.equal(smtp.mails[1]!.subject, "[llmsup] gpu-box-1: vllm-gpu0/m DEGRADED: 3 bad answers in 5m", "a new degradation, not folded into the stale one");
  for (const e of new AlertBridge(c).translate(quality(false, T0 + 70 * MIN))) second.notify(e);
  await smtp.waitFor(3);
  assert.match(smtp.mails[2]!.subject, /vllm-gpu0\/m answers well again/);
  await second.flush(2_000);
  assert.equal(smtp.mails.length, 3);
});
