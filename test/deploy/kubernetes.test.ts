/** The Kubernetes DaemonSet example (not run here): its ConfigMap is a configuration llmsup accepts, and it has what llmsup needs from a node. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { runLlmsup } from "../helpers/cli.ts";
import { tempDir } from "../helpers/tmp.ts";
import { DEPLOY } from "./helpers.ts";

const MANIFEST = readFileSync(path.join(DEPLOY, "kubernetes/llmsup-daemonset.yaml"), "utf8");

/** The literal block under `supervisor.toml: |` in the ConfigMap, de-indented. */
function configMapToml(): string {
  const m = /\n( *)supervisor\.toml: \|\n((?:\1 +.*\n|\n)+)/.exec(MANIFEST);
  assert.ok(m, "the ConfigMap carries supervisor.toml");
  const indent = /^( *)/.exec(m[2]!)![1]!.length;
  return m[2]!
    .split("\n")
    .map((l) => l.slice(indent))
    .join("\n");
}

test("the DaemonSet's ConfigMap is a configuration `llmsup check-config --offline` accepts", async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, "supervisor.toml");
  writeFileSync(file, configMapToml());
  const r = await runLlmsup(["check-config", file, "--offline"]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /valid, 2 backends/);
});

test("the DaemonSet has what llmsup needs from a GPU node: NVIDIA runtime and GPUs, the kernel log, host PIDs, state on the host, readiness on /health/ready, scrape annotations", () => {
  for (const [what, re] of [
    ["NVIDIA runtime", /runtimeClassName: nvidia/],
    ["the node's GPUs", /nvidia\.com\/gpu: \d+/],
    ["nvidia-smi in the container", /NVIDIA_DRIVER_CAPABILITIES[\s\S]*?value: compute,utility/],
    ["the kernel log", /mountPath: \/dev\/kmsg/],
    ["host PIDs for adoption", /hostPID: true/],
    ["state on a hostPath", /hostPath: \{ path: \/var\/lib\/llmsup/],
    ["the config from a ConfigMap", /configMap: \{ name: llmsup-config \}/],
    ["readiness on /health/ready", /readinessProbe:\n\s*#.*\n\s*httpGet: \{ path: \/health\/ready, port: http \}/],
    ["scrape annotations", /prometheus\.io\/scrape: "true"[\s\S]*prometheus\.io\/path: \/metrics/],
  ] as const) {
    assert.match(MANIFEST, re, what);
  }
});
