/**
 * Least privilege on the control socket with a real second local user: a
 * throwaway user and group made for each test (root only; skipped otherwise)
 * and removed afterwards, the real CLI run as that user against the real
 * daemon. Who the daemon sees is the owner of the proof file, never a word of
 * the client's.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, linkSync, mkdirSync } from "node:fs";
import { request } from "node:http";
import path from "node:path";
import { CHALLENGE_PATH, PROOF_HEADER } from "../../src/control/auth.ts";
import { gidOf, uidOf } from "../../src/platform/users.ts";
import { CLI_ENTRY, REPO_ROOT, type CliResult } from "../helpers/cli.ts";
import { startDaemon, status, waitStatus, writeDaemonConfig, type DaemonFiles } from "../helpers/daemon.ts";

const ONE = `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }]\n`;
const NOT_ROOT = "needs root: it creates a throwaway user and group (useradd, groupadd) and runs the CLI as that user";

interface LocalUser {
  readonly name: string;
  readonly group: string;
  readonly uid: number;
  readonly gid: number;
}

/** A new user whose primary group is a new group, both with names unique to this run; removed when the test ends, whatever its outcome. */
async function throwawayUser(t: TestContext): Promise<LocalUser> {
  const suffix = randomBytes(4).toString("hex");
  const name = `llsu${suffix}`;
  const group = `llsg${suffix}`;
  t.after(() => {
    spawnSync("userdel", [name], { stdio: "ignore" });
    spawnSync("groupdel", [group], { stdio: "ignore" });
  });
  execFileSync("groupadd", [group]);
  execFileSync("useradd", ["-M", "-N", "-g", group, "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name]);
  const uid = await uidOf(name);
  const gid = await gidOf(group);
  assert.ok(uid !== undefined && gid !== undefined, `${name} and ${group} exist`);
  return { name, group, uid, gid };
}

/**
 * Runs `llmsup ARGS` as `user` (its uid and its group, no other groups), or
 * says why it cannot here. The test directory is opened to the user; the node
 * binary, when it lies where the user cannot reach it, is hard-linked into it
 * (a second name, nothing copied).
 */
function runnerFor(user: LocalUser, dir: string): { readonly node: string; run(args: readonly string[]): Promise<CliResult> } | { cannot: string } {
  chmodSync(dir, 0o755);
  const as = { uid: user.uid, gid: user.gid };
  let node = process.execPath;
  if (spawnSync(node, ["-e", "0"], as).status !== 0) {
    mkdirSync(path.join(dir, "bin"), { mode: 0o755 });
    node = path.join(dir, "bin", "node");
    try {
      linkSync(process.execPath, node);
    } catch (e) {
      return { cannot: `${process.execPath} is not reachable by other users and cannot be linked into ${dir} (${(e as NodeJS.ErrnoException).code})` };
    }
  }
  const readable = spawnSync(node, ["-e", `require("node:fs").accessSync(${JSON.stringify(CLI_ENTRY)}, 4)`], { ...as, cwd: REPO_ROOT });
  if (readable.status !== 0) return { cannot: `${CLI_ENTRY} is not readable by other users: ${readable.stderr}` };
  return {
    node,
    run: (args) =>
      new Promise((resolve, reject) => {
        const child = spawn(node, [CLI_ENTRY, ...args], { ...as, cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
        child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
        const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
        child.on("error", reject);
        child.on("close", (code, signal) => {
          clearTimeout(timer);
          resolve({ code, signal, stdout, stderr });
        });
      }),
  };
}

/** A daemon whose control socket belongs to `user`'s group, with `extra` more [control] keys. */
async function daemonFor(t: TestContext, user: LocalUser, extra = "") {
  const files = await writeDaemonConfig(t, [{ name: "primary", kind: "llamacpp" }], ONE, `[control]\ngroup = "${user.group}"\n${extra}`);
  const d = await startDaemon(t, files);
  const ready = await waitStatus(d, "primary ready", (s) => s.backends[0]!.state === "ready");
  return { files, d, pid: ready.json.backends[0]!.pid };
}

const logged = (stdout: string, event: string) =>
  stdout
    .split("\n")
    .filter((l) => l.includes(`"event":"${event}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

function ask(files: DaemonFiles, method: string, pathname: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> & { error?: { code: string; message: string } } }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: files.control, method, path: pathname, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (d: string) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as never }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("a second local user in the read group can read status but gets a permission error on stop, and the audit log names that user", async (t) => {
  if (process.getuid?.() !== 0) return t.skip(NOT_ROOT);
  const user = await throwawayUser(t);
  const { files, d, pid } = await daemonFor(t, user);
  const as = runnerFor(user, files.dir);
  if ("cannot" in as) return t.skip(as.cannot);

  const read = await as.run(["status", "--json", "--config", files.config]);
  assert.equal(read.code, 0, read.stderr);
  assert.equal((JSON.parse(read.stdout) as { running: boolean }).running, true);

  const stop = await as.run(["stop", "primary", "--config", files.config]);
  assert.equal(stop.code, 77, "the registry's exit status for a refusal");
  assert.match(stop.stderr, /^llmsup stop primary: LLMSUP_E_CONTROL_FORBIDDEN: /);
  assert.ok(
    stop.stderr.includes(`${user.name} (uid ${user.uid}) may read but not act: stop primary needs root, the daemon's user; to let a group act, set [control] admin_group = "<group>" and add the user to it: \`usermod -aG <group> ${user.name}\``),
    stop.stderr,
  );

  // The other commands that act are refused the same way, each with the exit status of the refusal.
  const drain = await as.run(["drain", "primary", "--config", files.config]);
  assert.equal(drain.code, 77);
  assert.match(drain.stderr, /^llmsup drain primary: LLMSUP_E_CONTROL_FORBIDDEN: /);

  const after = await status(d);
  assert.equal(after.json.backends[0]!.state, "ready", "the backend is still running");
  assert.equal(after.json.backends[0]!.pid, pid);
  assert.equal((after.json.backends[0] as unknown as { drained: unknown }).drained, null, "and in rotation");
  process.kill(pid!, 0);
  assert.deepEqual(
    logged(d.stdout(), "control.refused").map((l) => [l.action, l.target, l.uid, l.user, l.code]),
    [
      ["stop", "primary", user.uid, user.name, "LLMSUP_E_CONTROL_FORBIDDEN"],
      ["drain", "primary", user.uid, user.name, "LLMSUP_E_CONTROL_FORBIDDEN"],
    ],
  );
  assert.deepEqual(logged(d.stdout(), "control.command"), []);
});

test("a member of [control] admin_group may act, and the audit log and the drain name that user", async (t) => {
  if (process.getuid?.() !== 0) return t.skip(NOT_ROOT);
  const user = await throwawayUser(t);
  const { files, d } = await daemonFor(t, user, `admin_group = "${user.group}"\n`);
  const as = runnerFor(user, files.dir);
  if ("cannot" in as) return t.skip(as.cannot);

  const drained = await as.run(["drain", "primary", "--config", files.config]);
  assert.equal(drained.code, 0, drained.stderr);
  assert.match(drained.stdout, new RegExp(`^primary: drained by ${user.name} since `));
  const stop = await as.run(["stop", "primary", "--config", files.config]);
  assert.equal(stop.code, 0, stop.stderr);
  await waitStatus(d, "primary stopped", (s) => s.backends[0]!.state === "stopped");
  assert.deepEqual(
    logged(d.stdout(), "control.command").map((l) => [l.action, l.target, l.uid, l.user]),
    [
      ["drain", "primary", user.uid, user.name],
      ["stop", "primary", user.uid, user.name],
    ],
  );
});

test("a proof file another user plants for root's nonce makes the request that user's, not root's: refused", async (t) => {
  if (process.getuid?.() !== 0) return t.skip(NOT_ROOT);
  const user = await throwawayUser(t);
  const { files, d, pid } = await daemonFor(t, user);
  const as = runnerFor(user, files.dir);
  if ("cannot" in as) return t.skip(as.cannot);

  const c = await ask(files, "POST", CHALLENGE_PATH);
  const file = path.join(c.body.dir as string, c.body.nonce as string);
  const planted = spawnSync(as.node, ["-e", `require("node:fs").writeFileSync(${JSON.stringify(file)}, "", { flag: "wx", mode: 0o600 })`], { uid: user.uid, gid: user.gid });
  assert.equal(planted.status, 0, `the user could create the file: ${planted.stderr}`);

  const r = await ask(files, "POST", "/backends/primary/stop", { [PROOF_HEADER]: c.body.nonce as string });
  assert.equal(r.status, 403);
  assert.equal(r.body.error?.code, "LLMSUP_E_CONTROL_FORBIDDEN");
  assert.match(r.body.error?.message ?? "", new RegExp(`^${user.name} \\(uid ${user.uid}\\) may read but not act`));
  assert.equal((await status(d)).json.backends[0]!.pid, pid, "the backend was not touched");
  assert.deepEqual(
    logged(d.stdout(), "control.refused").map((l) => [l.uid, l.user]),
    [[user.uid, user.name]],
  );
});
