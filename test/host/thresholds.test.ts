/** Host resources as facts with thresholds: raise once, clear once, no flapping at the limit. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { evaluateHost, initialHostState, type HostClearedFault, type HostFault, type HostState } from "../../src/host/thresholds.ts";
import type { HostReading } from "../../src/host/resources.ts";

const GiB = 1024 ** 3;
const LIMITS = { minFreeMemory: 2 * GiB, minFreeDisk: 5 * GiB };

function reading(memAvail: number, diskFree: Record<string, number>): HostReading {
  return {
    at: 0,
    cpu: { cores: 8, load1: 1, load5: 1, load15: 1 },
    memory: { totalBytes: 64 * GiB, availableBytes: memAvail },
    disks: Object.entries(diskFree).map(([dir, free]) => ({ dir, measured: dir, totalBytes: 100 * GiB, freeBytes: free })),
    errors: [],
  };
}

class Host {
  state: HostState = initialHostState();
  now = 0;
  raised: HostFault[] = [];
  cleared: HostClearedFault[] = [];
  feed(r: HostReading) {
    this.now += 30_000;
    const out = evaluateHost(this.state, r, this.now, LIMITS);
    this.state = out.state;
    this.raised.push(...out.raised);
    this.cleared.push(...out.cleared);
  }
}

test("a disk nearly full is a fault after two readings, one fact while it lasts, cleared with headroom", () => {
  const h = new Host();
  h.feed(reading(10 * GiB, { "/var/lib/llmsup": 4 * GiB, "/var/log/llmsup": 50 * GiB }));
  assert.equal(h.raised.length, 0, "one reading is a blip");
  h.feed(reading(10 * GiB, { "/var/lib/llmsup": 3 * GiB, "/var/log/llmsup": 50 * GiB }));
  assert.deepEqual(h.raised.map((f) => [f.id, f.kind, f.dir, f.since]), [["disk_low@/var/lib/llmsup", "disk_low", "/var/lib/llmsup", 30_000]]);
  assert.match(h.raised[0]!.reason, /^3\.0GiB free on the disk holding \/var\/lib\/llmsup, under the 5\.0GiB minimum$/);
  for (let i = 0; i < 5; i++) h.feed(reading(10 * GiB, { "/var/lib/llmsup": 1 * GiB, "/var/log/llmsup": 50 * GiB }));
  assert.equal(h.raised.length, 1);

  // Hovering just above the limit (inside the 10 % margin) neither clears nor raises again.
  for (let i = 0; i < 4; i++) h.feed(reading(10 * GiB, { "/var/lib/llmsup": 5.2 * GiB, "/var/log/llmsup": 50 * GiB }));
  assert.deepEqual([h.raised.length, h.cleared.length], [1, 0]);
  h.feed(reading(10 * GiB, { "/var/lib/llmsup": 20 * GiB, "/var/log/llmsup": 50 * GiB }));
  assert.equal(h.cleared.length, 0);
  h.feed(reading(10 * GiB, { "/var/lib/llmsup": 20 * GiB, "/var/log/llmsup": 50 * GiB }));
  assert.deepEqual(h.cleared.map((f) => f.id), ["disk_low@/var/lib/llmsup"]);
});

test("low memory for the CPU tier is a fault; a reading without memory says nothing", () => {
  const h = new Host();
  h.feed(reading(1 * GiB, {}));
  h.feed({ ...reading(0, {}), memory: undefined });
  h.feed(reading(1 * GiB, {}));
  assert.deepEqual(h.raised.map((f) => f.id), ["memory_low"]);
  assert.match(h.raised[0]!.action, /CPU tier/);
  h.feed(reading(30 * GiB, {}));
  h.feed(reading(30 * GiB, {}));
  assert.deepEqual(h.cleared.map((f) => f.id), ["memory_low"]);
});
