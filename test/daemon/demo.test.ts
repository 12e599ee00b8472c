/**
 * `llmsup demo`: the README's "run it" command answers a request through the socket, shows events as human lines
 * (the daemon's JSON log goes to a file) and catches the alert mails in its own folder.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { request } from "node:http";
import path from "node:path";
import { CLI_ENTRY, REPO_ROOT, runCliInProcess } from "../helpers/cli.ts";
import { groupMembers } from "../../src/platform/procfs.ts";
import { mailSubject, startMailCatcher } from "../../src/cli/mail-catcher.ts";
import { demoInstructions, writeDemo } from "../../src/cli/demo.ts";
import { tempDir } from "../helpers/tmp.ts";

/** `2026-12-01 23:10:35Z  kind       summary`: what `llmsup events` prints. */
const EVENT_LINE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ {2}\S+ +\S/;

test("llmsup demo runs the whole product on simulators, shows events as lines and catches the alert mails", async (t) => {
  const dir = tempDir(t);
  const child = spawn(process.execPath, [CLI_ENTRY, "demo", "--dir", dir, "--port", "0"], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"], detached: true, env: { ...process.env, NO_COLOR: "1" } });
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
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const config = path.join(dir, "supervisor.toml");
  const waitFor = async <T>(what: string, ms: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await probe();
      if (v !== undefined) return v;
      if (Date.now() > deadline) assert.fail(`${what} within ${ms}ms; the demo printed:\n${out}\n${err}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  const status = await waitFor("the demo reaches OK", 30_000, async () => {
    const s = await runCliInProcess(["status", "--json", "--config", config]);
    return s.code === 0 ? (JSON.parse(s.stdout) as { backends: { name: string; pid?: number }[] }) : undefined;
  });
  assert.match(out, /curl -s --unix-socket .*api\.sock http:\/\/llmsup\/v1\/chat\/completions/);
  assert.match(out, /_sim\/fault -d '\{"crash":\{"signal":"SIGKILL"\}\}'/);
  assert.match(out, new RegExp(`export LLMSUP_CONFIG=${config}`), "the demo says how other terminals find it");
  assert.match(out, /llmsup status --watch/);
  assert.match(out, /undo: .*_sim\/fault/, "a failure comes with its undo");
  assert.ok(out.includes(`mails: caught locally, saved in ${path.join(dir, "mail")}/`), "the demo says where the mails go");
  const logFile = path.join(dir, "log", "llmsup.jsonl");
  assert.ok(out.includes(`the daemon's JSON log is in ${logFile}`), "the demo says where its JSON log is");

  // Events as human lines, good news included; the JSON goes to the log file, not the terminal.
  await waitFor("a line saying the primary is ready", 5_000, () => (/^\S+ \S+Z {2}ready +vllm-gpu0: .*→ ready/m.test(out) ? true : undefined));
  const lines = out.split("\n");
  assert.deepEqual(lines.filter((l) => l.trimStart().startsWith("{")), [], "no JSON on the terminal");
  assert.ok(lines.some((l) => EVENT_LINE.test(l) && /daemon +llmsup \S+ with 3 backends/.test(l)), "the daemon's start, as `llmsup events` shows it");
  const log = (await readFile(logFile, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { event?: string });
  assert.ok(log.some((l) => l.event === "daemon.started"), "the JSON log is in the file");

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

  // Kill the primary from outside: the failover mail arrives, is named on the terminal and saved with its subject.
  const pid = status.backends.find((b) => b.name === "vllm-gpu0")?.pid;
  assert.ok(pid, "status names the primary's pid");
  process.kill(pid, "SIGKILL");
  const mail = await waitFor("a mail about the failover", 20_000, () => {
    const m = /^\S+ \S+Z {2}mail +(\[llmsup\] .*(?:failed over|vllm-gpu0).*?) {2}→ (\S+\.eml)$/m.exec(out);
    return m ? { subject: m[1]!, file: m[2]! } : undefined;
  });
  assert.equal(path.dirname(mail.file), path.join(dir, "mail"));
  assert.ok((await readdir(path.join(dir, "mail"))).includes(path.basename(mail.file)));
  const raw = await readFile(mail.file);
  assert.equal(mailSubject(raw), mail.subject, "the terminal names the saved mail's Subject");
  assert.ok(raw.toString("latin1").split("\r\n").includes(`Subject: ${mail.subject}`), "saved as it came, headers and all");
  assert.match(out, /^\S+ \S+Z {2}failover +llama-3\.1-8b: now served by tier 1 \(ollama\)/m, "the failover as an event line");

  process.kill(child.pid!, "SIGINT");
  assert.equal(await exited, 0);
  assert.match(out, /llmsup demo stopped: \d+ mails caught, in .*\/mail\//, "a last word says where things are");
  assert.deepEqual(await groupMembers(child.pid!), [], "no simulated backend is left behind");
});

test("without the smtp-server package the demo runs with mails off, and says so in one line", async (t) => {
  const dir = tempDir(t);
  const missing = Object.assign(new Error("Cannot find package 'smtp-server'"), { code: "ERR_MODULE_NOT_FOUND" });
  const catcher = await startMailCatcher(path.join(dir, "mail"), () => undefined, () => Promise.reject(missing));
  assert.ok("off" in catcher);
  const files = await writeDemo({ dir, port: 0 });
  assert.doesNotMatch(await readFile(files.config, "utf8"), /\[alerts\]/, "no alerts without a catcher");
  const said = demoInstructions(files, catcher.off).split("\n").filter((l) => l.startsWith("mails:"));
  assert.deepEqual(said, ["mails: off: the smtp-server package is not installed (`npm install smtp-server` turns them on); the demo runs without alerts"]);
  assert.doesNotMatch(demoInstructions(files), /test-alert/);
});

test("the catcher decodes a folded, encoded Subject", () => {
  const raw = Buffer.from("From: a@b\r\nSubject: =?UTF-8?Q?=5Bllmsup=5D_gpu0:_vllm_=E2=86=92?=\r\n =?UTF-8?B?IGZhdGFs?=\r\n\r\nbody\r\n", "latin1");
  assert.equal(mailSubject(raw), "[llmsup] gpu0: vllm → fatal");
});
