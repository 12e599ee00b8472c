/** The daemon's metrics on a registry: the status read once per scrape, unknown when it cannot be had, restarts and XIDs counted as they happen, a backend gone on reload gone from the counters too. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { DaemonMetrics, isSupervisorRestart } from "../../src/daemon/daemon-metrics.ts";
import type { DaemonEvent } from "../../src/daemon/deps.ts";
import type { DaemonStatus } from "../../src/daemon/status.ts";
import { xidClassInfo, xidInfo } from "../../src/gpu/xid.ts";
import type { XidOutcome } from "../../src/gpu/xid-policy.ts";
import { NOW, status } from "./status-fixture.ts";

const state = (backend: string, from: string, to: string): DaemonEvent => ({ event: "backend.state", backend, generation: 1, from, to, reason: "r", at: NOW }) as DaemonEvent;

function setup(read: () => DaemonStatus) {
  const registry = new Registry();
  let reads = 0;
  const m = new DaemonMetrics({ registry, status: () => (reads++, read()), now: () => NOW, version: "0.1.0" });
  return { m, registry, reads: () => reads };
}

test("one status per scrape for every family; each scrape reads it afresh", async () => {
  const { registry, reads } = setup(() => status);
  const text = await registry.metrics();
  assert.equal(reads(), 1);
  assert.match(text, /^llmsup_status_verdict 2$/m);
  assert.match(text, /^llmsup_route_on_fallback\{route="llama"\} 1$/m);
  assert.match(text, /^# TYPE llmsup_alerts_delivered_total counter$/m);
  await registry.metrics();
  assert.equal(reads(), 2);
});

test("a status that cannot be had (the daemon not up yet): verdict unknown (3) and nothing made up", async () => {
  const { registry } = setup(() => {
    throw new Error("not started");
  });
  const text = await registry.metrics();
  assert.match(text, /^llmsup_status_verdict 3$/m);
  assert.doesNotMatch(text, /^llmsup_(?:route|backend|gpu)_\w+[{ ]/m);
});

test("restarts: counted when the supervisor enters backoff after an exit, not for operator starts; every managed backend has a series from the start, a backend gone on reload has none", async () => {
  let current: DaemonStatus = status;
  const { m, registry } = setup(() => current);
  assert.equal(isSupervisorRestart(state("primary", "exited", "backoff")), true);
  assert.equal(isSupervisorRestart(state("primary", "backoff", "starting")), false, "the start after the backoff is the same restart");
  assert.equal(isSupervisorRestart(state("primary", "stopped", "starting")), false, "an operator's start");
  assert.equal(isSupervisorRestart(state("primary", "exited", "starting")), false, "an operator's restart");
  for (const e of [state("primary", "stopped", "starting"), state("primary", "exited", "backoff"), state("primary", "backoff", "starting"), state("primary", "exited", "backoff")]) m.event(e);
  const text = await registry.metrics();
  assert.match(text, /^llmsup_backend_restarts_total\{backend="primary"\} 2$/m);
  assert.match(text, /^llmsup_backend_restarts_total\{backend="fallback"\} 0$/m);
  assert.doesNotMatch(text, /llmsup_backend_restarts_total\{backend="cloud"\}/, "a remote backend is never restarted");

  current = { ...status, backends: status.backends.filter((b) => b.name !== "primary") };
  const reloaded = await registry.metrics();
  assert.doesNotMatch(reloaded, /backend="primary"/);
  assert.match(reloaded, /^llmsup_backend_restarts_total\{backend="fallback"\} 0$/m);
});

test("XIDs: counted by GPU and XID number; a GPU fallen off the bus is 79; a bus id that is no known GPU is gpu=unknown", async () => {
  const { m, registry } = setup(() => status);
  const xid = (n: number, gpu: number | null): XidOutcome => ({ event: { type: "xid", xid: n, busId: "00000000:1B:00.0", detail: "", message: "" }, gpu, info: xidInfo(n), disposition: "fault", note: "" });
  m.xid(xid(48, 0));
  m.xid(xid(48, 0));
  m.xid(xid(13, null));
  m.xid({ event: { type: "fallen_off_bus", busId: "00000000:1B:00.0", message: "" }, gpu: 0, info: xidClassInfo("fallen_off_bus"), disposition: "fault", note: "" });
  const text = await registry.metrics();
  assert.match(text, /^llmsup_gpu_xid_errors_total\{gpu="0",xid="48"\} 2$/m);
  assert.match(text, /^llmsup_gpu_xid_errors_total\{gpu="unknown",xid="13"\} 1$/m);
  assert.match(text, /^llmsup_gpu_xid_errors_total\{gpu="0",xid="79"\} 1$/m);
});
