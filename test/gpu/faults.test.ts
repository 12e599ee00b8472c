/** The pure fault evaluator: hysteresis, one fact per cause, clearing when the cause ends. */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { FaultInput } from "../../src/gpu/faults.ts";
import type { SmiFailure } from "../../src/gpu/types.ts";
import { BUS, Box, CONFIG, gpu } from "./fault-box.ts";

const HOT = { reasons: { mask: 0x48, hwSlowdown: true, hwThermalSlowdown: true, swThermalSlowdown: false, hwPowerBrakeSlowdown: false, swPowerCap: false } };

test("one hot sample is a blip; a sustained slowdown is one fault; it clears after clear_samples cool ones", () => {
  const box = new Box();
  box.samples(1, gpu(0), gpu(1));
  box.samples(1, gpu(0, HOT), gpu(1));
  box.samples(1, gpu(0), gpu(1));
  assert.deepEqual(box.raised.map((f) => f.id), [], "a single hot sample is not a fault");

  box.samples(2, gpu(0, HOT), gpu(1));
  assert.deepEqual(box.raised.map((f) => f.id), [], "two in a row are not enough");
  const r = box.feed({ type: "sample", gpus: [gpu(0, HOT), gpu(1)] });
  assert.deepEqual(r.raised.map((f) => [f.id, f.severity]), [["thermal_slowdown@gpu0", "degraded"]]);
  const fault = r.raised[0]!;
  assert.equal(fault.since, box.now - 2_000, "first seen when the run of hot samples began");
  assert.match(fault.reason, /^GPU 0: /);
  assert.match(fault.action, /cooling/);
  assert.equal(fault.busId, BUS[0]);

  box.samples(10, gpu(0, HOT), gpu(1));
  assert.equal(box.raised.length, 1, "raised once, however long it lasts");
  assert.equal(box.state.active.get("thermal_slowdown@gpu0")!.count, 13);

  box.samples(2, gpu(0), gpu(1));
  box.samples(1, gpu(0, HOT), gpu(1));
  box.samples(2, gpu(0), gpu(1));
  assert.deepEqual(box.cleared.map((f) => f.id), [], "a hot blip restarts the clear count");
  box.samples(1, gpu(0), gpu(1));
  assert.deepEqual(box.cleared.map((f) => [f.id, f.clearReason]), [["thermal_slowdown@gpu0", "not seen for 3 samples"]]);
  assert.equal(box.raised.length, 1);
});

test("SW power cap under load is not a fault; power brake and temperature over the limit are", () => {
  const box = new Box();
  const capped = gpu(0, { utilizationPct: 100, reasons: { mask: 0x4, swPowerCap: true, hwSlowdown: false, hwThermalSlowdown: false, swThermalSlowdown: false, hwPowerBrakeSlowdown: false } });
  box.samples(10, capped);
  assert.deepEqual(box.raised.map((f) => f.id), []);

  // Old drivers or missing per-reason fields: the bitmask alone still tells.
  box.samples(3, gpu(0, { temperatureC: 91, reasons: { mask: 0x88 } }));
  assert.deepEqual(box.active(), ["over_temperature@gpu0", "power_brake@gpu0"]);
  assert.match(box.state.active.get("over_temperature@gpu0")!.reason, /91 °C, over the 87 °C limit/);
});

test("unreadable cells change nothing: no reading is neither hot nor cool", () => {
  const box = new Box();
  box.samples(3, gpu(0, HOT));
  assert.deepEqual(box.active(), ["thermal_slowdown@gpu0"]);
  box.samples(5, gpu(0, { reasons: {}, temperatureC: undefined }));
  assert.deepEqual(box.active(), ["thermal_slowdown@gpu0"], "[N/A] does not clear it");
});

test("memory nearly full is sustained like the other readings", () => {
  const box = new Box();
  box.samples(2, gpu(0, { memoryUsedMib: 80_500 }));
  assert.deepEqual(box.raised.map((f) => f.id), []);
  box.samples(1, gpu(0, { memoryUsedMib: 80_500 }));
  assert.deepEqual(box.active(), ["memory_full@gpu0"]);
  box.samples(3, gpu(0, { memoryUsedMib: 40_000 }));
  assert.deepEqual(box.active(), []);
});

