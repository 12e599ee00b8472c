/** Whether a process an earlier llmsup left running may be adopted: the launch record, its hash and the verdict. Pure. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { adoptionVerdict, launchHash, parseLaunchRecord, portOf, type LaunchRecord } from "../../src/supervisor/launch.ts";
import { localPort } from "../../src/supervisor/port-guard.ts";
import { testConfig } from "../helpers/supervise.ts";

const backend = (extra = "", url = "http://127.0.0.1:8000") =>
  testConfig("/tmp/llmsup-launch", `[[backend]]\nname = "b"\nkind = "vllm"\nurl = "${url}"\n  [backend.process]\n  command = ["vllm", "serve", "m"]\n  env = { CUDA_VISIBLE_DEVICES = "0" }\n${extra}\n[[route]]\nmodel = "m"\ntiers = [{ backend = "b", model = "m" }]\n`).backends[0]!;

const record = (over: Partial<LaunchRecord> = {}): LaunchRecord => ({ pid: 4242, startTime: 123456, hash: launchHash(backend()), startedAt: Date.UTC(2026, 11, 1), generation: 3, port: 8000, ...over });

test("the launch hash changes with the command, an environment value, the directory, the user and the URL; not with settings that start nothing", () => {
  const base = launchHash(backend());
  assert.equal(launchHash(backend()), base, "stable");
  assert.equal(launchHash(backend(`  stop_timeout = "20s"\n  startup_timeout = "20m"`)), base, "how it is supervised is not how it was started");
  assert.notEqual(launchHash(backend(`  cwd = "/srv"`)), base);
  assert.notEqual(launchHash(backend("", "http://127.0.0.1:8001")), base);
  const changedEnv = testConfig("/tmp/llmsup-launch", `[[backend]]\nname = "b"\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\n  [backend.process]\n  command = ["vllm", "serve", "m"]\n  env = { CUDA_VISIBLE_DEVICES = "1" }\n[[route]]\nmodel = "m"\ntiers = [{ backend = "b", model = "m" }]\n`).backends[0]!;
  assert.notEqual(launchHash(changedEnv), base, "another GPU is another process");
});

test("adoption verdict: the same live process from the same configuration is adopted; a changed one is replaced; a gone or reused pid is nothing to adopt", () => {
  const hash = launchHash(backend());
  assert.deepEqual(adoptionVerdict(record(), 123456, hash), { kind: "adopt", record: record() });
  assert.equal(adoptionVerdict(record(), 123456, "another").kind, "replace");
  assert.deepEqual(adoptionVerdict(record(), undefined, hash), { kind: "none", reason: "pid 4242 is no longer running" });
  assert.deepEqual(adoptionVerdict(record(), 999, hash), { kind: "none", reason: "pid 4242 is now another process" });
  assert.equal(adoptionVerdict(undefined, 123456, hash).kind, "none");
});

test("a launch record read back from state.json is checked field by field", () => {
  assert.deepEqual(parseLaunchRecord(JSON.parse(JSON.stringify(record()))), record());
  assert.equal(parseLaunchRecord({ ...record(), pid: 1 }), undefined, "never pid 1");
  assert.equal(parseLaunchRecord({ ...record(), pid: "4242" }), undefined);
  assert.equal(parseLaunchRecord({ ...record(), startTime: -1 }), undefined);
  assert.equal(parseLaunchRecord(null), undefined);
  const { port: _port, ...noPort } = record();
  assert.deepEqual(parseLaunchRecord(noPort), noPort);
});

test("a backend's port, and whether it is on this machine", () => {
  assert.equal(portOf("http://127.0.0.1:8000/v1"), 8000);
  assert.equal(portOf("https://api.example.com/v1"), 443);
  assert.deepEqual(localPort("http://127.0.0.1:8000"), { port: 8000, host: "127.0.0.1" });
  assert.deepEqual(localPort("http://localhost:11434"), { port: 11434, host: "localhost" });
  assert.deepEqual(localPort("http://[::1]:8080"), { port: 8080, host: "::1" });
  assert.equal(localPort("http://gpu-box-2:8000"), undefined, "another machine's port is not ours to check");
  assert.equal(localPort("not a url"), undefined);
});
