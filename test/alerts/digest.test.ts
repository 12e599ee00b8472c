import { test } from "node:test";
import assert from "node:assert/strict";
import { Alerter } from "../../src/alerts/alerter.ts";
import { drainsOf, renderDigest, withDrains, type DigestDrain, type DigestInput, type TimeOnTier } from "../../src/alerts/digest.ts";
import { timeOnTier } from "../../src/daemon/alert-bridge.ts";
import type { AlertEvent } from "../../src/alerts/events.ts";
import { digestJob } from "../../src/schedule/jobs.ts";
import { memoryLogger, testConfig } from "../helpers/supervise.ts";
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

// ---------------------------------------------------------------------------- drains

test("drains from the history: who and when, a drain from before the period, one still on, one whose drain entry is gone; none of another period", () => {
  const h = (at: number, kind: string, backend: string, summary: string) => ({ at, kind, backend, summary });
  const history = [
    h(FROM - 2 * H, "drain", "gpu1", "gpu1 drained by bob: no new requests until `llmsup undrain gpu1`"),
    h(FROM + 2 * H, "drain", "primary", "primary drained by alice: no new requests until `llmsup undrain primary`"),
    h(FROM + 1 * H, "undrain", "gpu1", "gpu1 undrained by bob after 10800s: back in rotation"),
    h(FROM + 5 * H, "undrain", "primary", "primary undrained by alice after 10800s: back in rotation"),
    h(FROM + 7 * H, "undrain", "old", "old undrained by carol after 3600s: back in rotation"),
    h(FROM + 20 * H, "drain", "primary", "primary drained by uid 1000: no new requests until `llmsup undrain primary`"),
    h(FROM - 5 * H, "drain", "gone", "gone drained by dan: no new requests until `llmsup undrain gone`"),
    h(FROM - 4 * H, "undrain", "gone", "gone undrained by dan after 3600s: back in rotation"),
    h(FROM + 3 * H, "failover", "primary", "llama: now served by tier 1"),
  ];
  assert.deepEqual(drainsOf(history, FROM, TO), [
    { backend: "gpu1", by: "bob", since: FROM - 2 * H, until: FROM + 1 * H },
    { backend: "primary", by: "alice", since: FROM + 2 * H, until: FROM + 5 * H },
    { backend: "old", by: "an operator", since: FROM + 6 * H, until: FROM + 7 * H },
    { backend: "primary", by: "uid 1000", since: FROM + 20 * H },
  ]);
});

/** Time on tier from a timeline of the route's tier by the alerts (what alert-bridge's timeOnTier gives), over any stretch. */
function baseOf(route: string, backends: readonly string[], timeline: readonly [number, number][]): (from: number, to: number) => TimeOnTier[] {
  return (from, to) => {
    const ms = new Map<number, number>();
    timeline.forEach(([at, tier], i) => {
      const end = timeline[i + 1]?.[0] ?? Infinity;
      const overlap = Math.min(end, to) - Math.max(at, from);
      if (overlap > 0) ms.set(tier, (ms.get(tier) ?? 0) + overlap);
    });
    return [{ route, tiers: backends.map((backend, index) => ({ index, backend, ms: ms.get(index) ?? 0 })), downMs: ms.get(-1) ?? 0 }];
  };
}

test("time on tier with drains: a drained tier's time goes to the next tier that is not drained, as drained time; overlapping drains skip both; an outage stays an outage", () => {
  // By the alerts: tier 0 all day, but for a real outage on tier 1 from 8 h to 9 h.
  const base = baseOf("llama", ["primary", "fallback", "cpu"], [[FROM - H, 0], [FROM + 8 * H, 1], [FROM + 9 * H, 0]]);
  const drains: DigestDrain[] = [
    { backend: "primary", by: "alice", since: FROM + 2 * H, until: FROM + 5 * H },
    { backend: "fallback", by: "bob", since: FROM + 4 * H, until: FROM + 6 * H },
  ];
  assert.deepEqual(withDrains(base, drains, FROM, TO), [
    {
      route: "llama",
      tiers: [
        { index: 0, backend: "primary", ms: 20 * H },
        { index: 1, backend: "fallback", ms: 1 * H },
        { index: 2, backend: "cpu", ms: 0 },
      ],
      downMs: 0,
      drained: [
        { backend: "primary", index: 1, ms: 2 * H },
        { backend: "primary", index: 2, ms: 1 * H },
      ],
    },
  ]);
  assert.deepEqual(withDrains(base, [], FROM, TO), base(FROM, TO), "no drain: the time on tier as the alerts give it");
  const still = withDrains(base, [{ backend: "primary", by: "alice", since: FROM - 3 * H }], FROM, TO)[0]!;
  assert.deepEqual(still.drained, [{ backend: "primary", index: 1, ms: 23 * H }], "drained all day, from before the period; the outage hour is not the drain's");
});

