/** The pure half of the host checks: facts in, errors and warnings out, judged for the service user. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { decideHostChecks, hostNeeds, parseEnvFile, permits, type FileFact, type HostFacts, type PathFact } from "../../src/config/host-checks.ts";
import { validateConfigText } from "../../src/config/load.ts";
import type { Config } from "../../src/config/types.ts";

function config(text: string): Config {
  const r = validateConfigText(text);
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.config;
}

const BASE = `
[router]
listen = ""
[[backend]]
name = "vllm"
kind = "vllm"
url = "http://127.0.0.1:8000"
gpus = [0, 2]
  [backend.process]
  command = ["vllm", "serve"]
  secret_env = { HF_TOKEN = "/etc/llmsup/hf-token" }
[[route]]
model = "m"
tiers = [{ backend = "vllm", model = "m" }]
`;

const dir = (mode: number, uid = 0, gid = 0): FileFact => ({ kind: "dir", mode, uid, gid });
const file = (mode: number, uid = 0, gid = 0): FileFact => ({ kind: "file", mode, uid, gid });
const LLMSUP = { name: "llmsup", uid: 990, gids: [990, 44] };

function facts(paths: Record<string, PathFact>, over: Partial<HostFacts> = {}): HostFacts {
  return {
    env: { PATH: "/usr/local/bin:/usr/bin" },
    cwd: "/",
    daemon: LLMSUP,
    checkerUid: 0,
    users: new Map(),
    groups: new Map(),
    paths: new Map(Object.entries({ "/": dir(0o755), "/etc": dir(0o755), "/usr": dir(0o755), "/usr/bin": dir(0o755), "/usr/local": dir(0o755), "/usr/local/bin": dir(0o755), ...paths })),
    ports: new Map(),
    ...over,
  };
}

const rules = (ps: readonly { path: string; rule: string }[]) => ps.map((p) => `${p.path} ${p.rule}`).sort();

test("modes are judged for the service user, not for root who runs the check", () => {
  assert.equal(permits(LLMSUP, file(0o640, 0, 990), 4), true, "group read");
  assert.equal(permits(LLMSUP, file(0o600, 0, 990), 4), false, "root's own file");
  assert.equal(permits({ name: "root", uid: 0, gids: [0] }, file(0o600, 1, 1), 4), true);
  assert.equal(permits({ name: "root", uid: 0, gids: [0] }, file(0o644), 1), false, "root needs an x bit to run a file");

  const c = config(BASE);
  const ok = decideHostChecks(c, facts({ "/usr/bin/vllm": file(0o755), "/etc/llmsup": dir(0o750, 0, 990), "/etc/llmsup/hf-token": file(0o640, 0, 990) }, { gpus: [0, 1, 2] }));
  assert.deepEqual(ok, { errors: [], warnings: [], skipped: [] });

  // root:root 0600 — fine for a root checker, unreadable for llmsup.
  const r = decideHostChecks(c, facts({ "/usr/bin/vllm": file(0o755), "/etc/llmsup": dir(0o750, 0, 990), "/etc/llmsup/hf-token": file(0o600) }, { gpus: [0, 1, 2] }));
  assert.deepEqual(rules(r.errors), ["backend[0].process.secret_env.HF_TOKEN secret_unreadable"]);
  assert.match(r.errors[0]!.message, /not readable by llmsup \(uid 990\) \(owner uid 0, group gid 0, mode 0600\)/);

  // A readable file in a directory llmsup cannot enter is unreadable too.
  const d = decideHostChecks(c, facts({ "/usr/bin/vllm": file(0o755), "/etc/llmsup": dir(0o700), "/etc/llmsup/hf-token": file(0o644) }, { gpus: [0, 1, 2] }));
  assert.match(d.errors[0]!.message, /cannot enter \/etc\/llmsup/);
});

test("a secret owned by the service user and open to its group warns; one it reads through the group does not", () => {
  const c = config(BASE);
  const own = decideHostChecks(c, facts({ "/usr/bin/vllm": file(0o755), "/etc/llmsup": dir(0o755), "/etc/llmsup/hf-token": file(0o640, 990, 990) }, { gpus: [0, 2] }));
  assert.deepEqual(rules(own.warnings), ["backend[0].process.secret_env.HF_TOKEN secret_exposed"]);
  const via = decideHostChecks(c, facts({ "/usr/bin/vllm": file(0o755), "/etc/llmsup": dir(0o755), "/etc/llmsup/hf-token": file(0o640, 0, 990) }, { gpus: [0, 2] }));
  assert.deepEqual(via.warnings, []);
});

test("PATH lookup skips a non-executable match like execvp, and names the one it found when none can run", () => {
  const c = config(BASE);
  const paths = { "/etc/llmsup": dir(0o755), "/etc/llmsup/hf-token": file(0o600, 990) };
  const skip = decideHostChecks(c, facts({ ...paths, "/usr/local/bin/vllm": file(0o644), "/usr/bin/vllm": file(0o755) }, { gpus: [0, 2] }));
  assert.deepEqual(skip.errors, []);
  const none = decideHostChecks(c, facts({ ...paths, "/usr/local/bin/vllm": file(0o744, 0) }, { gpus: [0, 2] }));
  assert.deepEqual(rules(none.errors), ["backend[0].process.command[0] command_not_executable"]);
  assert.match(none.errors[0]!.message, /\/usr\/local\/bin\/vllm is not executable by llmsup \(owner uid 0, group gid 0, mode 0744\)/);
  assert.deepEqual(
    hostNeeds(c, { PATH: "/opt/bin:/usr/bin" }, "/").paths.filter((p) => p.endsWith("vllm")),
    ["/opt/bin/vllm", "/usr/bin/vllm"],
  );
});

test("process.user: unknown, needing root, and judged with only its own group", () => {
  const text = BASE.replace('command = ["vllm", "serve"]', 'command = ["/opt/vllm/bin/vllm", "serve"]\n  user = "vllm"');
  const c = config(text);
  const paths = { "/opt": dir(0o755), "/opt/vllm": dir(0o755), "/opt/vllm/bin": dir(0o755), "/etc/llmsup": dir(0o755), "/etc/llmsup/hf-token": file(0o600, 990) };
  const unknown = decideHostChecks(c, facts(paths, { gpus: [0, 2] }));
  assert.deepEqual(rules(unknown.errors), ["backend[0].process.user user_unknown"]);
  const users = new Map([["vllm", 1001]]);
  const noRoot = decideHostChecks(c, facts({ ...paths, "/opt/vllm/bin/vllm": file(0o750, 0, 990) }, { users, gpus: [0, 2] }));
  // The daemon (llmsup) is not root, and vllm — with the daemon's group 990 only — may run the program through the group bit.
  assert.deepEqual(rules(noRoot.errors), ["backend[0].process.user user_switch"]);
  const asRoot = decideHostChecks(c, facts({ ...paths, "/opt/vllm/bin/vllm": file(0o750, 0, 44), "/etc/llmsup/hf-token": file(0o600) }, { users, gpus: [0, 2], daemon: { name: "root", uid: 0, gids: [0, 44] } }));
  assert.deepEqual(rules(asRoot.errors), ["backend[0].process.command[0] command_not_executable"], "supplementary group 44 is dropped for the backend");
});

test("GPUs named must exist when nvidia-smi answered; otherwise the check is skipped and says so", () => {
  const c = config(BASE);
  const paths = { "/usr/bin/vllm": file(0o755), "/etc/llmsup": dir(0o755), "/etc/llmsup/hf-token": file(0o600, 990) };
  const r = decideHostChecks(c, facts(paths, { gpus: [0, 1] }));
  assert.deepEqual(rules(r.errors), ["backend[0].gpus[1] gpu_missing"]);
  assert.match(r.errors[0]!.message, /GPU 2 does not exist on this host \(nvidia-smi lists 0, 1\)/);
  const s = decideHostChecks(c, facts(paths, { gpuSkipped: "nvidia-smi is not on PATH on this host" }));
  assert.deepEqual(s.errors, []);
  assert.deepEqual(s.skipped, ["GPU indices not checked: nvidia-smi is not on PATH on this host"]);
});

test("SMTP password problems are warnings while alerts are off, errors when on", () => {
  const text = `${BASE}\n[alerts]\nenabled = ENABLED\nto = ["ops@example.com"]\n[alerts.smtp]\nuser = "u"\npassword_env = "LLMSUP_SMTP_PASSWORD"\n`;
  const paths = { "/usr/bin/vllm": file(0o755), "/etc/llmsup": dir(0o755), "/etc/llmsup/hf-token": file(0o600, 990) };
  const off = decideHostChecks(config(text.replace("ENABLED", "false")), facts(paths, { gpus: [0, 2] }));
  assert.deepEqual([rules(off.errors), rules(off.warnings)], [[], ["alerts.smtp.password_env env_unset"]]);
  const on = decideHostChecks(config(text.replace("ENABLED", "true")), facts(paths, { gpus: [0, 2] }));
  assert.deepEqual(rules(on.errors), ["alerts.smtp.password_env env_unset"]);
});

test("EnvironmentFile syntax: comments, quotes, export", () => {
  assert.deepEqual(parseEnvFile('# c\n; c\nA=1\n export B = "two words"\nC=\'x y\'\nD="q\\"q"\n\nnot a line\n'), { A: "1", B: "two words", C: "x y", D: 'q"q' });
});

test("gpu.auto_reset with a daemon that is not root warns that every reset would be refused; as root it does not", () => {
  const withReset = config(BASE.replace("[[backend]]", "[gpu]\nauto_reset = true\n\n[[backend]]"));
  const paths = { "/usr/bin/vllm": file(0o755), "/etc/llmsup": dir(0o750, 0, 990), "/etc/llmsup/hf-token": file(0o600, 990, 990) };
  const asLlmsup = decideHostChecks(withReset, facts(paths, { gpus: [0, 1, 2] }));
  const w = asLlmsup.warnings.find((p) => p.rule === "auto_reset_needs_root");
  assert.ok(w, rules(asLlmsup.warnings).join("\n"));
  assert.equal(w.path, "gpu.auto_reset");
  assert.match(w.message, /nvidia-smi -r needs root: every reset would be refused and escalate to "reboot required"/);
  const asRoot = decideHostChecks(withReset, facts(paths, { gpus: [0, 1, 2], daemon: { name: "root", uid: 0, gids: [0] } }));
  assert.equal(asRoot.warnings.some((p) => p.rule === "auto_reset_needs_root"), false);
  const off = decideHostChecks(config(BASE), facts(paths, { gpus: [0, 1, 2] }));
  assert.equal(off.warnings.some((p) => p.rule === "auto_reset_needs_root"), false, "auto_reset off (the default): nothing to say");
});
