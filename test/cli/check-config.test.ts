import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { PassThrough, Writable } from "node:stream";
import { checkConfig, type CheckConfigOptions } from "../../src/cli/check-config.ts";
import { runMain } from "../../src/cli/entry.ts";
import type { ConfigProblem } from "../../src/config/types.ts";
import { LlmsupError } from "../../src/errors/error.ts";
import { REPO_ROOT, runCliInProcess, runLlmsup } from "../helpers/cli.ts";
import { tempDir } from "../helpers/tmp.ts";
import { BROKEN, MINIMAL } from "../config/fixtures.ts";

const EXAMPLE = path.join(REPO_ROOT, "supervisor.toml");

test("check-config --offline on the repository's supervisor.toml says valid with a one-line summary", async () => {
  // The example names /opt/vllm, /etc/llmsup/hf-token, GPU2_API_KEY: none exist on a dev box, which is what --offline is for.
  const r = await runCliInProcess(["check-config", "--offline", EXAMPLE]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${EXAMPLE}: valid, 5 backends (3 managed, 2 remote), 1 route\n`);
  assert.equal(r.stderr, "");
});

test("check-config exits 78 for each broken config and names the exact key", async (t) => {
  const dir = tempDir(t);
  for (const [i, broken] of BROKEN.entries()) {
    const file = path.join(dir, `broken-${i}.toml`);
    writeFileSync(file, broken.text);
    const r = await runCliInProcess(["check-config", file]);
    assert.equal(r.code, 78, `${broken.name}: exit ${r.code}\n${r.stderr}`);
    assert.equal(r.stdout, "");
    if (broken.path) assert.ok(r.stderr.includes(`  ${broken.path}: `), `${broken.name}: stderr names ${broken.path}:\n${r.stderr}`);
    else assert.match(r.stderr, /line \d+, column \d+/);
    assert.match(r.stderr, broken.says);
  }
});

test("check-config --json lists every problem with path, rule, expected and found", async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, "two.toml");
  writeFileSync(file, MINIMAL.replace('restart_sec = "10s"', 'restart_sec = "10"').replace('kind = "llamacpp"', 'kind = "llama"'));
  const r = await runCliInProcess(["check-config", "--json", file]);
  assert.equal(r.code, 78);
  const out = JSON.parse(r.stdout) as { valid: boolean; code: string; problems: { path: string; rule: string; expected: string; found: string }[] };
  assert.equal(out.valid, false);
  assert.equal(out.code, "LLMSUP_E_CONFIG_INVALID");
  assert.deepEqual(
    out.problems.map((p) => [p.path, p.rule, p.found]).sort(),
    [
      ["backend[0].process.restart_sec", "duration", '"10"'],
      ["backend[1].kind", "enum", '"llama"'],
    ],
  );
  const ok = await runCliInProcess(["check-config", "--json", "--offline", EXAMPLE]);
  assert.equal(ok.code, 0);
  assert.deepEqual(
    { ...JSON.parse(ok.stdout), source: undefined },
    { valid: true, source: undefined, host_checked: false, backends: 5, managed: 3, remote: 2, routes: 1, warnings: [], skipped: [] },
  );
});

test("check-config takes the path from LLMSUP_CONFIG and reports a missing file with exit 78", async (t) => {
  const dir = tempDir(t);
  const r = await runCliInProcess(["check-config"], { env: { LLMSUP_CONFIG: path.join(dir, "absent.toml") } });
  assert.equal(r.code, 78);
  assert.match(r.stderr, /LLMSUP_E_CONFIG_UNREADABLE: cannot read configuration .*absent\.toml: no such file/);
});

test("--version, --help, and usage errors", async () => {
  const v = await runCliInProcess(["--version"]);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
  const h = await runCliInProcess(["--help"]);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /check-config/);
  const u = await runCliInProcess(["no-such-command"]);
  assert.equal(u.code, 64);
  assert.match(u.stderr, /unknown command/);
  const missing = await runCliInProcess(["check-config", "--user"]);
  assert.equal(missing.code, 64);
  assert.match(missing.stderr, /option '--user <name>' argument missing/);
});

test("an unexpected exception is exit 70 with its stack on stderr, not a rejection", async () => {
  const stderr = new PassThrough();
  let err = "";
  stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  const broken = new Writable();
  broken.write = () => {
    throw new Error("stdout went away");
  };
  assert.equal(await runMain(["--version"], { stdout: broken, stderr, env: {} }), 70);
  assert.match(err, /^llmsup: internal error \(LLMSUP_E_INTERNAL\): Error: stdout went away\n {4}at /);
});

test("the llmsup executable: --version on stdout, a usage error exits 64", async () => {
  // The one place the real entry point (src/cli/main.ts) runs as its own process; everything else here runs in-process.
  const [v, u] = await Promise.all([runLlmsup(["--version"]), runLlmsup(["no-such-command"])]);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
  assert.equal(v.stderr, "");
  assert.equal(u.code, 64);
  assert.equal(u.stdout, "");
  assert.match(u.stderr, /unknown command 'no-such-command'/);
});

test("colour only on request of a TTY, never with NO_COLOR", async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, "bad.toml");
  writeFileSync(file, MINIMAL.replace('restart_sec = "10s"', 'restart_sec = "10"'));
  const plain = await runCliInProcess(["check-config", file], { env: { FORCE_COLOR: "1", NO_COLOR: "1" } });
  assert.doesNotMatch(plain.stderr, /\u001b\[/);
  const coloured = await runCliInProcess(["check-config", file], { env: { FORCE_COLOR: "1", NO_COLOR: "" } });
  assert.match(coloured.stderr, /\u001b\[/);
});

// --- Host checks: the configuration must be able to run on this host. ---

/** A config with one managed backend running `bin` on `port`, a remote one, and no router TCP listener unless given. */
function hostConfig(o: { bin: string; port: number; process?: string; cloud?: string; top?: string }): string {
  return `${o.top ?? '[router]\nlisten = ""\n'}
[[backend]]
name = "local"
kind = "llamacpp"
url = "http://127.0.0.1:${o.port}"
  [backend.process]
  command = [${JSON.stringify(o.bin)}, "--port", "${o.port}"]
${o.process ?? ""}
[[backend]]
name = "cloud"
kind = "openai"
url = "https://api.example.com"
${o.cloud ?? ""}
[[route]]
model = "m"
tiers = [{ backend = "local", model = "m" }, { backend = "cloud", model = "m" }]
`;
}

/** A port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A directory any user may enter (mkdtemp makes 0700), with an executable program in it. */
function hostDir(t: TestContext): { dir: string; bin: string } {
  const dir = tempDir(t);
  chmodSync(dir, 0o755);
  const bin = path.join(dir, "llama-server");
  writeFileSync(bin, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  return { dir, bin };
}

function write(dir: string, name: string, text: string, mode = 0o644): string {
  const file = path.join(dir, name);
  writeFileSync(file, text, { mode });
  chmodSync(file, mode);
  return file;
}

const rules = (ps: readonly ConfigProblem[]) => ps.map((p) => `${p.path} ${p.rule}`).sort();

/** checkConfig in-process: the problems of LLMSUP_E_CONFIG_HOST, or the warnings of a pass. */
async function hostCheck(file: string, opts: CheckConfigOptions = {}, env: NodeJS.ProcessEnv = { PATH: process.env.PATH }) {
  try {
    const r = await checkConfig(file, opts, env);
    return { errors: [] as ConfigProblem[], warnings: r.host?.warnings ?? [], skipped: r.host?.skipped ?? [] };
  } catch (e) {
    if (!(e instanceof LlmsupError) || e.code !== "LLMSUP_E_CONFIG_HOST") throw e;
    return { errors: e.details.problems as ConfigProblem[], warnings: e.details.warnings as ConfigProblem[], skipped: e.details.skipped as string[] };
  }
}

test("a program that is missing, or not executable, stops the start with exit 78; --offline does not look", async (t) => {
  const { dir, bin } = hostDir(t);
  const port = await freePort();
  const ok = write(dir, "ok.toml", hostConfig({ bin, port }));
  assert.deepEqual(await hostCheck(ok), { errors: [], warnings: [], skipped: [] });

  const missing = write(dir, "missing.toml", hostConfig({ bin: path.join(dir, "no-such-server"), port }));
  const r = await runCliInProcess(["check-config", missing]);
  assert.equal(r.code, 78, r.stderr);
  assert.match(r.stderr, /1 problem on this host \(LLMSUP_E_CONFIG_HOST\)/);
  assert.match(r.stderr, /backend\[0\]\.process\.command\[0\]: .*no-such-server not found/);
  const offline = await runCliInProcess(["check-config", "--offline", missing]);
  assert.equal(offline.code, 0, offline.stderr);
  assert.equal(offline.stderr, "");

  const bare = write(dir, "bare.toml", hostConfig({ bin: "llmsup-no-such-program", port }));
  const b = await hostCheck(bare);
  assert.deepEqual(rules(b.errors), ["backend[0].process.command[0] command_missing"]);
  assert.match(b.errors[0]!.message, /not found on PATH/);

  const notExec = write(dir, "llama-plain", "#!/bin/sh\n", 0o644);
  const ne = await hostCheck(write(dir, "noexec.toml", hostConfig({ bin: notExec, port })));
  assert.deepEqual(rules(ne.errors), ["backend[0].process.command[0] command_not_executable"]);
  assert.match(ne.errors[0]!.message, /mode 0644/);
});

test("secret files: missing or unreadable by the service user is an error, world-readable a warning", async (t) => {
  const { dir, bin } = hostDir(t);
  const port = await freePort();
  const secret = (mode: number) => write(dir, `key-${mode.toString(8)}`, "sk-test\n", mode);
  const cfg = (file: string) => write(dir, "s.toml", hostConfig({ bin, port, cloud: `api_key_file = ${JSON.stringify(file)}` }));

  assert.deepEqual(await hostCheck(cfg(secret(0o600))), { errors: [], warnings: [], skipped: [] });

  const missing = await hostCheck(cfg(path.join(dir, "absent-key")));
  assert.deepEqual(rules(missing.errors), ["backend[1].api_key_file secret_unreadable"]);
  assert.match(missing.errors[0]!.message, /no such file/);

  // Owned by whoever runs the test, mode 0600: the service user "nobody" cannot read it (not even when the test runs as root).
  const unreadable = await hostCheck(cfg(secret(0o600)), { user: "nobody" });
  assert.deepEqual(rules(unreadable.errors), ["backend[1].api_key_file secret_unreadable"]);
  assert.match(unreadable.errors[0]!.message, /not readable by nobody/);

  const open = await hostCheck(cfg(secret(0o644)));
  assert.deepEqual(open.errors, []);
  assert.deepEqual(rules(open.warnings), ["backend[1].api_key_file secret_exposed"]);
  assert.match(open.warnings[0]!.message, /readable by every user on this host \(mode 0644\)/);

  const w = await runCliInProcess(["check-config", cfg(secret(0o644))]);
  assert.equal(w.code, 0, "a warning does not stop the start");
  assert.match(w.stdout, /valid, .*can run on this host/);
  assert.match(w.stderr, /1 warning\n {2}backend\[1\]\.api_key_file: .*readable by every user/);
});

test("a variable the daemon will not have is an error; one set by --env-file passes", async (t) => {
  const { dir, bin } = hostDir(t);
  const port = await freePort();
  const file = write(dir, "env.toml", hostConfig({ bin, port, cloud: 'api_key_env = "LLMSUP_TEST_CLOUD_KEY"' }));
  const unset = await hostCheck(file);
  assert.deepEqual(rules(unset.errors), ["backend[1].api_key_env env_unset"]);
  assert.match(unset.errors[0]!.message, /LLMSUP_TEST_CLOUD_KEY is not set in the environment the daemon gets/);

  const envFile = write(dir, "llmsup.env", "# the unit's EnvironmentFile\nLLMSUP_TEST_CLOUD_KEY=\"sk-from-file\"\n", 0o600);
  assert.deepEqual((await hostCheck(file, { envFile: [envFile] })).errors, []);
  assert.deepEqual((await hostCheck(file, {}, { PATH: process.env.PATH, LLMSUP_TEST_CLOUD_KEY: "sk" })).errors, []);

  const cli = await runCliInProcess(["check-config", "--env-file", envFile, file], { env: { LLMSUP_TEST_CLOUD_KEY: undefined } });
  assert.equal(cli.code, 0, cli.stderr);
});

test("a port already in use is a warning (it may be our own backend), listed in --json", async (t) => {
  const { dir, bin } = hostDir(t);
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
  t.after(() => busy.close());
  const port = (busy.address() as net.AddressInfo).port;
  const file = write(dir, "busy.toml", hostConfig({ bin, port }));
  const r = await runCliInProcess(["check-config", "--json", file]);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { valid: boolean; host_checked: boolean; warnings: ConfigProblem[] };
  assert.equal(out.valid, true);
  assert.equal(out.host_checked, true);
  assert.deepEqual(rules(out.warnings), ["backend[0].url port_in_use"]);
  assert.match(out.warnings[0]!.message, new RegExp(`127\\.0\\.0\\.1:${port}, where backend "local" listens, is in use`));

  const router = write(dir, "router.toml", hostConfig({ bin, port: await freePort(), top: `[router]\nlisten = "127.0.0.1:${port}"\n` }));
  assert.deepEqual(rules((await hostCheck(router)).warnings), ["router.listen port_in_use"]);
  assert.equal((await runCliInProcess(["check-config", "--offline", "--json", router])).stdout.includes("port_in_use"), false);
});

test('"0s" where it would make the daemon spin, and a From that is not an address, are refused in every mode', async (t) => {
  const { dir, bin } = hostDir(t);
  const port = await freePort();
  const cases: [string, string, RegExp][] = [
    ['[health]\ninterval = "0s"\n[router]\nlisten = ""\n', "health.interval", /longer than zero/],
    ['[gpu]\ninterval = "0ms"\n[router]\nlisten = ""\n', "gpu.interval", /longer than zero/],
    ['[alerts]\nfrom = "not an address"\n[router]\nlisten = ""\n', "alerts.from", /expected an e-mail address/],
  ];
  for (const [top, key, says] of cases) {
    const file = write(dir, "zero.toml", hostConfig({ bin, port, top }));
    for (const mode of [["--offline"], []]) {
      const r = await runCliInProcess(["check-config", "--json", ...mode, file]);
      assert.equal(r.code, 78, `${key} ${mode}`);
      const out = JSON.parse(r.stdout) as { code: string; problems: ConfigProblem[] };
      assert.equal(out.code, "LLMSUP_E_CONFIG_INVALID");
      assert.deepEqual(out.problems.map((p) => p.path), [key]);
      assert.match(out.problems[0]!.message, says);
    }
  }
  // Zero that means "off" or "never wait" stays accepted.
  const off = write(dir, "off.toml", hostConfig({ bin, port, top: '[router]\nlisten = ""\nqueue_timeout = "0s"\nretry_after_wait_max = "0s"\n[health]\nprobe_interval = "0s"\n[alerts]\nfrom = "llmsup <llmsup@box.example.com>"\n' }));
  assert.equal((await runCliInProcess(["check-config", "--offline", off])).code, 0);
});
