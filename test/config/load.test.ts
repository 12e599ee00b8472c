import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { loadConfigFile, validateConfigText } from "../../src/config/load.ts";
import type { Config, ConfigProblem } from "../../src/config/types.ts";
import { LlmsupError } from "../../src/errors/error.ts";
import { REPO_ROOT } from "../helpers/cli.ts";
import { tempDir } from "../helpers/tmp.ts";
import { BROKEN, MINIMAL, minimalWith } from "./fixtures.ts";

function valid(text: string): Config {
  const r = validateConfigText(text, { hostname: "box1" });
  if (!r.ok) assert.fail(`expected valid, got:\n${r.problems.map((p) => `${p.path}: ${p.message}`).join("\n")}`);
  return r.config;
}

function problems(text: string): readonly ConfigProblem[] {
  const r = validateConfigText(text);
  assert.equal(r.ok, false, "expected the configuration to be rejected");
  return r.ok ? [] : r.problems;
}

test("the annotated supervisor.toml at the repository root is valid", async () => {
  const config = await loadConfigFile(path.join(REPO_ROOT, "supervisor.toml"), { hostname: "box1" });
  const kinds = config.backends.map((b) => `${b.kind}:${b.managed ? "managed" : "remote"}`);
  for (const k of ["vllm:managed", "ollama:managed", "llamacpp:managed", "openai:remote"]) assert.ok(kinds.includes(k), `has ${k}`);
  assert.ok(config.routes.some((r) => r.tiers.length >= 4), "a route with at least four tiers");
  assert.equal(config.alerts.smtp.password_file, "/etc/llmsup/smtp-password");
  assert.equal(config.schedule.digest, "0 8 * * *");
  assert.equal(config.gpu.nvidia_smi, "nvidia-smi");
});

test("defaults are applied, durations become milliseconds, and the result is frozen", () => {
  const config = valid(MINIMAL);
  const vllm = config.backends[0]!;
  assert.equal(vllm.managed, true);
  assert.equal(vllm.process?.restart_sec, 10_000);
  assert.equal(vllm.process?.restart_max_delay, 120_000);
  assert.equal(vllm.process?.startup_timeout, 900_000);
  assert.equal(vllm.process?.stop_timeout, 30_000);
  assert.equal(vllm.process?.restart, "always");
  assert.equal(vllm.health.interval, 5_000);
  assert.equal(config.router.max_body, 4 * 1024 * 1024);
  assert.equal(config.router.listen, "127.0.0.1:8181");
  assert.equal(config.router.socket, "/run/llmsup/api.sock");
  assert.equal(config.control.socket, "/run/llmsup/control.sock");
  assert.equal(config.control.mode, 0o660);
  assert.equal(config.daemon.hostname, "box1");
  const tier = config.routes[0]!.tiers[1]!;
  assert.equal(tier.max_tokens, 200);
  assert.equal(tier.ttft_timeout, 30_000);
  assert.ok(Object.isFrozen(config) && Object.isFrozen(config.backends[0]) && Object.isFrozen(config.routes[0]!.tiers[0]));
  assert.throws(() => {
    (config.router as { listen: string }).listen = "0.0.0.0:1";
  }, TypeError);
});

test("per-backend health and per-tier timeouts override the global ones", () => {
  const config = valid(
    minimalWith('gpus = [0]\n', 'gpus = [0]\ncontext = 8192\n  [backend.health]\n  deep_interval = "2m"\n')
      .replace('model = "llama-q4", max_tokens = 200', 'model = "llama-q4", max_tokens = 200, ttft_timeout = "60s"')
      .concat('\n[health]\ninterval = "3s"\n'),
  );
  assert.equal(config.backends[0]!.health.deep_interval, 120_000);
  assert.equal(config.backends[0]!.health.interval, 3_000);
  assert.equal(config.backends[1]!.health.deep_interval, 60_000);
  assert.equal(config.routes[0]!.tiers[0]!.context, 8192);
  assert.equal(config.routes[0]!.tiers[1]!.ttft_timeout, 60_000);
});

for (const broken of BROKEN) {
  test(`rejected: ${broken.name}, naming ${broken.path || "the line and column"}`, () => {
    const found = problems(broken.text);
    const p = found.find((x) => x.path === broken.path && x.rule === broken.rule);
    assert.ok(p, `expected a ${broken.rule} problem at "${broken.path}", got ${JSON.stringify(found, null, 1)}`);
    assert.match(p.message, broken.says);
  });
}

test("a syntax error gives line and column", () => {
  const [p] = problems('[daemon]\nlog_level = "info"\nstate_dir = /var\n');
  assert.equal(p?.rule, "syntax");
  assert.equal(p?.line, 3);
  assert.equal(p?.column, 13);
});

test("every problem is listed, not only the first", () => {
  const text = MINIMAL.replace('restart_sec = "10s"', 'restart_sec = "soon"')
    .replace('{ backend = "llamacpp-cpu"', '{ backend = "nope"')
    .replace('kind = "llamacpp"', 'kind = "llama.cpp"')
    .concat('\n[router]\nmax_attempts = 0\nlisten = "0.0.0.0:8181"\n[gpu]\ninterval = 5\n[tyop]\nx = 1\n');
  const paths = problems(text).map((p) => p.path);
  for (const expected of [
    "backend[0].process.restart_sec",
    "backend[1].kind",
    "route[0].tiers[1].backend",
    "router.max_attempts",
    "gpu.interval",
    "tyop",
  ]) {
    assert.ok(paths.includes(expected), `${expected} in ${paths.join(", ")}`);
  }
});

