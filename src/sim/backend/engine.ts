/**
 * The simulated vLLM EngineCore: a child process of the API server that holds
 * the GPU memory. Like the real one it survives a SIGKILL of its parent,
 * keeping the memory listed, and leaves with its process group.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { gpuHooks } from "./gpu-hooks.ts";
import { DEFAULT_TOTAL_MIB } from "./kinds/common.ts";
import { VLLM, vllmFreeMemoryLines, type EngineOptions } from "./kinds/vllm.ts";
import { readGpuState } from "../gpu/state.ts";

/** How long an orphaned engine lingers before giving up, so stray simulators do not live forever. */
const ORPHAN_LIFETIME_MS = 10 * 60_000;

export async function runSimEngine(optionsJson: string): Promise<number> {
  const o = JSON.parse(optionsJson) as EngineOptions;
  const say = (lines: readonly string[]) => lines.forEach((l) => process.stderr.write(`(EngineCore_DP0 pid=${process.pid}) ${l}\n`));
  const hooks = gpuHooks(o.gpuState, o.gpus, "VLLM::EngineCore");
  process.title = "VLLM::EngineCore";
  let held = false;

  process.on("SIGTERM", () => {
    void (async () => {
      if (held) await hooks?.hold(0).catch(() => undefined);
      process.exit(0);
    })();
  });
  process.on("SIGINT", () => undefined);
  process.on("disconnect", () => {
    // The API server is gone. The real engine can linger, keeping the GPU memory.
    setTimeout(() => process.exit(1), ORPHAN_LIFETIME_MS).unref();
  });
  let wantMib = 0;
  process.on("message", (m: { type?: string; cpu?: boolean }) => {
    if (m?.type === "placement" && hooks) {
      // The model moves to the CPU (its memory is dropped) or back onto the GPU.
      held = m.cpu !== true && wantMib > 0;
      void hooks.hold(held ? wantMib : 0).catch(() => undefined);
    }
    if (m?.type === "oom") {
      void (async () => {
        const total = o.gpuState ? ((await readGpuState(o.gpuState)).gpus.find((g) => g.index === o.gpus[0])?.memory_total_mib ?? DEFAULT_TOTAL_MIB) : DEFAULT_TOTAL_MIB;
        say(VLLM.oomAtRuntimeLines(o.gpus[0] ?? 0, total));
        process.exit(1);
      })();
    }
  });
  setInterval(() => undefined, 1 << 30);

  await sleep(o.loadMs);
  if (hooks && o.onCpu) {
    say(["INFO [cpu_worker.py:61] Loading the model on the CPU: no GPU memory is used."]);
    wantMib = Math.round((await hooks.totalMib()) * o.utilization);
  } else if (hooks) {
    const total = await hooks.totalMib();
    const want = (wantMib = Math.round(total * o.utilization));
    const short = await hooks.checkRoom(want);
    if (short) {
      say(vllmFreeMemoryLines(short.freeMib, short.totalMib, o.utilization));
      process.exit(1);
    }
    if (o.oomAtLoad) {
      say(VLLM.oomAtLoadLines(o.gpus[0] ?? 0, want, total - want, total, o.model));
      process.exit(1);
    }
    await hooks.hold(want);
    held = true;
  } else if (o.oomAtLoad) {
    say(VLLM.oomAtLoadLines(0, 73_000, 8_000, 81_559, o.model));
    process.exit(1);
  }
  process.send?.({ type: "ready" });
  return new Promise<number>(() => undefined);
}
