/**
 * Drills against a real daemon on simulated backends, with a real SMTP server
 * for the alert. The daemon runs in the test's process so the test can follow
 * its events; the drill itself goes through the CLI and the control socket as
 * an operator's would.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { DaemonEvent } from "../../src/daemon/daemon.ts";
import type { DrillReport } from "../../src/drills/report.ts";
import type { StateEvent } from "../../src/supervisor/states.ts";
import { drillDaemon } from "./helpers.ts";

const ROUTE = `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m", ttft_timeout = "600ms" }, { backend = "fallback", model = "m" }]\n`;

/** The failover-transition time the report must agree with, to the millisecond it reads the clock in. */
const TRANSITION_TOLERANCE_MS = 50;

/** Both backends with the default probe interval; tier 0 times out its first token at 600 ms (hedged as the defaults say). */
const setup = (t: { after(fn: () => unknown): void }, schedule = "") => drillDaemon(t, { route: ROUTE, schedule, probes: false });

function routeTransitions(events: readonly DaemonEvent[], from: number) {
  return events.filter((e) => (e.event === "router.route.fallback" || e.event === "router.route.down" || e.event === "router.route.recovered") && e.route === "llama" && e.at >= from);
}

for (const scenario of ["primary-outage", "backend-crash", "backend-hang"] as const) {
  test(`drill ${scenario}: detected, failed over without client errors, recovered, alert delivered; times are the route's transitions; the restart budget is untouched`, async (t) => {
    const { daemon, events, cli, smtp } = await setup(t);
    const mailsBefore = smtp.mails.length;
    const budgetBefore = daemon.supervisor.owner("primary").snapshot().budget;
    const persistedBefore = daemon.supervisor.owner("primary").persisted().failures;
    const r = await cli("drill", scenario, "--duration", "1500ms", "--json");
    const report = JSON.parse(r.stdout) as DrillReport;
    assert.equal(r.code, 0, `${r.stderr}\n${JSON.stringify(report, null, 1)}`);
    assert.equal(report.verdict, "pass");
    assert.equal(report.client_errors, 0);
    assert.ok(report.requests >= 5);
    assert.ok(report.fallback_answers > 0, "some answers came from the fallback");
    assert.ok(report.detection_ms !== null && report.detection_ms < 5_000, `detection ${report.detection_ms}`);

    // failover_ms is the route's transition off tier 0, as the event stream saw it.
    const injectedAt = Date.parse(report.injected_at);
    const transitions = routeTransitions(events, injectedAt);
    const failover = transitions.find((e) => e.event !== "router.route.recovered");
    assert.ok(failover, `a failover transition after the injection; saw ${JSON.stringify(transitions)}`);
    assert.ok(report.failover_ms !== null);
    assert.ok(Math.abs(report.failover_ms - (failover.at - injectedAt)) <= TRANSITION_TOLERANCE_MS, `report ${report.failover_ms}ms, transition at +${failover.at - injectedAt}ms`);
    assert.ok(report.detection_ms <= report.failover_ms, "noticed no later than the route moved");
    const recovered = transitions.find((e) => e.event === "router.route.recovered" && e.at >= failover.at);
    assert.ok(recovered, "the route's recovered transition came before the drill ended");
    assert.ok(report.recovery_ms !== null && report.recovery_ms >= 0);
    assert.deepEqual(report.alert, { raised: true, delivered: true });

    // The drill's own damage costs no budget, now or after a daemon restart.
    const exits = events.filter((e): e is StateEvent => e.event === "backend.state" && e.backend === "primary" && e.to === "exited" && e.at >= injectedAt);
    if (scenario === "backend-crash") assert.equal(exits.length, 1, "the kill was seen");
    for (const x of exits) {
      assert.equal(x.exit?.class, "drill");
      assert.match(x.reason, new RegExp(`^caused by drill ${report.id} \\(${scenario}\\)`));
    }
    assert.deepEqual(daemon.supervisor.owner("primary").snapshot().budget, budgetBefore);
    assert.deepEqual(daemon.supervisor.owner("primary").persisted().failures, persistedBefore);

    const human = await cli("status");
    assert.match(human.stdout, new RegExp(`drill ${scenario} on llama: pass`));

    // One rehearsed outage is one failover mail and one recovery mail, nothing else about the route.
    const until = Date.now() + 10_000;
    const drillMails = () => smtp.mails.slice(mailsBefore).map((m) => m.subject);
    while (!drillMails().some((m) => /recovered/.test(m)) && Date.now() < until) await new Promise((res) => setTimeout(res, 100));
    await new Promise((res) => setTimeout(res, 500));
    const subjects = drillMails();
    assert.equal(subjects.filter((m) => /llama failed over/.test(m)).length, 1, subjects.join("\n"));
    assert.equal(subjects.filter((m) => /llama recovered/.test(m)).length, 1, subjects.join("\n"));
    assert.equal(subjects.filter((m) => /llama/.test(m)).length, 2, subjects.join("\n"));
  });
}

test("a drill is refused while the route is not on its first tier; unknown scenarios are usage errors", async (t) => {
  const { cli } = await setup(t);
  const stop = await cli("stop", "primary");
  assert.equal(stop.code, 0);
  const r = await cli("drill", "primary-outage", "--duration", "1s");
  assert.equal(r.code, 69);
  assert.match(r.stderr, /LLMSUP_E_DRILL_REFUSED: llama is not on its first tier/);
  const u = await cli("drill", "meteor-strike");
  assert.equal(u.code, 64);
});

test("a scheduled drill runs by itself and mails its report", async (t) => {
  const { smtp } = await setup(t, `[schedule]\ndrill = "*/4 * * * * *"\ndrill_scenario = "primary-outage"\ndrill_duration = "1s"\n`);
  const deadline = Date.now() + 30_000;
  while (!smtp.mails.some((m) => /drill primary-outage (passed|FAILED)/.test(m.subject)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  const mail = smtp.mails.find((m) => /drill primary-outage/.test(m.subject));
  assert.ok(mail, smtp.mails.map((m) => m.subject).join("\n"));
  assert.match(mail.subject, /passed/, mail.text);
  assert.match(mail.text, /detection/);
  assert.match(mail.text, /client errors +0/);
});
