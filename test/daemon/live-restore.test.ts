/**
 * Live restore: the inference servers outlive a SIGKILL or a restart of
 * llmsup, and the next llmsup adopts them (same pids, no model reload, the
 * same log files); a backend started from another configuration is
 * replaced; a port held by a process that is not ours is never "ready".
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { isAlive, signalGroup } from "../../src/platform/procfs.ts";
import { requestPump, startDaemon, waitStatus, writeDaemonConfig, type DaemonFiles, type RunningDaemon, type StatusJson } from "../helpers/daemon.ts";
import { waitUntil } from "../helpers/wait.ts";

const ROUTE = `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`;

const pidOf = (s: StatusJson, name: string) => s.backends.find((b) => b.name === name)!.pid!;
const allReady = (s: StatusJson) => s.backends.every((b) => b.state === "ready");

/** Backends survive their daemon here: whatever a test leaves running is stopped at its end. */
function reapBackends(t: { after(fn: () => void): void }, pids: () => readonly number[]): void {
  t.after(() => {
    for (const p of pids()) signalGroup(p, "SIGKILL");
  });
}

/** A daemon with a primary and a fallback, both ready; `pids` (reaped at the end) holds their pids, then any a test adds. */
async function twoBackendsServing(t: { after(fn: () => void | Promise<void>): void }): Promise<{ files: DaemonFiles; pids: number[]; first: RunningDaemon }> {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp" }, { name: "fallback", kind: "llamacpp" }], ROUTE);
  const pids: number[] = [];
  reapBackends(t, () => pids);
  const first = await startDaemon(t, files);
  const s1 = (await waitStatus(first, "both ready", allReady)).json;
  pids.push(pidOf(s1, "primary"), pidOf(s1, "fallback"));
  // Status is in memory; a SIGKILL must come once the state file, which a later llmsup adopts from, says both had loaded.
  await waitUntil("state.json records both processes as ready", () => {
    try {
      const saved = JSON.parse(readFileSync(`${files.dir}/state/state.json`, "utf8")) as { backends?: Record<string, { process?: { readyAt?: number } }> };
      return ["primary", "fallback"].every((b) => saved.backends?.[b]?.process?.readyAt !== undefined);
    } catch {
      return false;
    }
  });
  return { files, pids, first };
}

async function sigkill(d: RunningDaemon): Promise<void> {
  process.kill(d.pid, "SIGKILL");
  await d.exited;
}

