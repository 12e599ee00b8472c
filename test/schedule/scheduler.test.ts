import { test } from "node:test";
import assert from "node:assert/strict";
import cron from "node-cron";
import { housekeepingJob } from "../../src/schedule/jobs.ts";
import { nodeCronTicks, Scheduler, type TickSource } from "../../src/schedule/scheduler.ts";
import { ManualClock } from "../helpers/clock.ts";
import { memoryLogger } from "../helpers/supervise.ts";

/** Ticks the test fires by hand. */
class ManualTicks implements TickSource {
  readonly schedules = new Map<string, { expression: string; onTick: () => void; stopped: boolean }>();
  schedule(expression: string, name: string, onTick: () => void) {
    const s = { expression, onTick, stopped: false };
    this.schedules.set(name, s);
    return { stop: () => (s.stopped = true) };
  }
  tick(name: string): void {
    const s = this.schedules.get(name)!;
    if (!s.stopped) s.onTick();
  }
}

function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

const settle = () => new Promise((r) => setImmediate(r));

/** Time stands still for the jobs' figures; stop()'s wait for running jobs is on real timers. */
const clock = () => new ManualClock(undefined, { realTimers: true });

test("a job never overlaps itself: a tick during a run is skipped and logged", async () => {
  const ticks = new ManualTicks();
  const { logger, lines } = memoryLogger();
  const s = new Scheduler({ logger, ticks, clock: clock() });
  let started = 0;
  let g = gate();
  s.add({ name: "digest", cron: "0 8 * * *", run: () => (started++, g.wait) });
  assert.equal(ticks.schedules.get("digest")!.expression, "0 8 * * *");
  ticks.tick("digest");
  await settle();
  ticks.tick("digest");
  ticks.tick("digest");
  await settle();
  assert.equal(started, 1);
  assert.deepEqual(s.status()[0], { name: "digest", cron: "0 8 * * *", running: true, runs: 0, failures: 0, skipped: 2, lastStartedAt: s.status()[0]!.lastStartedAt });
  const skipped = lines().filter((l) => l.event === "schedule.job.skipped");
  assert.equal(skipped.length, 2);
  assert.equal(skipped[0]!.job, "digest");
  g.open();
  await settle();
  g = gate();
  g.open();
  ticks.tick("digest");
  await settle();
  assert.equal(started, 2, "runs again once the previous run ended");
  assert.equal(s.status()[0]!.runs, 2);
  await s.stop();
});

test("a failing run (thrown at once or rejected later) is logged with its event name and the job stays scheduled", async () => {
  const ticks = new ManualTicks();
  const { logger, lines } = memoryLogger();
  const s = new Scheduler({ logger, ticks, clock: clock() });
  let n = 0;
  s.add({
    name: "housekeeping",
    cron: "*/10 * * * *",
    run: () => {
      n++;
      if (n === 1) throw new Error("disk on fire");
      if (n === 2) return Promise.reject(new Error("still on fire"));
      return undefined;
    },
  });
  for (let i = 0; i < 3; i++) {
    ticks.tick("housekeeping");
    await settle();
    await settle();
  }
  assert.equal(n, 3);
  const failed = lines().filter((l) => l.event === "schedule.job.failed");
  assert.deepEqual(failed.map((l) => [l.job, l.err, l.level]), [["housekeeping", "disk on fire", "error"], ["housekeeping", "still on fire", "error"]]);
  const st = s.status()[0]!;
  assert.deepEqual([st.runs, st.failures, st.running, st.lastError], [3, 2, false, undefined]);
  assert.equal(lines().filter((l) => l.event === "schedule.job.finished").length, 1);
  await s.stop();
});

test('"" switches a job off; a bad expression or a duplicate name is refused', async () => {
  const ticks = new ManualTicks();
  const { logger, lines } = memoryLogger();
  const s = new Scheduler({ logger, ticks, clock: clock() });
  assert.equal(s.add({ name: "drill", cron: "", run: () => assert.fail("never") }), false);
  assert.equal(ticks.schedules.size, 0);
  assert.equal(lines().find((l) => l.event === "schedule.job.off")?.job, "drill");
  assert.throws(() => s.add({ name: "digest", cron: "every morning", run: () => undefined }), { code: "LLMSUP_E_CONFIG_INVALID" });
  s.add({ name: "digest", cron: "0 8 * * *", run: () => undefined });
  assert.throws(() => s.add({ name: "digest", cron: "0 9 * * *", run: () => undefined }), /already scheduled/);
  await s.stop();
});

test("stop ends the schedules, aborts a run in progress and waits for it (bounded)", async () => {
  const ticks = new ManualTicks();
  const { logger } = memoryLogger();
  const s = new Scheduler({ logger, ticks, clock: clock() });
  let aborted = false;
  let runs = 0;
  s.add({
    name: "digest",
    cron: "0 8 * * *",
    run: ({ signal }) =>
      new Promise<void>((resolve) => {
        runs++;
        signal.addEventListener("abort", () => {
          aborted = true;
          setTimeout(resolve, 20);
        });
      }),
  });
  ticks.tick("digest");
  await settle();
  const started = performance.now();
  await s.stop(2_000);
  assert.ok(aborted);
  assert.ok(performance.now() - started < 1_000);
  assert.equal(s.status()[0]!.running, false);
  assert.equal(ticks.schedules.get("digest")!.stopped, true);
  assert.equal(await s.runNow("digest"), "skipped");
  assert.equal(runs, 1);
});

test("with node-cron: a seconds schedule runs, skips a tick while busy, and is removed on stop", async () => {
  const { logger, lines } = memoryLogger();
  const s = new Scheduler({ logger, ticks: nodeCronTicks(logger), clock: clock() });
  const g = gate();
  let runs = 0;
  s.add({ name: "llmsup-test-every-second", cron: "* * * * * *", run: () => (runs++, g.wait) });
  const deadline = Date.now() + 3_500;
  while (!lines().some((l) => l.event === "schedule.job.skipped") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(runs, 1);
  assert.ok(s.status()[0]!.skipped >= 1, "a tick came while the run was going");
  g.open();
  await s.stop(1_000);
  assert.ok(![...cron.getTasks().values()].some((t) => t.name === "llmsup-test-every-second"), "node-cron forgot the task");
});

test("housekeeping retries the outbox, runs every pruning hook, and fails naming the hooks that failed", async () => {
  const ticks = new ManualTicks();
  const { logger, lines } = memoryLogger();
  const s = new Scheduler({ logger, ticks, clock: clock() });
  let retried = 0;
  const ran: string[] = [];
  s.add({
    name: "housekeeping",
    cron: "*/10 * * * *",
    run: housekeepingJob({
      logger,
      alerter: { retryNow: () => void retried++ },
      prune: [
        { name: "backend-logs", run: () => void ran.push("backend-logs") },
        {
          name: "history",
          run: () => {
            ran.push("history");
            throw new Error("EACCES");
          },
        },
        { name: "cache", run: async () => void ran.push("cache") },
      ],
    }),
  });
  assert.equal(await s.runNow("housekeeping"), "failed");
  assert.equal(retried, 1);
  assert.deepEqual(ran, ["backend-logs", "history", "cache"]);
  assert.equal(lines().find((l) => l.event === "schedule.housekeeping.hook_failed")?.hook, "history");
  assert.match(String(lines().find((l) => l.event === "schedule.job.failed")?.err), /1 of 3 steps failed \(history: EACCES\)/);
  await s.stop();
});
