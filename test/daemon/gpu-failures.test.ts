/**
 * A driver that stops answering, seen through the whole chain: the simulated
 * nvidia-smi in loop mode, the daemon, the route and a real SMTP server. One
 * state change is one mail each way, on one GPU and on four, and the route
 * never "recovers" onto a GPU that is still gone.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { readFileSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { writeWrapper } from "../../src/sim/gpu/cli.ts";
import { defaultGpuState, updateGpuState, writeGpuState, type SimSmiFailure } from "../../src/sim/gpu/state.ts";
import { SMTP_PASSWORD, SMTP_USER, startSmtp } from "../alerts/helpers.ts";
import { startDaemon, status, waitStatus, writeDaemonConfig } from "../helpers/daemon.ts";

async function box(t: Parameters<typeof startSmtp>[0], gpus: number) {
  const smtp = await startSmtp(t);
  const files = await writeDaemonConfig(
    t,
    [
      { name: "primary", kind: "llamacpp", extra: "gpus = [0]", args: ["--gpus", "0"] },
      { name: "fallback", kind: "llamacpp" },
    ],
    `[[route]]\nmodel = "llama"\ntiers = [{ backend = "primary", model = "m" }, { backend = "fallback", model = "m" }]\n`,
    `[alerts]\nenabled = true\nfrom = "llmsup@box.example.com"\nto = ["oncall@example.com"]\n[alerts.smtp]\nhost = "127.0.0.1"\nport = ${smtp.port}\nsecurity = "none"\nuser = "${SMTP_USER}"\npassword_env = "TEST_SMTP_PASSWORD"\ntimeout = "3s"\n`,
  );
  const state = path.join(files.dir, "gpus.json");
  await writeGpuState(state, defaultGpuState(gpus));
  const smi = await writeWrapper(state, path.join(files.dir, "nvidia-smi"));
  writeFileSync(files.config, readFileSync(files.config, "utf8").replace("[gpu]\nenabled = false\n", `[gpu]\nnvidia_smi = "${smi}"\ninterval = "200ms"\ndeadline = "3s"\nkernel_log = "off"\nsustain_samples = 1\nclear_samples = 1\n`));
  const d = await startDaemon(t, files, { TEST_SMTP_PASSWORD: SMTP_PASSWORD, LLMSUP_SIM_GPU_STATE: state });
  await waitStatus(d, "ready on tier 0 with GPUs sampled", (s, code) => code === 0 && s.backends.every((b) => b.state === "ready") && s.router.routes[0]!.serving_tier === 0);
  await smtp.waitFor(1, 10_000); // "llmsup started"
  return { smtp, d, state };
}

for (const gpus of [1, 4]) {
  for (const failure of ["driver_not_loaded", "gpu_lost"] as const satisfies readonly SimSmiFailure[]) {
    test(`${failure} on a ${gpus}-GPU box: one fault mail, the route stays off the GPU while it lasts, one all-clear after`, async (t) => {
      const { smtp, d, state } = await box(t, gpus);
      const before = smtp.mails.length;
      await updateGpuState(state, (s) => {
        s.failure = failure;
        s.failure_bus_id = s.gpus[0]!.pci_bus_id;
      });
      await waitStatus(d, "off the GPU tier", (s) => s.router.routes[0]!.serving_tier === 1);
      // Many re-probes (interval 200 ms, growing pauses) while the failure lasts: the route must stay off tier 0.
      for (let i = 0; i < 12; i++) {
        await sleep(250);
        const s = await status(d);
        assert.equal(s.json.router.routes[0]!.serving_tier, 1, `back on the dead GPU after ${(i + 1) * 250} ms`);
        assert.notEqual(s.code, 0, "status says OK while the GPU is gone");
      }
      const human = await d.cli("status");
      assert.match(human.stdout, /nvidia-smi failing — readings below are \S+ old/, "old readings are not shown as now");
      await updateGpuState(state, (s) => {
        s.failure = null;
      });
      await waitStatus(d, "back on tier 0", (s, code) => s.router.routes[0]!.serving_tier === 0 && code === 0, 20_000);
      await sleep(1_000);
      const subjects = smtp.mails.slice(before).map((m) => m.subject);
      // About the GPU: a fault (or, for a lost GPU, the ladder's REBOOT REQUIRED), then its all-clear.
      const gpuMails = subjects.filter((s) => /GPU/.test(s));
      const bad = gpuMails.filter((s) => !/cleared|recovered/.test(s));
      const good = gpuMails.filter((s) => /cleared|recovered/.test(s));
      assert.equal(bad.length, 1, `one mail when it goes:\n${subjects.join("\n")}`);
      assert.match(bad[0]!, failure === "driver_not_loaded" ? /driver_not_loaded, tiers DOWN/ : /GPU 0: REBOOT REQUIRED/);
      assert.equal(good.length, 1, `one all-clear:\n${subjects.join("\n")}`);
      assert.equal(subjects.filter((s) => /failed over/.test(s)).length, 1, subjects.join("\n"));
      assert.equal(subjects.filter((s) => /llama recovered on tier 0/.test(s)).length, 1, subjects.join("\n"));
    });
  }
}
