/** scripts/install.sh into a staging root: the program, the wrapper, the unit, the directories; idempotent; the config kept. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "../helpers/cli.ts";
import { tempDir } from "../helpers/tmp.ts";

const run = promisify(execFile);

test("install.sh stages a complete installation and keeps an existing configuration on a second run", { timeout: 300_000 }, async (t) => {
  const root = tempDir(t);
  // --root alone: a staging root is not this host, so no user, group or systemctl here.
  const args = [path.join(REPO_ROOT, "scripts/install.sh"), "--root", root, "--node", process.execPath];
  const hadUser = await run("getent", ["passwd", "llmsup"]).then(() => true, () => false);
  const first = await run("bash", args, { cwd: REPO_ROOT, maxBuffer: 16 * 1024 * 1024 });
  if (!hadUser) assert.equal(await run("getent", ["passwd", "llmsup"]).then(() => true, () => false), false, "no llmsup user was created on this host");
  assert.match(first.stdout, /installed the example configuration at .*\/etc\/llmsup\/supervisor\.toml/);
  assert.match(first.stdout, /installed; start it with: systemctl start llmsup/);
  const prefix = path.join(root, "usr/lib/llmsup");
  for (const f of ["dist/cli/main.js", "package.json", "systemd/llmsup.service", "supervisor.toml", "INSTALL.md", "node_modules/commander/package.json"]) assert.ok(existsSync(path.join(prefix, f)), f);
  assert.ok(!existsSync(path.join(prefix, "node_modules/typescript")), "production dependencies only");
  const wrapper = readFileSync(path.join(root, "usr/bin/llmsup"), "utf8");
  assert.match(wrapper, new RegExp(`exec "${process.execPath.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}" /usr/lib/llmsup/dist/cli/main.js "\\$@"`));
  assert.equal(statSync(path.join(root, "usr/bin/llmsup")).mode & 0o777, 0o755);
  assert.ok(existsSync(path.join(root, "etc/systemd/system/llmsup.service")));
  for (const d of ["etc/llmsup", "var/lib/llmsup", "var/log/llmsup"]) assert.equal(statSync(path.join(root, d)).mode & 0o777, 0o750, d);
  const version = await run(process.execPath, [path.join(prefix, "dist/cli/main.js"), "--version"]);
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);

  // An operator's edits survive an upgrade.
  const config = path.join(root, "etc/llmsup/supervisor.toml");
  writeFileSync(config, readFileSync(config, "utf8").replace('log_level = "info"', 'log_level = "debug"'));
  const second = await run("bash", args, { cwd: REPO_ROOT, maxBuffer: 16 * 1024 * 1024 });
  assert.match(second.stdout, /kept the existing .*supervisor\.toml/);
  assert.match(second.stdout, /production dependencies unchanged \(package-lock\.json\); kept/, "an upgrade with the same lockfile does not reinstall them");
  assert.ok(existsSync(path.join(prefix, "node_modules/commander/package.json")));
  assert.match(readFileSync(config, "utf8"), /log_level = "debug"/);

  const removed = await run("bash", [...args, "--uninstall"], { cwd: REPO_ROOT });
  assert.match(removed.stdout, /removed the program and the unit; kept/);
  assert.ok(!existsSync(prefix) && !existsSync(path.join(root, "usr/bin/llmsup")));
  assert.ok(existsSync(config), "configuration kept");
});

test("install.sh --help prints its usage (not its own source); an unknown option is a usage error", async () => {
  const help = await run("bash", [path.join(REPO_ROOT, "scripts/install.sh"), "--help"]);
  assert.match(help.stdout, /^usage: install\.sh /);
  assert.match(help.stdout, /--root DIR +install under DIR .*no users, groups or systemctl on this host/);
  assert.doesNotMatch(help.stdout, /^#|set -euo/m);
  const bad = await run("bash", [path.join(REPO_ROOT, "scripts/install.sh"), "--bogus"]).then(() => undefined, (e: { code: number; stderr: string }) => e);
  assert.equal(bad?.code, 64);
  assert.match(bad!.stderr, /unknown option --bogus \(see --help\)/);
});
