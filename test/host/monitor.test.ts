/** The host monitor on this machine and on an injected reader with manual time. */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { HostMonitor } from "../../src/host/monitor.ts";
import { busyPct, readHost, systemHostReader, type HostReader } from "../../src/host/resources.ts";
import type { HostFault } from "../../src/host/thresholds.ts";
import { tempDir } from "../helpers/tmp.ts";
import { flush, ManualClock } from "../helpers/clock.ts";

const GiB = 1024 ** 3;

test("reading this machine: CPU, memory and the disk under a directory that does not exist yet", async (t) => {
  const dir = tempDir(t);
  const first = await readHost(systemHostReader, [path.join(dir, "state", "not-yet"), dir], undefined, 1);
  assert.deepEqual(first.reading.errors, []);
  assert.ok(first.reading.cpu.cores >= 1);
  assert.equal(first.reading.cpu.busyPct, undefined, "no share before a second reading");
  assert.ok(first.reading.memory!.totalBytes > first.reading.memory!.availableBytes && first.reading.memory!.availableBytes > 0);
  const [missing, present] = first.reading.disks;
  assert.equal(missing!.measured, dir, "the nearest existing parent is measured");
  assert.ok(present!.freeBytes > 0 && present!.freeBytes <= present!.totalBytes);
  const second = await readHost(systemHostReader, [], first.cpu, 2);
  const busy = second.reading.cpu.busyPct;
  assert.ok(busy === undefined || (busy >= 0 && busy <= 100));
  assert.equal(busyPct({ idle: 100, total: 200 }, { idle: 150, total: 400 }), 75);
});

test("the monitor polls every interval, raises disk_low once and clears it", async (t) => {
  const clock = new ManualClock(0);
  let free = 50 * GiB;
  const reader: HostReader = {
    cpuTimes: () => ({ idle: 0, total: 0 }),
    loadavg: () => [0.5, 0.4, 0.3],
    memory: async () => ({ totalBytes: 64 * GiB, availableBytes: 32 * GiB }),
    disk: async () => ({ measured: "/var/lib/llmsup", totalBytes: 100 * GiB, freeBytes: free }),
  };
  const monitor = new HostMonitor({
    config: { interval: 30_000, min_free_memory: 2 * GiB, min_free_disk: 5 * GiB },
    dirs: ["/var/lib/llmsup", "/var/lib/llmsup"],
    reader,
    clock,
  });
  t.after(() => monitor.stop());
  const raised: HostFault[] = [];
  const cleared: HostFault[] = [];
  monitor.on("fault.raised", (f) => raised.push(f));
  monitor.on("fault.cleared", (f) => cleared.push(f));
  await monitor.start();
  assert.equal(monitor.snapshot().reading?.disks.length, 1, "the same directory is measured once");
  free = 1 * GiB;
  for (let i = 0; i < 4; i++) {
    clock.advance(30_000);
    await flush();
  }
  assert.deepEqual(raised.map((f) => f.id), ["disk_low@/var/lib/llmsup"]);
  assert.deepEqual(monitor.snapshot().faults.map((f) => f.id), ["disk_low@/var/lib/llmsup"]);
  free = 80 * GiB;
  for (let i = 0; i < 2; i++) {
    clock.advance(30_000);
    await flush();
  }
  assert.deepEqual(cleared.map((f) => f.id), ["disk_low@/var/lib/llmsup"]);
  monitor.stop();
  assert.equal(clock.pendingTimers, 0, "stop leaves no timer behind");
});
