/** The shipped Prometheus and Alertmanager files pass their own tools' checks (promtool, amtool), and the checks bite on a broken copy. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { tempDir } from "../helpers/tmp.ts";
import { DEPLOY, runTool, which } from "./helpers.ts";

const RULES = path.join(DEPLOY, "prometheus/llmsup-rules.yml");
const RULE_TESTS = path.join(DEPLOY, "prometheus/llmsup-rules.test.yml");

/** The alert names the rules file defines. */
function alertNames(text: string): string[] {
  return [...text.matchAll(/^\s*- alert: (\w+)$/gm)].map((m) => m[1]!);
}

test("promtool check rules accepts llmsup-rules.yml, and refuses a copy with a broken expression", async (t) => {
  const promtool = which("promtool");
  if (!promtool) return t.skip("promtool not installed: apt-get install prometheus");
  const ok = await runTool(promtool, ["check", "rules", RULES]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, new RegExp(`SUCCESS: ${alertNames(readFileSync(RULES, "utf8")).length} rules found`));

  const dir = tempDir(t);
  const broken = path.join(dir, "llmsup-rules.yml");
  writeFileSync(broken, readFileSync(RULES, "utf8").replace("expr: llmsup_route_on_fallback == 1", "expr: llmsup_route_on_fallback == == 1"));
  const bad = await runTool(promtool, ["check", "rules", broken]);
  assert.notEqual(bad.code, 0, "a rule with a syntax error is refused");
  assert.match(bad.stdout + bad.stderr, /parse error|unexpected/i);
});

test("promtool test rules: every alert fires and stays quiet as llmsup-rules.test.yml expects, and a wrong expectation fails", async (t) => {
  const promtool = which("promtool");
  if (!promtool) return t.skip("promtool not installed: apt-get install prometheus");
  const ok = await runTool(promtool, ["test", "rules", RULE_TESTS], { cwd: path.dirname(RULE_TESTS) });
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /SUCCESS/);

  // Each alert is covered both ways: an eval with it expected, and one with none.
  const tests = readFileSync(RULE_TESTS, "utf8");
  for (const name of alertNames(readFileSync(RULES, "utf8"))) {
    const cases = [...tests.matchAll(new RegExp(`alertname: ${name}\\n\\s*exp_alerts:( \\[\\])?`, "g"))];
    assert.ok(cases.some((c) => c[1] === undefined), `${name}: a case where it fires`);
    assert.ok(cases.some((c) => c[1] === " []"), `${name}: a case where it does not fire`);
  }

  const dir = tempDir(t);
  copyFileSync(RULES, path.join(dir, "llmsup-rules.yml"));
  // The rules changed under the tests: a fatal backend made a mere warning.
  writeFileSync(path.join(dir, "llmsup-rules.yml"), readFileSync(RULES, "utf8").replace(/(- alert: LlmsupBackendFatal\n(?:.*\n)*?\s*severity: )critical/, "$1warning"));
  writeFileSync(path.join(dir, "llmsup-rules.test.yml"), tests);
  const bad = await runTool(promtool, ["test", "rules", "llmsup-rules.test.yml"], { cwd: dir });
  assert.notEqual(bad.code, 0, "a rule that no longer matches its test fails");
  assert.match(bad.stdout + bad.stderr, /LlmsupBackendFatal/);
});

test("promtool check config accepts prometheus.yml (its rule file and key file in place)", async (t) => {
  const promtool = which("promtool");
  if (!promtool) return t.skip("promtool not installed: apt-get install prometheus");
  const dir = tempDir(t);
  writeFileSync(path.join(dir, "metrics.key"), "sk-metrics-key\n", { mode: 0o600 });
  const text = readFileSync(path.join(DEPLOY, "prometheus/prometheus.yml"), "utf8")
    .replace("/etc/prometheus/rules/llmsup-rules.yml", RULES)
    .replace("/etc/prometheus/llmsup-metrics.key", path.join(dir, "metrics.key"))
    .replace("/etc/prometheus/targets/", `${dir}/`);
  writeFileSync(path.join(dir, "prometheus.yml"), text);
  const ok = await runTool(promtool, ["check", "config", path.join(dir, "prometheus.yml")]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /is valid prometheus config file/);
  assert.match(text, /credentials_file: /, "the example sends the metrics key from a file");
  assert.match(text, /file_sd_configs:/);
  assert.match(text, /static_configs:/);
});

test("amtool accepts alertmanager.yml; critical and warning alerts reach their receivers", async (t) => {
  const amtool = which("amtool");
  if (!amtool) return t.skip("amtool not installed: apt-get install prometheus-alertmanager");
  const config = path.join(DEPLOY, "alertmanager/alertmanager.yml");
  const ok = await runTool(amtool, ["check-config", config]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /3 inhibit rules/);
  const route = async (...labels: string[]) => (await runTool(amtool, ["config", "routes", "test", `--config.file=${config}`, ...labels])).stdout.trim();
  assert.equal(await route("alertname=LlmsupBackendFatal", "severity=critical", "box=gpu-01"), "llmsup-critical");
  assert.equal(await route("alertname=LlmsupRouteOnFallback", "severity=warning", "box=gpu-01", "route=llama"), "llmsup-warning");
});
