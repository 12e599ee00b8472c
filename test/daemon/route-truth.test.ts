/** What the daemon tells about its routes is what happened: nothing at boot or in a quiet run, one fallback and one recovery for one outage, whatever requests are in flight. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Agent } from "undici";
import { startDaemon, status, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";
import { SMTP_PASSWORD, SMTP_USER, startSmtp } from "../alerts/helpers.ts";

test("requests in flight from boot through one SIGKILL of the primary: no route event or mail at boot or while quiet, then exactly one fallback and one recovery (events and mails)", async (t) => {
  const smtp = await startSmtp(t);
  const files = await writeDaemonConfig(
    t,
    [
      { name: "primary", kind: "llamacpp", args: ["--load-time", "1500ms"], process: `  restart_sec = "1s"\n  restart_max_delay = "1s"` },
      { name: "fallback", kind: "llamacpp" },
    ],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`,
    `[alerts]\nenabled = true\nfrom = "llmsup@box.example.com"\nto = ["oncall@example.com"]\ncoalesce_window = "10m"\n[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "TEST_SMTP_PASSWORD"\ntimeout = "3s"\n`,
  );
  const d = await startDaemon(t, files, { TEST_SMTP_PASSWORD: SMTP_PASSWORD });
  const agent = new Agent({ connect: { socketPath: files.socket }, connections: 8 });
  t.after(() => agent.close());
  // A steady stream of requests, from before the router listens until the end.
  const answers: { status: number; tier: string | null }[] = [];
  let pumping = true;
  const pump = (async () => {
    while (pumping) {
      const r = await agent
        .request({ origin: "http://llmsup", path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "llama", messages: [{ role: "user", content: "hi" }], max_tokens: 4 }) })
        .then(async (res) => ({ status: res.statusCode, tier: (await res.body.text(), (res.headers["x-llmsup-tier"] as string | undefined) ?? null) }))
        .catch(() => undefined);
      if (r) answers.push(r);
      await new Promise((res) => setTimeout(res, 50));
    }
  })();
  t.after(async () => {
    pumping = false;
    await pump;
  });
  const ok = await waitStatus(d, "both ready, on tier 0", (s) => s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0, 20_000);
  const readyAt = answers.length;
  await new Promise((r) => setTimeout(r, 3_000));
  const quiet = await status(d);
  const routeKinds = (s: typeof quiet.json) => s.events.filter((e) => ["failover", "recovery", "all_down"].includes(e.kind)).map((e) => e.kind);
  assert.deepEqual(routeKinds(quiet.json), [], "boot and a quiet run are no failover");
  assert.deepEqual(smtp.mails.map((m) => m.subject).filter((s) => !/started/.test(s)), [], "no mail but the start");
  assert.ok(answers.length > readyAt + 10, "requests were flowing");

  const inFlightBefore = answers.length;
  process.kill(ok.json.backends.find((b) => b.name === "primary")!.pid!, "SIGKILL");
  await waitStatus(d, "back on the primary", (s) => s.backends.find((b) => b.name === "primary")!.generation === 2 && s.router.routes[0]!.serving_tier === 0, 20_000);
  await new Promise((r) => setTimeout(r, 2_500));
  const after = await status(d);
  assert.deepEqual(routeKinds(after.json), ["failover", "recovery"], after.json.events.map((e) => `${e.kind}: ${e.summary}`).join("\n"));
  await smtp.waitFor(3, 10_000);
  const subjects = smtp.mails.map((m) => m.subject);
  assert.equal(subjects.filter((s) => /failed over/.test(s)).length, 1, subjects.join("\n"));
  assert.equal(subjects.filter((s) => /recovered|back on/.test(s)).length, 1, subjects.join("\n"));
  assert.ok(answers.length > inFlightBefore + 10, "requests kept flowing through the outage");
  assert.deepEqual(answers.slice(readyAt).filter((a) => a.status !== 200), [], "once a tier was up, no client saw an error");
});
