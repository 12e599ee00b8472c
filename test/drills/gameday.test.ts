/**
 * A game day end to end: a real daemon on simulated backends, alerts to a
 * real SMTP server, the game day started through the CLI. The scorecard's
 * JSON, the HTML page (written and kept in state_dir), the one mail, the
 * history entry; the game day's own requests stay out of the emergency
 * cache; and the scheduled game day runs by itself.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Scorecard } from "../../src/drills/scorecard.ts";
import { drillDaemon } from "./helpers.ts";
import { requestPump } from "../helpers/daemon.ts";
import { Agent } from "undici";

const CACHED_ROUTE = `[[route]]\nmodel = "llama"\ncache = true\ntiers = [{ backend = "primary", model = "m", ttft_timeout = "600ms", hedge_after = "off" }, { backend = "fallback", model = "m" }]\n`;
const SCENARIOS = ["errors", "stream-cut", "block", "backend-crash"] as const;

test("a game day runs its scenarios in turn and scores each from the daemon's own events; JSON, HTML, state_dir, one mail", { timeout: 240_000 }, async (t) => {
  const { cli, smtp, files } = await drillDaemon(t, { route: CACHED_ROUTE });
  const mailsBefore = smtp.mails.length;
  const html = path.join(files.dir, "scorecard.html");
  const r = await cli("drill", "gameday", "--route", "llama", "--scenarios", SCENARIOS.join(","), "--duration", "1s", "--json", "--html", html);
  const card = JSON.parse(r.stdout) as Scorecard & { files?: { json: string; html: string } };
  assert.equal(r.code, 0, `${r.stderr}\n${JSON.stringify(card, (k, v: unknown) => (k === "report" ? undefined : v), 1)}`);
  assert.equal(card.route, "llama");
  assert.equal(card.verdict, "pass");
  assert.equal(card.traffic, true);
  assert.deepEqual(card.summary, { passed: 4, failed: 0, refused: 0, errors: 0, skipped: 0 });
  assert.deepEqual(card.scenarios.map((s) => s.scenario), [...SCENARIOS]);
  let previousEnd = 0;
  for (const s of card.scenarios) {
    const what = `${s.scenario}: ${JSON.stringify({ ...s, report: undefined })}`;
    assert.equal(s.outcome, "pass", what);
    assert.ok(s.detected && s.failed_over && s.back_on_primary, what);
    assert.ok(s.detected.ms >= 0 && s.detected.ms <= s.failed_over.ms && s.failed_over.ms <= s.back_on_primary.ms, what);
    // Each moment is the injection plus its milliseconds, on the wall clock.
    assert.equal(Date.parse(s.failed_over.at), Date.parse(s.injected_at!) + s.failed_over.ms, what);
    assert.equal(s.client_errors, 0, what);
    assert.ok(s.answers_degraded > 0, what);
    assert.ok(s.requests >= 2, what);
    assert.equal(s.alert.raised, true, what);
    assert.equal(s.alert.delivered, true, what);
    assert.ok(s.alert.when && s.alert.when.ms >= s.failed_over.ms, what);
    // One after another: a scenario starts once the one before it is back on the primary.
    assert.ok(Date.parse(s.injected_at!) > previousEnd, what);
    previousEnd = Date.parse(s.back_on_primary.at);
  }
  assert.equal(card.scenarios.find((s) => s.scenario === "backend-crash")!.faults_injected, undefined);
  assert.ok(card.scenarios.find((s) => s.scenario === "errors")!.faults_injected! > 0);

  // Kept in state_dir, and the --html page written: self-contained.
  assert.ok(card.files && card.files.json.startsWith(path.join(files.dir, "state", "gamedays")));
  assert.deepEqual(JSON.parse(readFileSync(card.files.json, "utf8")), JSON.parse(JSON.stringify({ ...card, files: undefined })));
  for (const page of [html, card.files.html]) {
    assert.ok(existsSync(page), page);
    const text = readFileSync(page, "utf8");
    assert.match(text, /^<!doctype html>/);
    for (const s of SCENARIOS) assert.match(text, new RegExp(`<td>${s}</td><td>PASS</td>`));
    assert.doesNotMatch(text, /<script|<link|src=|href=|url\(/, "no external asset");
  }

  // One mail for the game day, through the alerts pipeline, with the text scorecard.
  const deadline = Date.now() + 10_000;
  const gamedayMails = () => smtp.mails.slice(mailsBefore).filter((m) => /game day/.test(m.subject));
  while (gamedayMails().length === 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
  await new Promise((res) => setTimeout(res, 300));
  assert.equal(gamedayMails().length, 1, smtp.mails.map((m) => m.subject).join("\n"));
  const mail = gamedayMails()[0]!;
  assert.match(mail.subject, /game day on llama passed/);
  assert.match(mail.text, /scenario +result +detected +failed over +client errors +degraded +alert delivered +back on primary/);
  for (const s of SCENARIOS) assert.match(mail.text, new RegExp(`^${s} +PASS`, "m"));

  // One history entry; none of the game day's requests went into the emergency cache.
  const events = await cli("events", "--kind", "drill", "--json");
  assert.match(events.stdout, /game day on llama: pass \(4 passed, 0 failed, 0 refused of 4\)/);
  const status = await cli("status", "--json");
  const cache = (JSON.parse(status.stdout) as { cache: { entries: number } | null }).cache;
  assert.ok(cache, "the route caches");
  assert.equal(cache.entries, 0, "the game day's requests are not stored");
  // While a client's own answer is.
  const agent = new Agent({ connect: { socketPath: files.socket } });
  const plain = await agent.request({ origin: "http://llmsup", path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "llama", messages: [{ role: "user", content: "a client's question" }], max_tokens: 4 }) });
  assert.equal(plain.statusCode, 200);
  await plain.body.text();
  await agent.close();
  const stored = Date.now() + 5_000;
  const entries = async () => (JSON.parse((await cli("status", "--json")).stdout) as { cache: { entries: number } }).cache.entries;
  while ((await entries()) === 0 && Date.now() < stored) await new Promise((res) => setTimeout(res, 100));
  assert.equal(await entries(), 1);
});

test("a game day refuses what cannot run and says why; a bad scenario name is a usage error", { timeout: 120_000 }, async (t) => {
  const { cli, daemon } = await drillDaemon(t);
  const stop = await cli("stop", "fallback");
  assert.equal(stop.code, 0);
  const until = Date.now() + 10_000;
  while (Date.now() < until && daemon.status().router.routes[0]!.tiers[1]!.available) await new Promise((res) => setTimeout(res, 100));
  const r = await cli("drill", "gameday", "--scenarios", "errors,quality", "--duration", "500ms", "--no-traffic", "--json");
  const card = JSON.parse(r.stdout) as Scorecard;
  assert.equal(r.code, 1, r.stderr);
  assert.equal(card.traffic, false);
  assert.deepEqual(card.scenarios.map((s) => s.outcome), ["refused", "refused"]);
  assert.match(card.scenarios[0]!.reason!, /no fallback tier of llama can take requests right now/);
  const bad = await cli("drill", "gameday", "--scenarios", "errors,meteor");
  assert.equal(bad.code, 64);
  assert.match(bad.stderr, /unknown: meteor/);
});

test("a scheduled game day runs by itself and mails its scorecard", { timeout: 120_000 }, async (t) => {
  const { smtp } = await drillDaemon(t, { schedule: `[schedule]\ngameday = "*/3 * * * * *"\ngameday_route = "llama"\ngameday_scenarios = ["errors"]\ngameday_duration = "1s"\n` });
  const deadline = Date.now() + 60_000;
  while (!smtp.mails.some((m) => /game day on llama/.test(m.subject)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  const mail = smtp.mails.find((m) => /game day on llama/.test(m.subject));
  assert.ok(mail, smtp.mails.map((m) => m.subject).join("\n"));
  assert.match(mail.subject, /passed/, mail.text);
  assert.match(mail.text, /^errors +PASS/m);
});

