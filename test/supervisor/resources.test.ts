/** CPU and memory of a backend's whole process group, sampled from /proc, against real simulators. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { groupMembers } from "../../src/platform/procfs.ts";
import { buildStatus } from "../../src/daemon/status.ts";
import { renderStatus } from "../../src/cli/status-view.ts";
import { style } from "../../src/cli/output.ts";
import { validateConfigText } from "../../src/config/load.ts";
import { ResourceSampler } from "../../src/supervisor/resources.ts";
import { Supervisor } from "../../src/supervisor/supervisor.ts";
import { ManualClock } from "../helpers/clock.ts";
import { FakeSpawner, ScriptedProber } from "../helpers/fake-process.ts";
import { memoryLogger, superviseOne, testConfig } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";

test("a ready llama-server sim: its group's memory and one process; CPU% once sampled twice; nothing once stopped", async (t) => {
  const { sup, events } = await superviseOne(t, { kind: "llamacpp", simArgs: ["--load-time", "0s"] });
  await sup.start("b");
  await events.state("b", "ready");
  const before = sup.snapshot()[0]!;
  assert.equal(before.resources, undefined, "no sample yet");
  await sup.sampleResources();
  const first = sup.snapshot()[0]!.resources!;
  assert.ok(first.rssBytes > 10 * 1024 * 1024, `a node process holds more than 10 MiB: ${first.rssBytes}`);
  assert.equal(first.processes, 1);
  assert.equal(first.cpuPct, null, "one sample is no rate");
  await new Promise((r) => setTimeout(r, 300));
  await sup.sampleResources();
  const second = sup.snapshot()[0]!.resources!;
  assert.equal(typeof second.cpuPct, "number");
  assert.ok(second.cpuPct! >= 0 && second.cpuPct! < 1600, String(second.cpuPct));
  await sup.stop("b");
  await sup.sampleResources();
  assert.equal(sup.snapshot()[0]!.resources, undefined);
});

test("a vLLM sim: the EngineCore child counts in its API server's group; status JSON and the Backends table show it", async (t) => {
  const { sup, events, port } = await superviseOne(t, { kind: "vllm", simArgs: ["--load-time", "0s", "--model", "m"] });
  await sup.start("b");
  await events.state("b", "ready");
  const pid = sup.snapshot()[0]!.pid!;
  await sup.sampleResources();
  await new Promise((r) => setTimeout(r, 200));
  await sup.sampleResources();
  const r = sup.snapshot()[0]!.resources!;
  const members = await groupMembers(pid);
  assert.ok(r.processes >= 2, `API server + EngineCore: ${r.processes} (${members.map((m) => m.comm).join(", ")})`);
  assert.equal(r.processes, members.length);
  assert.ok(r.rssBytes > 20 * 1024 * 1024, String(r.rssBytes));

  // Status as the daemon builds it (the parts that matter here), and its human form.
  const parsed = validateConfigText(`[[backend]]\nname = "b"\nkind = "vllm"\nurl = "http://127.0.0.1:${port}"\n\n[[route]]\nmodel = "m"\ntiers = [{ backend = "b", model = "m" }]\n`, { hostname: "test-box" });
  assert.ok(parsed.ok);
  const config = parsed.config;
  const status = buildStatus({
    now: Date.now(),
    startedAt: Date.now() - 1000,
    config,
    routes: [],
    served: { minute: { total: 0, fallback: 0 }, fiveMinutes: { total: 0, fallback: 0 } },
    backends: sup.snapshot(),
    health: () => ({ state: "healthy", reason: "ok" }) as never,
    listening: {},
    history: [],
  });
  const b = status.backends[0]!;
  assert.equal(b.rss_bytes, r.rssBytes);
  assert.equal(b.processes, r.processes);
  assert.equal(b.cpu_pct, r.cpuPct);
  assert.equal(typeof b.cpu_pct, "number");
  const text = renderStatus(status, style(false));
  assert.match(text, /NAME\s+KIND\s+STATE\s+FOR\s+HEALTH\s+PID\s+CPU\s+MEM\s+RESTARTS/);
  assert.match(text, new RegExp(`${pid}\\s+\\d+(\\.\\d)?%\\s+\\d+\\.\\d[KMG]iB \\(${r.processes} procs\\)`));
});

test("resourceSampleMs samples on the injected clock, every interval, until stopAll", async (t) => {
  class CountingSampler extends ResourceSampler {
    calls = 0;
    override sample(pgids: readonly number[]): Promise<void> {
      this.calls++;
      return super.sample(pgids);
    }
  }
  const config = testConfig(tempDir(t), `[[backend]]\nname = "b"\nkind = "vllm"\nurl = "http://127.0.0.1:9"\n  [backend.process]\n  command = ["/opt/fake/vllm"]\n[[route]]\nmodel = "m"\ntiers = [{ backend = "b", model = "m" }]\n`);
  const clock = new ManualClock();
  const resources = new CountingSampler({ clock, read: async () => new Map() });
  const sup = new Supervisor(config, {
    logger: memoryLogger().logger,
    clock,
    spawn: new FakeSpawner().spawn,
    prober: () => new ScriptedProber(),
    portHolder: async () => ({ state: "nobody" }),
    hostMemoryPressure: async () => false,
    resources,
    resourceSampleMs: 5_000,
  });
  clock.advance(4_999);
  assert.equal(resources.calls, 0, "not before the first interval");
  clock.advance(1);
  assert.equal(resources.calls, 1);
  clock.advance(10_000);
  assert.equal(resources.calls, 3);
  await sup.stopAll();
  assert.equal(clock.pendingTimers, 0, "stopAll leaves no sampling timer");
  clock.advance(60_000);
  assert.equal(resources.calls, 3);
});
