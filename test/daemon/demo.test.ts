/** `llmsup demo`: the README's "run it" command answers a request through the socket. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { request } from "node:http";
import path from "node:path";
import { CLI_ENTRY, REPO_ROOT, runCliInProcess } from "../helpers/cli.ts";
import { groupMembers } from "../../src/platform/procfs.ts";
import { tempDir } from "../helpers/tmp.ts";

test("llmsup demo runs the whole product on simulators and answers through the socket", async (t) => {
  const dir = tempDir(t);
  const child = spawn(process.execPath, [CLI_ENTRY, "demo", "--dir", dir, "--port", "0"], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"], detached: true });
  t.after(async () => {
    // Stop it as Ctrl-C would, so its simulated backends go too; then make sure.
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid!, "SIGINT");
      await Promise.race([new Promise((r) => child.once("exit", r)), new Promise((r) => setTimeout(r, 15_000).unref())]);
    }
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      /* gone */
    }
  });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr!.resume();
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const config = path.join(dir, "supervisor.toml");
  const deadline = Date.now() + 30_000;
  for (;;) {
    const s = await runCliInProcess(["status", "--json", "--config", config]);
    if (s.code === 0) break;
    if (Date.now() > deadline) assert.fail(`demo never reached OK:\n${s.stdout.slice(0, 3000)}\n${out}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.match(out, /curl -s --unix-socket .*api\.sock http:\/\/llmsup\/v1\/chat\/completions/);
  assert.match(out, /_sim\/fault -d '\{"crash":\{"signal":"SIGKILL"\}\}'/);
  assert.match(out, new RegExp(`export LLMSUP_CONFIG=${config}`), "the demo says how other terminals find it");
  assert.match(out, /llmsup status --watch/);
  assert.match(out, /undo: .*_sim\/fault/, "a failure comes with its undo");
  const answer = await new Promise<{ status: number; tier: string; body: string }>((resolve, reject) => {
    const req = request({ socketPath: path.join(dir, "api.sock"), path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json" } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, tier: String(res.headers["x-llmsup-tier"]), body }));
    });
    req.on("error", reject);
    req.end(JSON.stringify({ model: "llama-3.1-8b", messages: [{ role: "user", content: "Hello!" }] }));
  });
  assert.equal(answer.status, 200);
  assert.equal(answer.tier, "0");
  assert.equal((JSON.parse(answer.body) as { model: string }).model, "meta-llama/Llama-3.1-8B-Instruct");
  process.kill(child.pid!, "SIGINT");
  assert.equal(await exited, 0);
  assert.deepEqual(await groupMembers(child.pid!), [], "no simulated backend is left behind");
});