test("the digest of a day with a drain: listed with who and how long, the route's time off the drained primary shown as drained and not as tier 0, the undrain's return no recovery; through alert-bridge's time on tier", (t) => {
  const config = testConfig(tempDir(t), `[[backend]]\nname = "primary"\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\n[[backend]]\nname = "fallback"\nkind = "ollama"\nurl = "http://127.0.0.1:11434"\n[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`);
  const history = [
    { at: FROM + 2 * H, kind: "drain", backend: "primary", summary: "primary drained by alice: no new requests until `llmsup undrain primary`" },
    { at: FROM + 5 * H, kind: "undrain", backend: "primary", summary: "primary undrained by alice after 10800s: back in rotation" },
  ];
  const to1 = { index: 1, backend: "fallback" };
  const events: AlertEvent[] = [
    // The drain's move gives no alert; its end gives a recovery (the route back on tier 0 after recovery_hold).
    { kind: "recovery", at: FROM + 5 * H + 1_000, route: "llama", tier: { index: 0, backend: "primary" } },
    // A real outage later: a failover and its recovery.
    { kind: "failover", at: FROM + 8 * H, route: "llama", from: { index: 0, backend: "primary" }, to: to1, reasonClass: "connect", error: "refused" },
    { kind: "recovery", at: FROM + 9 * H, route: "llama", tier: { index: 0, backend: "primary" } },
  ];
  const drains = drainsOf(history, FROM, TO);
  const tot = withDrains((a, b) => timeOnTier(config, events, a, b), drains, FROM, TO);
  assert.deepEqual(tot[0]!.drained, [{ backend: "primary", index: 1, ms: 3 * H }]);
  assert.equal(tot[0]!.tiers[0]!.ms, 20 * H, "tier 0: the day less the drain and the outage");
  const r = renderDigest({ host: "gpu-box-1", from: FROM, to: TO, events, timeOnTier: tot, drains, timeZone: "UTC" });
  assert.equal(r.subject, "[llmsup] gpu-box-1: daily digest, 1 failover, 1 drain");
  assert.match(r.text, /Summary:\n {2}1 failover on 1 route, 1 recovery\n/, "the undrain's return to tier 0 is no recovery");
  assert.match(r.text, /\n {2}1 drain \(maintenance\): primary\n/);
  assert.match(r.text, /Time on tier, llama:\n {2}tier 0 \(primary\): 20h, 83\.3%\n {2}tier 1 \(fallback\): 1h, 4\.2%\n {2}tier 1 \(fallback\) while primary drained: 3h, 12\.5%\n/);
  assert.match(r.text, /Drains:\n {2}10:00:00 primary drained by alice, undrained 13:00:00 \(3h\)\n/);
  for (const line of r.text.split("\n")) assert.ok(line.length <= 72, `short line: ${line}`);

  // Still drained at the end of the day: said in the summary and the list, the route's time since on the fallback.
  const open = drainsOf(history.slice(0, 1), FROM, TO);
  const r2 = renderDigest({ host: "gpu-box-1", from: FROM, to: TO, events: [], timeOnTier: withDrains((a, b) => timeOnTier(config, [], a, b), open, FROM, TO), drains: open, timeZone: "UTC" });
  assert.equal(r2.subject, "[llmsup] gpu-box-1: daily digest, 1 drain");
  assert.match(r2.text, /\n {2}1 drain \(maintenance\): primary; still drained: primary\n/);
  assert.match(r2.text, /tier 0 \(primary\): 2h, 8\.3%\n {2}tier 1 \(fallback\): 0ms, 0\.0%\n {2}tier 1 \(fallback\) while primary drained: 22h, 91\.7%\n/);
  assert.match(r2.text, /Drains:\n {2}10:00:00 primary drained by alice, still drained \(22h\)\n/);
});
