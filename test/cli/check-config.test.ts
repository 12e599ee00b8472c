import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { runLlmsup } from "../helpers/cli.ts";
import { tempDir } from "../helpers/tmp.ts";
import { BROKEN, MINIMAL } from "../config/fixtures.ts";

test("check-config on the repository's supervisor.toml says valid with a one-line summary", async () => {
  const r = await runLlmsup(["check-config", "supervisor.toml"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^supervisor\.toml: valid, 5 backends \(3 managed, 2 remote\), 1 route\n$/);
});

test("check-config exits 78 for each broken config and names the exact key", async (t) => {
  const dir = tempDir(t);
  for (const [i, broken] of BROKEN.entries()) {
    const file = path.join(dir, `broken-${i}.toml`);
    writeFileSync(file, broken.text);
    const r = await runLlmsup(["check-config", file]);
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
  const r = await runLlmsup(["check-config", "--json", file]);
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
  const ok = await runLlmsup(["check-config", "--json", "supervisor.toml"]);
  assert.equal(ok.code, 0);
  assert.deepEqual({ ...JSON.parse(ok.stdout), source: undefined }, { valid: true, source: undefined, backends: 5, managed: 3, remote: 2, routes: 1 });
});

test("check-config takes the path from LLMSUP_CONFIG and reports a missing file with exit 78", async (t) => {
  const dir = tempDir(t);
  const r = await runLlmsup(["check-config"], { env: { LLMSUP_CONFIG: path.join(dir, "absent.toml") } });
  assert.equal(r.code, 78);
  assert.match(r.stderr, /LLMSUP_E_CONFIG_UNREADABLE: cannot read configuration .*absent\.toml: no such file/);
});

test("--version, --help, and usage errors", async () => {
  const v = await runLlmsup(["--version"]);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
  const h = await runLlmsup(["--help"]);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /check-config/);
  const u = await runLlmsup(["no-such-command"]);
  assert.equal(u.code, 64);
  assert.match(u.stderr, /unknown command/);
});

test("colour only on request of a TTY, never with NO_COLOR", async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, "bad.toml");
  writeFileSync(file, MINIMAL.replace('restart_sec = "10s"', 'restart_sec = "10"'));
  const plain = await runLlmsup(["check-config", file], { env: { FORCE_COLOR: "1", NO_COLOR: "1" } });
  assert.doesNotMatch(plain.stderr, /\u001b\[/);
  const coloured = await runLlmsup(["check-config", file], { env: { FORCE_COLOR: "1", NO_COLOR: "" } });
  assert.match(coloured.stderr, /\u001b\[/);
});