test("SIGKILL of llmsup under steady load, then a new llmsup: the same backend pids serve (adopted, no spawn), their logs go on in the same files, and only requests in flight at the kill fail", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp" }, { name: "fallback", kind: "llamacpp" }], ROUTE);
  const first = await startDaemon(t, files);
  const before = (await waitStatus(first, "both ready", allReady)).json;
  const pids = { primary: pidOf(before, "primary"), fallback: pidOf(before, "fallback") };
  reapBackends(t, () => Object.values(pids));
  const pump = requestPump(t, files.socket, "llama", 20);
  await waitUntil("requests flowing", () => pump.answers.filter((a) => a.status === 200).length >= 20, { timeoutMs: 10_000 });

  await sigkill(first);
  const killedAt = pump.answers.length;
  assert.ok(await isAlive(pids.primary), "the primary outlived its daemon");
  assert.ok(await isAlive(pids.fallback), "so did the fallback");

  const second = await startDaemon(t, files);
  const listeningAt = pump.answers.length;
  const after = (await waitStatus(second, "both adopted and ready", (s) => allReady(s) && s.router.routes[0]!.serving_tier === 0)).json;
  assert.equal(pidOf(after, "primary"), pids.primary, "the same process serves");
  assert.equal(pidOf(after, "fallback"), pids.fallback);
  for (const b of after.backends) {
    const full = b as StatusJson["backends"][number] & { adopted: boolean; generation: number };
    assert.equal(full.adopted, true, `${b.name} adopted`);
    assert.equal(full.generation, 1, `${b.name}: no new generation (no spawn)`);
  }
  const ok = pump.answers.length;
  await waitUntil("requests answered through the new daemon", () => pump.answers.slice(ok).filter((a) => a.status === 200).length >= 20, { timeoutMs: 10_000 });
  const failedAfter = pump.answers.slice(listeningAt).filter((a) => a.status !== 200);
  assert.deepEqual(failedAfter, [], "once the new daemon listens, every request is answered");
  const failedBefore = pump.answers.slice(0, killedAt).filter((a) => a.status !== 200);
  assert.deepEqual(failedBefore, [], "nothing failed before the kill");

  const log = readFileSync(`${files.dir}/log/primary.log`, "utf8");
  assert.equal(log.match(/generation \d+ started/g)?.length, 1, "one spawn in the primary's whole log");
  assert.match(log, /generation 1, pid \d+, adopted: left running by an earlier llmsup/);
  const events = JSON.parse((await second.cli("events", "--json")).stdout) as { events: { kind: string; summary: string; backend?: string }[] };
  assert.ok(!events.events.some((e) => e.kind === "exit"), `no backend exit in the history: ${events.events.map((e) => e.summary).join(" | ")}`);
  const said = events.events.map((e) => e.summary).join("\n");
  assert.match(said, /the previous llmsup \(pid \d+\) ended without a clean stop \(killed or crashed\)/, "the history says the daemon died");
  assert.match(said, new RegExp(`adopted primary \\(pid ${pids.primary}, running since .*\\), fallback \\(pid ${pids.fallback}, .*no model reload`), "and what it adopted");
});

test("SIGUSR2 (systemd's RestartKillSignal) leaves the backends for the next llmsup; SIGTERM stops them; with live_restore = false a restart stops them too", async (t) => {
  const { files, pids, first } = await twoBackendsServing(t);
  process.kill(first.pid, "SIGUSR2");
  assert.deepEqual(await first.exited, { code: 0, signal: null });
  assert.ok(await isAlive(pids[0]!), "a restart leaves the primary running");

  const second = await startDaemon(t, files);
  const s2 = (await waitStatus(second, "adopted", allReady)).json;
  assert.deepEqual([pidOf(s2, "primary"), pidOf(s2, "fallback")], pids, "the next llmsup adopts both");
  process.kill(second.pid, "SIGTERM");
  assert.deepEqual(await second.exited, { code: 0, signal: null });
  for (const p of pids) assert.equal(await isAlive(p), false, `a stop stops pid ${p}`);

  writeFileSync(files.config, readFileSync(files.config, "utf8").replace("[daemon]\n", "[daemon]\nlive_restore = false\n"));
  const third = await startDaemon(t, files);
  const s3 = (await waitStatus(third, "started afresh", allReady)).json;
  const fresh = [pidOf(s3, "primary"), pidOf(s3, "fallback")];
  pids.push(...fresh);
  process.kill(third.pid, "SIGUSR2");
  await third.exited;
  for (const p of fresh) assert.equal(await isAlive(p), false, "without live_restore a restart stops the backends");
});

test("a backend whose command changed while llmsup was down is replaced; the other is adopted", async (t) => {
  const { files, pids, first } = await twoBackendsServing(t);
  await sigkill(first);

  const text = readFileSync(files.config, "utf8");
  const changed = text.replace(`"--port","${files.ports.fallback}","--load-time","0s"`, `"--port","${files.ports.fallback}","--load-time","0s","--token-rate","900"`);
  assert.notEqual(changed, text);
  writeFileSync(files.config, changed);

  const second = await startDaemon(t, files);
  const s2 = (await waitStatus(second, "both ready", (s) => allReady(s) && pidOf(s, "fallback") !== pids[1])).json;
  pids.push(pidOf(s2, "fallback"));
  assert.equal(pidOf(s2, "primary"), pids[0], "the unchanged primary is adopted");
  await waitUntil("the old fallback to be stopped", async () => !(await isAlive(pids[1]!)), { timeoutMs: 10_000 });
  assert.match(readFileSync(`${files.dir}/log/fallback.log`, "utf8"), /started from another configuration: stopped/);
});