test("with --no-traffic the game day sends nothing of its own and scores the real traffic from the router's counters", { timeout: 120_000 }, async (t) => {
  const { cli, files } = await drillDaemon(t);
  const clients = requestPump(t, files.socket, "llama", 100);
  const r = await cli("drill", "gameday", "--scenarios", "errors", "--duration", "1500ms", "--no-traffic", "--json");
  const card = JSON.parse(r.stdout) as Scorecard;
  assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
  const [s] = card.scenarios;
  assert.equal(s!.requests, 0, "no request of its own");
  assert.equal(s!.report!.router!.unanswered, 0);
  assert.equal(s!.client_errors, 0);
  assert.equal(s!.answers_degraded, s!.report!.router!.fallback_answers);
  assert.ok(s!.answers_degraded > 0, "the clients' answers came from the fallback meanwhile");
  assert.ok(s!.failed_over && s!.back_on_primary);
  assert.ok(clients.answers.length > 0 && clients.answers.every((a) => a.status === 200), "the clients saw no error");
});

test("`llmsup drill stop` ends a game day: the failure in force is lifted, the scenarios left are skipped, the scorecard says so", { timeout: 120_000 }, async (t) => {
  const { cli, log } = await drillDaemon(t);
  const running = cli("drill", "gameday", "--scenarios", "errors,block", "--duration", "10m", "--json");
  const until = Date.now() + 30_000;
  while (!log().some((l) => l.event === "drill.fault.started") && Date.now() < until) await new Promise((res) => setTimeout(res, 50));
  await new Promise((res) => setTimeout(res, 700));
  const stop = await cli("drill", "stop", "--json");
  assert.deepEqual(JSON.parse(stop.stdout), { stopped: true, what: "game day" });
  const r = await running;
  const card = JSON.parse(r.stdout) as Scorecard;
  assert.equal(r.code, 1, "a stopped game day is no pass");
  assert.equal(card.stopped, true);
  assert.equal(card.scenarios[0]!.report!.stopped, true);
  assert.ok(card.scenarios[0]!.report!.ended_ms! < 10_000);
  assert.equal(card.scenarios[1]!.outcome, "skipped");
  assert.equal(log().filter((l) => l.event === "drill.fault.started").length, 1, "block never started");
});