test("flags raise at once: requires reset, recovery action (a new action is a new fact), retired pages", () => {
  const box = new Box();
  box.samples(1, gpu(0), { index: 1, reasons: {}, requiresReset: true });
  assert.deepEqual(box.raised.map((f) => [f.id, f.severity]), [["requires_reset@gpu1", "down"]]);
  assert.equal(box.state.gpus.get(1)?.busId, undefined);

  box.samples(1, gpu(0, { recoveryAction: "Drain P2P", retiredPagesPending: true }));
  assert.deepEqual(box.raised.slice(1).map((f) => [f.id, f.severity, f.value]), [
    ["retired_pages_pending@gpu0", "degraded", undefined],
    ["recovery_action@gpu0", "degraded", "Drain P2P"],
  ]);
  box.samples(1, gpu(0, { recoveryAction: "Reboot", retiredPagesPending: true }));
  assert.deepEqual(box.cleared.map((f) => f.value), ["Drain P2P"]);
  assert.deepEqual(box.raised.at(-1)!.value, "Reboot");
  assert.equal(box.raised.at(-1)!.severity, "down");
  assert.match(box.raised.at(-1)!.action, /reboot/);
  box.samples(3, gpu(0), gpu(1));
  assert.deepEqual(box.active(), []);
});

test("uncorrected ECC: the count at start is history; a rise is an event; counters back at zero mean the GPU was reset", () => {
  const box = new Box();
  box.samples(1, gpu(0, { eccUncorrected: 4 }));
  assert.deepEqual(box.raised.map((f) => f.id), []);
  box.samples(1, gpu(0, { eccUncorrected: 6 }));
  assert.deepEqual(box.raised.map((f) => [f.id, f.count]), [["ecc_uncorrected@gpu0", 2]]);
  box.samples(1, gpu(0, { eccUncorrected: 7 }));
  assert.equal(box.raised.length, 1);
  assert.equal(box.state.active.get("ecc_uncorrected@gpu0")!.count, 3);
  box.kernel("NVRM: Xid (PCI:0000:1b:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE) has been detected");
  assert.deepEqual(box.active(), ["ecc_uncorrected@gpu0", "xid_ecc_uncontained@gpu0"]);
  box.samples(1, gpu(0, { eccUncorrected: 0 }));
  assert.deepEqual(box.active(), []);
  assert.ok(box.cleared.every((f) => /the GPU was reset/.test(f.clearReason)));
});

test("whole-command failures: one driver fault at a time; samples clear it after clear_samples", () => {
  const box = new Box();
  const fail = (kind: SmiFailure["kind"], code: SmiFailure["code"], message: string): FaultInput => ({ type: "failure", failure: { kind, code, message } });
  box.samples(1, gpu(0), gpu(1));
  box.feed(fail("driver_not_loaded", "LLMSUP_E_GPU_DRIVER_NOT_LOADED", "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."));
  box.feed(fail("driver_not_loaded", "LLMSUP_E_GPU_DRIVER_NOT_LOADED", "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."));
  assert.deepEqual(box.raised.map((f) => [f.id, f.gpu, f.severity, f.code]), [["driver_not_loaded@all", null, "down", "LLMSUP_E_GPU_DRIVER_NOT_LOADED"]]);

  box.feed({ type: "unresponsive", waitedMs: 15_000 });
  assert.deepEqual(box.cleared.map((f) => [f.id, f.clearReason]), [["driver_not_loaded@all", "superseded by driver_unresponsive"]]);
  assert.deepEqual(box.active(), ["driver_unresponsive@all"]);
  assert.match(box.state.active.get("driver_unresponsive@all")!.reason, /no sample for 15s/);
  box.feed({ type: "unresponsive", waitedMs: 30_000 });
  assert.equal(box.raised.length, 2, "still unresponsive is the same fact");

  box.samples(2, gpu(0), gpu(1));
  assert.deepEqual(box.active(), ["driver_unresponsive@all"]);
  box.samples(1, gpu(0), gpu(1));
  assert.deepEqual(box.active(), []);
});