test("a port held by a process that is not ours: the backend is blocked, naming the holder, never ready; it starts once the port is free", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp" }, { name: "fallback", kind: "llamacpp" }], ROUTE);
  // Something else answers on the primary's port (as an orphan of an earlier server would).
  const squatter = createServer((c) => c.end("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
  await new Promise<void>((r) => squatter.listen(files.ports.primary, "127.0.0.1", r));
  t.after(() => new Promise<void>((r) => squatter.close(() => r())));

  const d = await startDaemon(t, files);
  const blocked = (await waitStatus(d, "primary blocked", (s) => s.backends.find((b) => b.name === "primary")!.state === "blocked")).json;
  const primary = blocked.backends.find((b) => b.name === "primary")! as StatusJson["backends"][number] & { state_reason: string };
  assert.match(primary.state_reason, new RegExp(`port ${files.ports.primary} is held by pid ${process.pid} \\(`), "the holder is named");
  assert.equal(primary.pid, null, "nothing was spawned into a taken port");
  await waitStatus(d, "the fallback serves", (s) => s.router.routes[0]!.serving_tier === 1);

  await new Promise<void>((r) => squatter.close(() => r()));
  const ready = (await waitStatus(d, "primary started once the port is free", (s) => s.backends.find((b) => b.name === "primary")!.state === "ready", 20_000)).json;
  assert.ok(pidOf(ready, "primary") > 0);
});

test("with live_restore = false, what a SIGKILLed llmsup left running is stopped by the next one and started afresh (never left holding the port)", async (t) => {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp" }, { name: "fallback", kind: "llamacpp" }], ROUTE);
  writeFileSync(files.config, readFileSync(files.config, "utf8").replace("[daemon]\n", "[daemon]\nlive_restore = false\n"));
  const pids: number[] = [];
  reapBackends(t, () => pids);
  const first = await startDaemon(t, files);
  const s1 = (await waitStatus(first, "both ready", allReady)).json;
  const old = [pidOf(s1, "primary"), pidOf(s1, "fallback")];
  pids.push(...old);
  await sigkill(first);
  assert.ok(await isAlive(old[0]!), "a SIGKILLed llmsup cannot stop anything");

  const second = await startDaemon(t, files);
  const s2 = (await waitStatus(second, "started afresh", (s) => allReady(s) && !old.includes(pidOf(s, "primary")) && !old.includes(pidOf(s, "fallback")))).json;
  pids.push(pidOf(s2, "primary"), pidOf(s2, "fallback"));
  for (const p of old) assert.equal(await isAlive(p), false, `the orphan ${p} was stopped`);
  assert.match(readFileSync(`${files.dir}/log/primary.log`, "utf8"), /left running by an earlier llmsup and live_restore is off: stopped/);
});

test("a backend that hung while llmsup was down is adopted, gets three health intervals to answer, then is restarted", async (t) => {
  const { files, pids, first } = await twoBackendsServing(t);
  await sigkill(first);
  process.kill(pids[0]!, "SIGSTOP");
  t.after(() => void signalGroup(pids[0]!, "SIGCONT"));
  const second = await startDaemon(t, files);
  const back = (await waitStatus(second, "the hung primary replaced", (s) => allReady(s) && pidOf(s, "primary") !== pids[0], 20_000)).json;
  pids.push(pidOf(back, "primary"));
  assert.equal(pidOf(back, "fallback"), pids[1], "the healthy fallback stays adopted");
  const exits = JSON.parse((await second.cli("events", "--json", "--backend", "primary", "--kind", "exit")).stdout) as { events: { summary: string }[] };
  assert.match(exits.events.map((e) => e.summary).join("\n"), /adopted, and not ready .* later/);
});
