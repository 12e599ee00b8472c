import { test } from "node:test";
import assert from "node:assert/strict";
import { Alerter } from "../../src/alerts/alerter.ts";
import { renderDigest, type DigestInput } from "../../src/alerts/digest.ts";
import type { AlertEvent } from "../../src/alerts/events.ts";
import { digestJob } from "../../src/schedule/jobs.ts";
import { memoryLogger } from "../helpers/supervise.ts";
import { tempDir } from "../helpers/tmp.ts";
import { everyKind, failover, MIN, recovery } from "./fixtures.ts";
import { alertsConfig, ManualClock, realDelivery, SMTP_ENV, startSmtp } from "./helpers.ts";

const H = 3_600_000;
const TO = Date.UTC(2025, 5, 2, 8, 0, 0);
const FROM = TO - 24 * H;

function day(): DigestInput {
  const kinds = everyKind(FROM + 3 * H);
  const events: AlertEvent[] = [
    failover(FROM + 1 * H),
    recovery(FROM + 1 * H + 7 * MIN),
    failover(FROM + 5 * H, "qwen-7b", 2),
    recovery(FROM + 5 * H + 2 * MIN, "qwen-7b"),
    ...kinds.filter((e) => e.kind === "gpu_fault" || e.kind === "gpu_fault_cleared" || e.kind === "backend_fatal" || e.kind === "disk_low"),
    failover(FROM - H), // the day before: not counted
  ];
  return {
    host: "gpu-box-1",
    from: FROM,
    to: TO,
    timeZone: "UTC",
    events,
    restarts: [
      { backend: "vllm-gpu0", at: FROM + 2 * H, exitClass: "oom", reason: "CUDA out of memory" },
      { backend: "vllm-gpu0", at: FROM + 2 * H + 5 * MIN, exitClass: "oom" },
      { backend: "ollama", at: FROM + 9 * H, exitClass: "killed" },
    ],
    timeOnTier: [{ route: "llama-3.1-8b", tiers: [{ index: 0, backend: "vllm-gpu0", ms: 23 * H + 40 * MIN }, { index: 1, backend: "gpu2", ms: 19 * MIN }], downMs: MIN }],
    delivery: { delivered: 9, pending: 0 },
  };
}

test("the digest renders a day: counts in the subject, time on tier, and the failovers, restarts and GPU faults", () => {
  const r = renderDigest(day());
  assert.equal(r.subject, "[llmsup] gpu-box-1: daily digest, 2 failovers, 3 restarts, 1 GPU fault, 1 FATAL");
  const text = r.text;
  assert.match(text, /^Last 1d on gpu-box-1: 2025-06-01 08:00:00 UTC to 2025-06-02 08:00:00\nUTC\.\n/);
  assert.match(text, /Summary:\n {2}2 failovers on 2 routes, 2 recoveries\n {2}3 backend restarts \(vllm-gpu0 2, ollama 1\)\n {2}1 backend gave up \(FATAL\): vllm-gpu0\n {2}1 GPU fault raised, 1 cleared\n/);
  assert.match(text, /Time on tier, llama-3\.1-8b:\n {2}tier 0 \(vllm-gpu0\): 23h40m, 98\.6%\n {2}tier 1 \(gpu2\): 19m, 1\.3%\n {2}no tier: 1m, 0\.1%\n/);
  assert.match(text, /Failovers:\n {2}09:00:00 llama-3\.1-8b: tier 0 -> 1 \(gpu2\), connect\n {2}13:00:00 qwen-7b: tier 0 -> 2 \(ollama\), connect\n/);
  assert.match(text, /Restarts:\n {2}10:00:00 vllm-gpu0: oom, CUDA out of memory\n {2}10:05:00 vllm-gpu0: oom\n {2}17:00:00 ollama: killed\n/);
  assert.match(text, /GPU faults:\n {2}11:00:00 GPU 0: thermal, tiers DOWN\n {2}11:00:00 GPU 0: thermal cleared\n/);
  assert.match(text, /Other alerts:\n {2}11:00:00 vllm-gpu0 FATAL: restart budget spent\n {2}11:00:00 disk nearly full: \/var\/lib\/llmsup \(1\.5GiB free\)\n/);
  assert.match(text, /Alert mail:\n {2}9 delivered, 0 waiting in the outbox\n/);
  for (const line of text.split("\n")) assert.ok(line.length <= 72, `short line: ${line}`);
});

test("a quiet day says so, and long lists are cut with a count", () => {
  const quiet = renderDigest({ host: "gpu-box-1", from: FROM, to: TO, events: [], timeZone: "UTC" });
  assert.equal(quiet.subject, "[llmsup] gpu-box-1: daily digest, all quiet");
  assert.match(quiet.text, /0 failovers, 0 recoveries\n {2}0 backend restarts\n {2}0 GPU faults raised, 0 cleared\n/);
  const busy = renderDigest({ host: "h", from: FROM, to: TO, events: Array.from({ length: 25 }, (_, i) => failover(FROM + i * MIN)), timeZone: "UTC" });
  assert.match(busy.text, /\n {2}and 5 more\n/);
});

test("the digest job collects the last day and mails it through the alerter", async (t) => {
  const smtp = await startSmtp(t);
  const clock = new ManualClock(TO);
  const alerter = await Alerter.open({ config: alertsConfig(smtp.port), hostname: "gpu-box-1", stateDir: tempDir(t), logger: memoryLogger().logger, clock, env: SMTP_ENV, ...realDelivery, timeZone: "UTC" });
  t.after(() => alerter.close());
  let asked: { from: number; to: number } | undefined;
  const job = digestJob({
    clock,
    alerter,
    collect: (period) => {
      asked = period;
      const { from: _f, to: _t, ...rest } = day();
      return rest;
    },
  });
  await job({ name: "digest", startedAt: TO, signal: new AbortController().signal });
  assert.deepEqual(asked, { from: FROM, to: TO });
  const [m] = await smtp.waitFor(1);
  assert.equal(m!.subject, "[llmsup] gpu-box-1: daily digest, 2 failovers, 3 restarts, 1 GPU fault, 1 FATAL");
  assert.equal(m!.headers.get("x-llmsup-alert"), "digest");
  assert.deepEqual(m!.to, ["oncall@example.com"]);
});
