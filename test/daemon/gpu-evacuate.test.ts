/**
 * A GPU fault that takes a backend down moves its streams off it at once: `llmsup run` with a
 * simulated nvidia-smi and simulated backends, the kernel log read through its journal reader;
 * an XID 79 for the backend's GPU and every stream in flight on it is finished by the next tier.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { Agent, fetch as undiciFetch } from "undici";
import { canonicalTokens, chatKey } from "../../src/sim/backend/answer.ts";
import { writeWrapper } from "../../src/sim/gpu/cli.ts";
import { defaultGpuState, writeGpuState } from "../../src/sim/gpu/state.ts";
import { startDaemon, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";
import { journalStandIn } from "../helpers/journal.ts";
import { consume, recordingClient } from "../helpers/recording-client.ts";
import { waitUntil } from "../helpers/wait.ts";

const question = (i: number) => `Stream ${i}: what does llmsup do when a GPU falls off the bus?`;
const answerOf = (q: string) => canonicalTokens(chatKey([{ role: "user", content: q }])).join("");

test("an XID 79 for a backend's GPU moves every stream in flight on it to the next tier at once: one complete answer each, 0 client errors, the seam and the log say why", async (t) => {
  // gpu0 paces its tokens (20–39 per answer at 4/s): the streams are mid-answer when its GPU falls off the bus.
  const files = await writeDaemonConfig(
    t,
    [
      { name: "gpu0", kind: "llamacpp", args: ["--model", "big", "--token-rate", 4, "--parallel", 8, "--gpus", "0"], extra: "gpus = [0]" },
      { name: "cpu", kind: "llamacpp", args: ["--model", "small", "--parallel", 8] },
    ],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "gpu0", model = "big" }, { backend = "cpu", model = "small" }]\n`,
  );
  const state = path.join(files.dir, "gpus.json");
  await writeGpuState(state, defaultGpuState(2));
  const smi = await writeWrapper(state, path.join(files.dir, "nvidia-smi"));
  writeFileSync(
    files.config,
    readFileSync(files.config, "utf8")
      .replace("[gpu]\nenabled = false\n", `[gpu]\nnvidia_smi = "${smi}"\ninterval = "300ms"\ndeadline = "3s"\nkernel_log = "journal"\nsustain_samples = 1\nclear_samples = 1\n`)
      .replace(`listen = ""\n`, `listen = ""\nhedge_after = "off"\n`),
  );
  const kernelLog = path.join(files.dir, "kern.log");
  writeFileSync(kernelLog, "");
  const bin = journalStandIn(files.dir, kernelLog);
  const d = await startDaemon(t, files, { PATH: `${bin}${path.delimiter}${process.env.PATH ?? ""}`, LLMSUP_SIM_GPU_STATE: state });
  await waitStatus(d, "both backends ready on tier 0, GPUs sampled, the kernel log followed", (s) => {
    const x = s as unknown as { gpus: { gpus: unknown[] } | null; gpu_monitor: { kernel_log: { source: string } | null } | null };
    return s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0 && x.gpus?.gpus.length === 2 && x.gpu_monitor?.kernel_log?.source === "journal";
  });

  // The official client on the routing socket, keeping each response's raw SSE (the seam is a comment, which the client drops).
  const agent = new Agent({ connect: { socketPath: files.socket } });
  t.after(() => agent.close());
  const { client, raw } = recordingClient((url, init) => undiciFetch(url, { ...(init as object), dispatcher: agent }));

  const qs = [0, 1, 2].map(question);
  const reads = await Promise.all(
    qs.map(async (q) => consume(await client.chat.completions.create({ model: "llama", messages: [{ role: "user", content: q }], stream: true }))),
  );
  await waitUntil("every stream past its first tokens on gpu0", () => reads.every((r) => r.read.chunks >= 2 && r.read.lastModel === "big"));

  appendFileSync(kernelLog, "[ 8123.456789] NVRM: Xid (PCI:0000:1b:00): 79, pid=4242, name=llama-server, GPU has fallen off the bus.\n");
  await Promise.all(reads.map((r) => r.done));

  qs.forEach((q, i) => {
    const r = reads[i]!.read;
    assert.equal(r.error, undefined, `stream ${i}: no client error`);
    assert.equal(r.text, answerOf(q), `stream ${i}: one complete answer, continuous across the seam`);
    assert.equal(r.finish, "stop");
    assert.equal(r.lastModel, "small", `stream ${i}: finished by the next tier, not by gpu0`);
  });
  for (const q of qs) {
    const body = await raw.get(q)!;
    assert.match(body, /^: llmsup: the answer continues on tier 1 \(cpu\), moved off tier 0: gpu0 went down: GPU 0.*XID 79/m, "the seam says where and why");
    assert.equal(body.match(/^data: \[DONE\]$/gm)?.length, 1);
  }
  const moved = d
    .stdout()
    .split("\n")
    .filter((l) => l.includes(`"event":"router.evacuated"`))
    .map((l) => JSON.parse(l) as { backend: string; route: string; requests: number; reason: string });
  assert.deepEqual(moved.map((e) => [e.backend, e.route, e.requests]), [["gpu0", "llama", 3]], "one log line: three requests of llama moved off gpu0");
  assert.match(moved[0]!.reason, /XID 79/);
  const after = await waitStatus(d, "gpu0 down for its GPU", (s) => s.backends.some((b) => b.name === "gpu0" && b.health === "down"));
  assert.match((after.json.backends.find((b) => b.name === "gpu0") as unknown as { health_reason: string }).health_reason, /^GPU 0 \(00000000:1B:00\.0\): XID 79: GPU has fallen off the bus/);
  const moves = after.json.events.filter((e) => e.kind === "evacuated");
  assert.equal(moves.length, 1, "the move is one entry of the operator's history");
  assert.match(JSON.stringify(moves[0]), /3 requests in flight moved off gpu0 to the next tier: GPU 0 \(00000000:1B:00\.0\): XID 79/);
});