test("secret values are never echoed in problems", () => {
  const text = `${MINIMAL}\n[alerts.smtp]\npassword = "hunter2-very-secret"\n`.replace('gpus = [0]\n', 'gpus = [0]\napi_key = "sk-live-abc"\n');
  const ps = problems(text);
  assert.equal(ps.filter((p) => p.rule === "inline_secret").length, 2);
  const all = JSON.stringify(ps);
  assert.doesNotMatch(all, /hunter2|sk-live/);
});

test("tokens in a backend's environment must come from files", () => {
  const ps = problems(minimalWith('restart_sec = "10s"', 'restart_sec = "10s"\n  env = { HF_TOKEN = "hf_abc", CUDA_VISIBLE_DEVICES = "0" }'));
  assert.deepEqual(
    ps.map((p) => [p.path, p.rule]),
    [["backend[0].process.env.HF_TOKEN", "inline_secret"]],
  );
  assert.match(ps[0]!.message, /secret_env = \{ HF_TOKEN = /);
  assert.doesNotMatch(JSON.stringify(ps), /hf_abc/);
  valid(minimalWith('restart_sec = "10s"', 'restart_sec = "10s"\n  secret_env = { HF_TOKEN = "/etc/llmsup/hf-token" }'));
});

test("duplicate backend names and duplicate route models are rejected", () => {
  const dupName = MINIMAL.replace('name = "llamacpp-cpu"', 'name = "vllm-gpu0"');
  assert.ok(problems(dupName).some((p) => p.path === "backend[1].name" && p.rule === "duplicate"));
  const dupRoute = `${MINIMAL}\n[[route]]\nmodel = "llama"\ntiers = [{ backend = "vllm-gpu0", model = "x" }]\n`;
  assert.ok(problems(dupRoute).some((p) => p.path === "route[1].model" && p.rule === "duplicate"));
});

test("two managed backends on one port are rejected, local host names included", () => {
  const text = MINIMAL.replace('url = "http://127.0.0.1:8081"', 'url = "http://localhost:8000"');
  const p = problems(text).find((x) => x.rule === "port_conflict");
  assert.equal(p?.path, "backend[1].url");
  assert.match(p!.message, /backend\[0\] \("vllm-gpu0"\)/);
  // The router's own listener counts too.
  assert.ok(problems(`${MINIMAL}\n[router]\nlisten = "127.0.0.1:8000"\n`).some((x) => x.rule === "port_conflict"));
});

test("a remote kind cannot have a process", () => {
  const text = MINIMAL.replace('kind = "llamacpp"', 'kind = "openai"');
  assert.ok(problems(text).some((p) => p.path === "backend[1].process" && p.rule === "remote_kind"));
});

test("a listener other machines can reach needs API keys", () => {
  assert.ok(problems(`${MINIMAL}\n[router]\nlisten = "0.0.0.0:8181"\n`).some((p) => p.path === "router.listen" && p.rule === "exposed_without_keys"));
  valid(`${MINIMAL}\n[router]\nlisten = "0.0.0.0:8181"\napi_keys_file = "/etc/llmsup/api-keys"\n`);
  valid(`${MINIMAL}\n[router]\nlisten = ""\n`);
});

test("a single [backend] table instead of [[backend]] is explained", () => {
  const ps = problems('[backend]\nname = "x"\nkind = "vllm"\nurl = "http://127.0.0.1:1"\n');
  assert.ok(ps.some((p) => p.path === "backend" && /\[\[backend\]\]/.test(p.message)));
});

test("cron expressions are checked", () => {
  assert.ok(problems(`${MINIMAL}\n[schedule]\ndigest = "every morning"\n`).some((p) => p.path === "schedule.digest"));
  valid(`${MINIMAL}\n[schedule]\ndigest = ""\ndrill = "0 3 * * 1"\n`);
});

test("restart_max_delay below restart_sec is rejected", () => {
  const ps = problems(minimalWith('restart_sec = "10s"', 'restart_sec = "10s"\n  restart_max_delay = "5s"'));
  assert.ok(ps.some((p) => p.path === "backend[0].process.restart_max_delay"));
});

test("loadConfigFile reports an unreadable file and every problem of a bad one", async (t) => {
  const dir = tempDir(t);
  await assert.rejects(loadConfigFile(path.join(dir, "missing.toml")), (e: unknown) => e instanceof LlmsupError && e.code === "LLMSUP_E_CONFIG_UNREADABLE" && e.exitCode === 78);
  const file = path.join(dir, "bad.toml");
  writeFileSync(file, BROKEN.find((b) => b.rule === "duration")!.text);
  await assert.rejects(loadConfigFile(file), (e: unknown) => e instanceof LlmsupError && e.code === "LLMSUP_E_CONFIG_INVALID" && Array.isArray(e.details.problems));
  writeFileSync(file, "x = [");
  await assert.rejects(loadConfigFile(file), (e: unknown) => e instanceof LlmsupError && e.code === "LLMSUP_E_CONFIG_SYNTAX");
  assert.ok(readFileSync(file, "utf8").length > 0);
});
