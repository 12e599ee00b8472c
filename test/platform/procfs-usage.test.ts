/** Per-group CPU and memory from /proc: the parsers, the CPU% arithmetic, the sampler, and one pass over a fake /proc. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpuPercent, groupUsage, parseProcCpu, parseVmRss, type GroupUsage } from "../../src/platform/procfs.ts";
import { ResourceSampler } from "../../src/supervisor/resources.ts";
import { ManualClock } from "../helpers/clock.ts";
import { tempDir } from "../helpers/tmp.ts";

/** A stat line: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime … */
function statLine(pid: number, comm: string, o: { state?: string; pgrp: number; utime: number; stime: number; cutime?: number; cstime?: number }): string {
  const after = [o.state ?? "S", 1, o.pgrp, o.pgrp, 0, -1, 4194560, 100, 0, 0, 0, o.utime, o.stime, o.cutime ?? 0, o.cstime ?? 0, 20, 0, 3, 0, 123456, 1_000_000, 2500];
  return `${pid} (${comm}) ${after.join(" ")} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n`;
}

test("parseProcCpu: utime+stime+cutime+cstime and the group, with a command name holding spaces and parentheses", () => {
  const s = parseProcCpu(statLine(4242, "VLLM::Worker (TP0) ) x", { pgrp: 4200, utime: 1500, stime: 250, cutime: 7, cstime: 3 }));
  assert.deepEqual(s, { pid: 4242, pgrp: 4200, state: "S", ticks: 1760 });
  assert.equal(parseProcCpu("4242 (x) S 1 4200")?.ticks, undefined, "truncated line");
  assert.equal(parseProcCpu("garbage"), undefined);
});

test("parseVmRss: kB to bytes; absent for a kernel thread", () => {
  assert.equal(parseVmRss("Name:\tpython3\nVmPeak:\t  9999 kB\nVmRSS:\t  123456 kB\nRssAnon:\t 1 kB\n"), 123456 * 1024);
  assert.equal(parseVmRss("Name:\tkthreadd\nState:\tS (sleeping)\n"), undefined);
});

test("cpuPercent: percent of one core over the interval; null without elapsed time; a drop reads 0", () => {
  assert.equal(cpuPercent({ ticks: 1000, at: 0 }, { ticks: 1250, at: 5000 }), 50); // 2.5 s of CPU in 5 s
  assert.equal(cpuPercent({ ticks: 0, at: 0 }, { ticks: 1000, at: 5000 }), 200); // two cores busy
  assert.equal(cpuPercent({ ticks: 10, at: 0 }, { ticks: 11, at: 3000 }), 0.3);
  assert.equal(cpuPercent({ ticks: 10, at: 5 }, { ticks: 20, at: 5 }), null);
  assert.equal(cpuPercent({ ticks: 10, at: 6 }, { ticks: 20, at: 5 }), null);
  assert.equal(cpuPercent({ ticks: 900, at: 0 }, { ticks: 100, at: 1000 }), 0);
  assert.equal(cpuPercent({ ticks: 0, at: 0 }, { ticks: 1000, at: 5000 }, 250), 80);
});

test("groupUsage: one pass sums every live member of each wanted group; zombies and other groups do not count", async (t) => {
  const proc = tempDir(t);
  const add = (pid: number, comm: string, o: Parameters<typeof statLine>[2], rssKb?: number) => {
    mkdirSync(`${proc}/${pid}`);
    writeFileSync(`${proc}/${pid}/stat`, statLine(pid, comm, o));
    writeFileSync(`${proc}/${pid}/status`, `Name:\t${comm}\n${rssKb === undefined ? "" : `VmRSS:\t${rssKb} kB\n`}`);
  };
  add(100, "vllm serve", { pgrp: 100, utime: 100, stime: 20 }, 1000);
  add(101, "VLLM::EngineCore", { pgrp: 100, utime: 500, stime: 30 }, 4000);
  add(102, "defunct", { pgrp: 100, state: "Z", utime: 9, stime: 9 });
  add(200, "llama-server", { pgrp: 200, utime: 5, stime: 5 }, 64);
  add(300, "bash", { pgrp: 300, utime: 1, stime: 1 }, 8);
  mkdirSync(`${proc}/self`);
  writeFileSync(`${proc}/uptime`, "1 1\n");
  const u = await groupUsage([100, 200, 999], proc);
  assert.deepEqual(u.get(100), { ticks: 650, rssBytes: 5000 * 1024, processes: 2 });
  assert.deepEqual(u.get(200), { ticks: 10, rssBytes: 64 * 1024, processes: 1 });
  assert.equal(u.has(300), false);
  assert.equal(u.has(999), false);
  assert.equal((await groupUsage([], proc)).size, 0);
  assert.equal((await groupUsage([1], `${proc}/nowhere`)).size, 0);
});

test("ResourceSampler: CPU% from the second sample on; groups gone or no longer asked for are forgotten", async () => {
  const clock = new ManualClock(10_000);
  let reads = 0;
  const table = new Map<number, GroupUsage>();
  const sampler = new ResourceSampler({ clock, read: async (p) => (reads++, new Map([...table].filter(([k]) => p.includes(k)))) });
  table.set(100, { ticks: 1000, rssBytes: 5e9, processes: 3 });
  table.set(200, { ticks: 10, rssBytes: 1e6, processes: 1 });
  await sampler.sample([100, 200]);
  assert.deepEqual(sampler.of(100), { cpuPct: null, rssBytes: 5e9, processes: 3, at: 10_000 });
  clock.advance(5000);
  table.set(100, { ticks: 1500, rssBytes: 6e9, processes: 4 });
  await sampler.sample([100, 200]);
  assert.deepEqual(sampler.of(100), { cpuPct: 100, rssBytes: 6e9, processes: 4, at: 15_000 });
  assert.equal(sampler.of(200)?.cpuPct, 0);
  // 200 stopped being a backend's group; 100's group vanished.
  table.delete(100);
  await sampler.sample([100]);
  assert.equal(sampler.of(100), undefined);
  assert.equal(sampler.of(200), undefined);
  assert.equal(sampler.of(undefined), undefined);
  // Concurrent calls share one pass.
  const before = reads;
  await Promise.all([sampler.sample([100]), sampler.sample([100])]);
  assert.equal(reads, before + 1);
  await sampler.sample([]);
  assert.equal(reads, before + 1, "nothing to sample: no pass over /proc");
});
