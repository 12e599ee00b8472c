/** The ChildHandle contract of spawnChild, against real processes. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, writeFileSync } from "node:fs";
import path from "node:path";
import { spawnChild } from "../../src/gpu/spawn.ts";
import { REPO_ROOT } from "../helpers/cli.ts";
import { tempDir } from "../helpers/tmp.ts";

test("stdout and stderr arrive as text through one listener; the exit status comes with the end", async () => {
  const child = spawnChild("sh", ["-c", "echo out; echo err >&2; exit 3"]);
  let output = "";
  child.onOutput((chunk) => (output += chunk));
  assert.equal(typeof child.pid, "number");
  assert.deepEqual(await child.exited, { code: 3, signal: null });
  assert.deepEqual(output.split("\n").filter(Boolean).sort(), ["err", "out"]);
});

test("stdin is closed: a program that reads it sees its end at once", async () => {
  const child = spawnChild("sh", ["-c", "cat; echo done"]);
  let output = "";
  child.onOutput((chunk) => (output += chunk));
  assert.deepEqual(await child.exited, { code: 0, signal: null });
  assert.equal(output, "done\n");
});

test("a program that cannot be started: exited resolves with the errno, it never rejects", async (t) => {
  const missing = spawnChild("/nonexistent/nvidia-smi", ["-L"]);
  assert.equal(missing.pid, undefined);
  const gone = await missing.exited;
  assert.deepEqual([gone.code, gone.signal, gone.error?.code], [null, null, "ENOENT"]);
  missing.kill();
  missing.abandon();

  const file = path.join(tempDir(t), "not-executable");
  writeFileSync(file, "#!/bin/sh\necho hi\n");
  chmodSync(file, 0o644);
  const denied = await spawnChild(file, []).exited;
  assert.deepEqual([denied.code, denied.signal, denied.error?.code], [null, null, "EACCES"]);
});

test("kill sends the signal (SIGKILL unless told), and nothing escalates behind it", async () => {
  const killed = spawnChild("sleep", ["30"]);
  killed.kill();
  assert.deepEqual(await killed.exited, { code: null, signal: "SIGKILL" });

  // A SIGTERM the program ignores stays ignored: no SIGKILL follows on its own (execa's would after 5 s).
  const stubborn = spawnChild("sh", ["-c", "trap '' TERM; echo ready; exec sleep 30"]);
  await new Promise<void>((resolve) => stubborn.onOutput(() => resolve()));
  stubborn.kill("SIGTERM");
  const settled = await Promise.race([stubborn.exited.then(() => "ended"), new Promise((r) => setTimeout(r, 5_500, "still running"))]);
  assert.equal(settled, "still running");
  stubborn.kill("SIGKILL");
  assert.equal((await stubborn.exited).signal, "SIGKILL");
});

test("an abandoned child neither delivers output nor keeps the process alive", async () => {
  // In a host process: a ticking child abandoned mid-stream, and a quiet one (as stuck in the driver) that outlives the host.
  const script = `
    import { spawnChild } from ${JSON.stringify(path.join(REPO_ROOT, "src/gpu/spawn.ts"))};
    const ticker = spawnChild("sh", ["-c", "i=0; while [ $i -lt 500 ]; do echo tick; sleep 0.02; i=$((i+1)); done"]);
    let after = 0, abandoned = false;
    ticker.onOutput(() => { if (abandoned) after++; });
    await new Promise((r) => ticker.onOutput(r));
    ticker.abandon();
    abandoned = true;
    const quiet = spawnChild("sh", ["-c", "echo ready; exec sleep 30"]);
    await new Promise((r) => quiet.onOutput(r));
    quiet.abandon();
    await new Promise((r) => setTimeout(r, 100));
    console.log(JSON.stringify({ quiet: quiet.pid, after }));
  `;
  const host = spawnChild(process.execPath, ["--input-type=module", "-e", script]);
  let output = "";
  host.onOutput((chunk) => (output += chunk));
  const started = Date.now();
  const exit = await host.exited;
  assert.equal(exit.code, 0, output);
  const { quiet, after } = JSON.parse(output.trim()) as { quiet: number; after: number };
  assert.ok(Date.now() - started < 5_000, "the host ended without waiting for its abandoned child");
  assert.doesNotThrow(() => process.kill(quiet, 0), "the abandoned child still runs");
  process.kill(quiet, "SIGKILL");
  assert.equal(after, 0, "no output after abandon");
});