test("a re-probe that fails the same way is the same fact: no clear, no second raise; only clear_samples samples in a row clear it", () => {
  const box = new Box();
  const driver: FaultInput = { type: "failure", failure: { kind: "driver_not_loaded", code: "LLMSUP_E_GPU_DRIVER_NOT_LOADED", message: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." } };
  box.samples(1, gpu(0));
  for (let i = 0; i < 10; i++) box.feed(driver, 5_000 * 2 ** Math.min(i, 3));
  assert.deepEqual(box.raised.map((f) => f.id), ["driver_not_loaded@all"]);
  assert.deepEqual(box.cleared.map((f) => f.id), []);
  // The driver flickers: a sample or two between failures is not the end of it.
  for (let i = 0; i < 3; i++) {
    box.samples(2, gpu(0));
    box.feed(driver);
  }
  assert.deepEqual(box.cleared.map((f) => f.id), [], "never cleared while it keeps failing");
  assert.equal(box.raised.length, 1);
  box.samples(3, gpu(0));
  assert.deepEqual(box.cleared.map((f) => [f.id, f.clearReason]), [["driver_not_loaded@all", "not seen for 3 samples"]]);
});

test("a lost GPU is down by bus id until nvidia-smi sees it again", () => {
  const box = new Box();
  box.samples(1, gpu(0), gpu(1));
  box.feed({ type: "failure", failure: { kind: "gpu_lost", code: "LLMSUP_E_GPU_LOST", busId: BUS[1], message: "Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost. Reboot the system to recover this GPU" } });
  assert.deepEqual(box.raised.map((f) => [f.id, f.gpu, f.severity]), [["gpu_lost@gpu1", 1, "down"]]);
  assert.match(box.raised[0]!.action, /reboot/);
  box.samples(3, gpu(0), gpu(1));
  assert.deepEqual(box.active(), []);

  // A device-handle error among the rows of a sample.
  box.feed({ type: "sample", gpus: [gpu(1)], failures: [{ kind: "device_error", code: "LLMSUP_E_GPU_DEVICE_ERROR", busId: BUS[0], message: "Unable to determine the device handle for GPU0000:1B:00.0: Unknown Error" }] });
  assert.deepEqual(box.active(), ["device_error@gpu0"]);
});

test("row remapping: pending is degraded, failure is down; both clear when the GPU reports none", () => {
  const box = new Box();
  box.samples(1, gpu(0), gpu(1));
  box.feed({ type: "remapped", rows: [{ gpuUuid: "GPU-0", pending: true, failure: false }, { gpuUuid: "GPU-1", pending: false, failure: true }] });
  assert.deepEqual(box.raised.map((f) => [f.id, f.severity]), [["row_remap_pending@gpu0", "degraded"], ["row_remap_failure@gpu1", "down"]]);
  box.feed({ type: "remapped", rows: [{ gpuUuid: "GPU-0" }, { gpuUuid: "GPU-1" }] });
  assert.deepEqual(box.cleared.map((f) => f.id), [], "[N/A] says nothing");
  for (let i = 0; i < 3; i++) box.feed({ type: "remapped", rows: [{ gpuUuid: "GPU-0", pending: false, failure: false }, { gpuUuid: "GPU-1", pending: false, failure: false }] });
  assert.deepEqual(box.active(), []);
});

test("critical XIDs are faults of their table severity, one per GPU and class however often they repeat", () => {
  const box = new Box();
  box.samples(1, gpu(0), gpu(1));
  const cases: [string, string, string][] = [
    ["NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.", "xid_fallen_off_bus@gpu1", "down"],
    ["NVRM: GPU 0000:3b:00.0: GPU has fallen off the bus.", "xid_fallen_off_bus@gpu1", "down"],
    ["NVRM: Xid (PCI:0000:1b:00): 95, pid=51007, name=ollama, Uncontained: FBHUB. RST: Yes, D-RST: No", "xid_ecc_uncontained@gpu0", "down"],
    ["NVRM: Xid (PCI:0000:1b:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE)", "xid_ecc_uncontained@gpu0", "down"],
    ["NVRM: Xid (PCI:0000:1b:00): 61, pid='<unknown>', name=<unknown>, 0cec(3158) 00000000 00000000", "xid_microcontroller_warning@gpu0", "degraded"],
    ["NVRM: Xid (PCI:0000:1b:00): 62, pid='<unknown>', name=<unknown>, 0cec(3158) 00000000 00000000", "xid_microcontroller_halt@gpu0", "down"],
    ["NVRM: Xid (PCI:0000:1b:00): 63, pid='<unknown>', name=<unknown>, Row Remapper: New row marked for remapping", "xid_row_remap_pending@gpu0", "degraded"],
    ["NVRM: Xid (PCI:0000:1b:00): 64, pid='<unknown>', name=<unknown>, Row Remapper Error", "xid_row_remap_failure@gpu0", "down"],
    ["NVRM: Xid (PCI:0000:1b:00): 74, pid='<unknown>', name=<unknown>, NVLink: fatal error detected on link 3", "xid_nvlink@gpu0", "down"],
    ["NVRM: Xid (PCI:0000:1b:00): 94, pid=48390, name=VLLM::EngineCor, Contained: SM (0x1). RST: No, D-RST: No", "xid_contained_memory@gpu0", "degraded"],
    ["NVRM: Xid (PCI:0000:1b:00): 109, pid=48390, name=VLLM::EngineCor, Ch 00000008, errorString CTX SWITCH TIMEOUT", "xid_driver_timeout@gpu0", "down"],
    ["NVRM: Xid (PCI:0000:1b:00): 119, pid='<unknown>', name=<unknown>, Timeout after 6s of waiting for RPC response from GPU0 GSP!", "xid_driver_timeout@gpu0", "down"],
    ["NVRM: Xid (PCI:0000:1b:00): 120, pid='<unknown>', name=<unknown>, GSP task timeout @ pc:0x4bd36c4, task: 1", "xid_driver_timeout@gpu0", "down"],
  ];
  for (const [line, id, severity] of cases) {
    const r = box.kernel(line);
    assert.equal(r.xid?.disposition, "fault", line);
    assert.equal(box.state.active.get(id)?.severity, severity, line);
  }
  assert.deepEqual(
    box.raised.map((f) => f.id),
    [
      "xid_fallen_off_bus@gpu1",
      "xid_ecc_uncontained@gpu0",
      "xid_microcontroller_warning@gpu0",
      "xid_microcontroller_halt@gpu0",
      "xid_row_remap_pending@gpu0",
      "xid_row_remap_failure@gpu0",
      "xid_nvlink@gpu0",
      "xid_contained_memory@gpu0",
      "xid_driver_timeout@gpu0",
    ],
  );
  assert.equal(box.state.active.get("xid_driver_timeout@gpu0")!.count, 3);
  assert.match(box.state.active.get("xid_contained_memory@gpu0")!.reason, /pid 48390, VLLM::EngineCor/);
});

test("an XID on a GPU nvidia-smi has not named yet is kept by bus id", () => {
  const box = new Box();
  box.kernel("NVRM: Xid (0000:3b:00): 79, GPU has fallen off the bus.");
  assert.deepEqual(box.raised.map((f) => [f.id, f.gpu, f.busId]), [["xid_fallen_off_bus@00000000:3B:00.0", null, "00000000:3B:00.0"]]);
});

test("XIDs 13/31/43 are logged alone and a fault when repeated; 92 is only a trend", () => {
  const box = new Box();
  box.samples(1, gpu(0), gpu(1));
  assert.equal(box.kernel("NVRM: Xid (PCI:0000:3b:00): 13, pid=48213, name=python3, Graphics SM Warp Exception").xid?.disposition, "log");
  assert.equal(box.kernel("NVRM: Xid (0000:3b:00): 31, pid=48213, name=python3, Ch 00000010, intr 10000000. MMU Fault").xid?.disposition, "log");
  assert.deepEqual(box.raised.map((f) => f.id), []);
  const third = box.kernel("NVRM: Xid (0000:3b:00): 43, 0000 0000 00000000");
  assert.equal(third.xid?.disposition, "fault");
  assert.deepEqual(box.raised.map((f) => [f.id, f.severity, f.xid]), [["xid_app_error@gpu1", "degraded", 43]]);
  assert.equal(box.kernel("NVRM: Xid (PCI:0000:1b:00): 92, pid='<unknown>', name=<unknown>, High single-bit ECC error rate").xid?.disposition, "log");
  assert.equal(box.raised.length, 1);

  // Spread out over more than five minutes they never add up.
  const slow = new Box();
  slow.samples(1, gpu(0));
  for (let i = 0; i < 5; i++) slow.kernel("NVRM: Xid (PCI:0000:1b:00): 13, pid=1, name=x, Graphics Exception", 4 * 60_000);
  assert.equal(slow.raised.length, 0);
});

test("XID 45: noise after another XID and in a teardown flood; a fault only when it stays alone", () => {
  const after = new Box();
  after.samples(1, gpu(0));
  after.kernel("NVRM: Xid (PCI:0000:1b:00): 13, pid=1, name=x, Graphics Exception");
  assert.equal(after.kernel("NVRM: Xid (PCI:0000:1b:00): 45, pid=1, name=x, Ch 00000010", 100).xid?.disposition, "noise");
  after.feed({ type: "tick" }, 60_000);
  assert.equal(after.raised.length, 0);

  const flood = new Box();
  flood.samples(1, gpu(0));
  for (let i = 0; i < 50; i++) flood.kernel("NVRM: Xid (PCI:0000:1b:00): 45, pid=9, name=python3, Ch 00000010", 20);
  flood.feed({ type: "tick" }, 60_000);
  assert.equal(flood.raised.length, 0, "a teardown flood is not a fault");

  const alone = new Box();
  alone.samples(1, gpu(0));
  assert.equal(alone.kernel("NVRM: Xid (PCI:0000:1b:00): 45, pid=9, name=python3, Ch 00000010").xid?.disposition, "log");
  alone.feed({ type: "tick" }, 10_000);
  assert.equal(alone.raised.length, 0, "still waiting to see whether it is alone");
  alone.feed({ type: "tick" }, 25_000);
  assert.deepEqual(alone.raised.map((f) => [f.id, f.severity, f.xid]), [["xid_cleanup@gpu0", "degraded", 45]]);
});

test("XID faults are events: an application's clears event_hold after its last repeat; the others when the GPU is said reset", () => {
  const box = new Box({ ...CONFIG, eventHoldMs: 10 * 60_000 });
  box.samples(1, gpu(0), gpu(1));
  box.kernel("NVRM: Xid (PCI:0000:1b:00): 94, pid=1, name=x, Contained: SM (0x1)");
  box.feed({ type: "tick" }, 9 * 60_000);
  box.kernel("NVRM: Xid (PCI:0000:1b:00): 94, pid=1, name=x, Contained: SM (0x1)");
  box.feed({ type: "tick" }, 9 * 60_000);
  assert.deepEqual(box.active(), ["xid_contained_memory@gpu0"], "the repeat restarted the hold");
  box.feed({ type: "tick" }, 60_000);
  assert.deepEqual(box.cleared.map((f) => [f.id, f.clearReason]), [["xid_contained_memory@gpu0", "no repeat for 10m"]]);

  box.kernel("NVRM: Xid (PCI:0000:3b:00): 48, pid=1, name=x, DBE");
  box.kernel("NVRM: Xid (PCI:0000:1b:00): 62, pid=1, name=x, halt");
  box.feed({ type: "reset", gpu: 1, by: "operator" });
  assert.deepEqual(box.active(), ["xid_microcontroller_halt@gpu0"]);
  box.feed({ type: "reset", gpu: null, by: "operator" });
  assert.deepEqual(box.active(), []);
});
