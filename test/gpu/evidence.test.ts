/** Event faults clear on evidence: by time only what an application caused; transient ones when the GPU reads healthy; the rest only on evidence of a reset. */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { SmiFailure } from "../../src/gpu/types.ts";
import { BUS, Box, CONFIG, gpu } from "./fault-box.ts";

const XID_79 = "NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.";
const XID_48 = "NVRM: Xid (PCI:0000:3b:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE) has been detected";
const XID_119 = "NVRM: Xid (PCI:0000:3b:00): 119, pid='<unknown>', name=<unknown>, Timeout after 6s of waiting for RPC response from GPU1 GSP!";
const LOST: SmiFailure = { kind: "gpu_lost", code: "LLMSUP_E_GPU_LOST", busId: BUS[1], message: "Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost. Reboot the system to recover this GPU" };

/** A box that has seen both GPUs once. */
function box(): Box {
  const b = new Box();
  b.samples(1, gpu(0), gpu(1));
  return b;
}

test("every fault says what cures it: XIDs from their catalog class, the driver's recovery action, reset and reboot flags", () => {
  const b = box();
  b.kernel(XID_79);
  b.kernel(XID_48);
  b.kernel("NVRM: Xid (PCI:0000:1b:00): 94, pid=1, name=x, Contained: SM (0x1)");
  b.samples(1, gpu(0, { recoveryAction: "Drain and Reset", retiredPagesPending: true }), { index: 1, reasons: {}, requiresReset: true });
  b.feed({ type: "remapped", rows: [{ gpuUuid: "GPU-0", pending: true, failure: true }] });
  b.feed({ type: "failure", failure: { ...LOST, busId: BUS[0] } });
  const recovery = Object.fromEntries(b.raised.map((f) => [f.id, f.recovery]));
  assert.deepEqual(recovery, {
    "xid_fallen_off_bus@gpu1": "reboot",
    "xid_ecc_uncontained@gpu1": "reset_gpu",
    "xid_contained_memory@gpu0": "restart_app",
    "retired_pages_pending@gpu0": "reset_gpu",
    "recovery_action@gpu0": "reset_gpu",
    "requires_reset@gpu1": "reset_gpu",
    "row_remap_pending@gpu0": "reset_gpu",
    "row_remap_failure@gpu0": "reset_gpu",
    "gpu_lost@gpu0": "reboot",
  });
  const reboot = new Box();
  reboot.samples(1, gpu(0, { recoveryAction: "Reboot" }));
  reboot.samples(3, gpu(0, { eccUncorrected: 0 }), gpu(1));
  reboot.samples(1, gpu(0, { recoveryAction: "Reboot", eccUncorrected: 2 }));
  assert.deepEqual(
    reboot.raised.map((f) => [f.id, f.recovery]),
    [
      ["recovery_action@gpu0", "reboot"],
      ["recovery_action@gpu0", "reboot"],
      ["ecc_uncorrected@gpu0", "reset_gpu"],
    ],
  );
});

test("XID 79 is not cleared by time: not at +60 s, not far past event_hold, not by healthy-looking samples", () => {
  const b = box();
  b.kernel(XID_79);
  b.feed({ type: "tick" }, 60_000);
  b.feed({ type: "tick" }, 10 * CONFIG.eventHoldMs);
  b.samples(5, gpu(0), gpu(1));
  b.feed({ type: "tick" }, 100 * CONFIG.eventHoldMs);
  assert.deepEqual(b.active(), ["xid_fallen_off_bus@gpu1"]);
  assert.deepEqual(b.cleared.map((f) => f.id), []);
});

test("XID 48 and ECC rises wait for a reset: cleared when the driver's recovery action goes back to None", () => {
  const b = box();
  b.kernel(XID_48);
  b.samples(1, gpu(0), gpu(1, { eccUncorrected: 1, recoveryAction: "Reset" }));
  b.feed({ type: "tick" }, 2 * CONFIG.eventHoldMs);
  assert.deepEqual(b.active(), ["ecc_uncorrected@gpu1", "recovery_action@gpu1", "xid_ecc_uncontained@gpu1"]);
  b.samples(1, gpu(0), gpu(1, { eccUncorrected: 1, recoveryAction: "None" }));
  assert.deepEqual(
    b.cleared.map((f) => [f.id, f.clearReason]),
    [
      ["xid_ecc_uncontained@gpu1", `the GPU was reset (the driver's recovery action went back from "Reset" to None)`],
      ["ecc_uncorrected@gpu1", `the GPU was reset (the driver's recovery action went back from "Reset" to None)`],
    ],
  );
  assert.deepEqual(b.active(), ["recovery_action@gpu1"], "the recovery-action fault itself clears after clear_samples readings of None");
  b.samples(2, gpu(0), gpu(1, { eccUncorrected: 1 }));
  assert.deepEqual(b.active(), []);
});

test("a recovery action that stayed None is no evidence", () => {
  const b = box();
  b.kernel(XID_119);
  b.samples(10, gpu(0), gpu(1, { recoveryAction: "None" }));
  assert.deepEqual(b.active(), ["xid_driver_timeout@gpu1"]);
});

test("re-enumeration: a GPU nvidia-smi saw lost (or missing) answering again clears its XID 79", () => {
  const b = box();
  b.kernel(XID_79);
  b.feed({ type: "failure", failure: LOST });
  b.feed({ type: "failure", failure: LOST }, 60_000);
  assert.deepEqual(b.active(), ["gpu_lost@gpu1", "xid_fallen_off_bus@gpu1"]);
  b.samples(1, gpu(0), gpu(1));
  assert.deepEqual(
    b.cleared.map((f) => [f.id, f.clearReason]),
    [["xid_fallen_off_bus@gpu1", "the GPU was reset (GPU 1 answers nvidia-smi again after it was lost or missing (re-enumerated))"]],
  );
  b.samples(2, gpu(0), gpu(1));
  assert.deepEqual(b.active(), [], "gpu_lost clears after clear_samples");

  const missing = box();
  missing.kernel(XID_119);
  missing.samples(1, gpu(0));
  assert.deepEqual(missing.active(), ["xid_driver_timeout@gpu1"], "missing from one sample: not yet back");
  missing.samples(1, gpu(0), gpu(1));
  assert.deepEqual(missing.active(), [], "missing, then answering: re-enumerated");

  const driver = box();
  driver.kernel(XID_48);
  driver.feed({ type: "failure", failure: { kind: "driver_not_loaded", code: "LLMSUP_E_GPU_DRIVER_NOT_LOADED", message: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." } });
  driver.samples(1, gpu(0), gpu(1));
  assert.deepEqual(driver.active(), ["driver_not_loaded@all"], "the driver came back: every GPU was re-initialised");
});

test("uncorrected ECC counters going back down are evidence of a reset", () => {
  const b = box();
  b.samples(1, gpu(0), gpu(1, { eccUncorrected: 3 }));
  b.kernel(XID_48);
  b.samples(1, gpu(0), gpu(1, { eccUncorrected: 5 }));
  b.feed({ type: "tick" }, 3 * CONFIG.eventHoldMs);
  assert.deepEqual(b.active(), ["ecc_uncorrected@gpu1", "xid_ecc_uncontained@gpu1"], "no clear by time");
  b.samples(1, gpu(0), gpu(1, { eccUncorrected: 0 }));
  assert.deepEqual(b.active(), []);
  assert.ok(b.cleared.every((f) => f.clearReason === "the GPU was reset (uncorrected ECC errors went back from 5 to 0)"));
});

test("a reset llmsup did clears the GPU's event faults, with its reason; the counters start afresh", () => {
  const b = box();
  b.kernel(XID_79);
  b.kernel(XID_48);
  b.kernel("NVRM: Xid (PCI:0000:1b:00): 62, pid=1, name=x, halt");
  b.samples(1, gpu(0), gpu(1, { eccUncorrected: 4 }));
  b.feed({ type: "reset", gpu: 1, by: "llmsup", reason: "nvidia-smi -r -i 1 after XID 79" });
  assert.deepEqual(
    b.cleared.map((f) => [f.id, f.clearReason]),
    [
      ["xid_fallen_off_bus@gpu1", "reset by llmsup: nvidia-smi -r -i 1 after XID 79"],
      ["xid_ecc_uncontained@gpu1", "reset by llmsup: nvidia-smi -r -i 1 after XID 79"],
      ["ecc_uncorrected@gpu1", "reset by llmsup: nvidia-smi -r -i 1 after XID 79"],
    ],
  );
  assert.deepEqual(b.active(), ["xid_microcontroller_halt@gpu0"], "only that GPU");
  b.kernel(XID_119);
  b.samples(2, gpu(0), gpu(1, { eccUncorrected: 0 }));
  assert.deepEqual(b.active(), ["xid_driver_timeout@gpu1", "xid_microcontroller_halt@gpu0"], "the counter zeroed by that reset is no evidence of another one after the new XID");
  b.feed({ type: "reset", gpu: null, by: "llmsup" });
  assert.deepEqual(b.cleared.at(-1)?.clearReason, "reset by llmsup");
  assert.deepEqual(b.active(), []);
});

test("the operator clears a GPU's event faults with a reason; condition faults stay until nvidia-smi reads them gone", () => {
  const b = box();
  b.kernel(XID_79);
  b.samples(1, gpu(0), gpu(1, { requiresReset: true }));
  const r = b.feed({ type: "reset", gpu: 1, by: "operator", reason: "reseated the card" });
  assert.deepEqual(
    r.cleared.map((f) => [f.id, f.clearReason]),
    [["xid_fallen_off_bus@gpu1", "cleared by the operator: reseated the card"]],
  );
  assert.deepEqual(b.active(), ["requires_reset@gpu1"]);
  assert.equal(b.feed({ type: "reset", gpu: 1, by: "operator", reason: " " }).cleared.length, 0, "nothing left to clear");
  const anon = box();
  anon.kernel(XID_79);
  assert.equal(anon.feed({ type: "reset", gpu: null, by: "operator" }).cleared[0]?.clearReason, "cleared by the operator: no reason given");
});

test("an XID on a GPU known only by its bus id is cleared by evidence about that GPU", () => {
  const b = new Box();
  b.kernel(XID_79);
  assert.deepEqual(b.active(), ["xid_fallen_off_bus@00000000:3B:00.0"]);
  b.samples(1, gpu(0), gpu(1));
  b.feed({ type: "reset", gpu: 1, by: "operator", reason: "swapped" });
  assert.deepEqual(b.active(), []);
});

test("application XIDs still clear by time (event_hold after the last repeat), and on a reset", () => {
  const b = new Box({ ...CONFIG, eventHoldMs: 10 * 60_000 });
  b.samples(1, gpu(0), gpu(1));
  b.kernel("NVRM: Xid (PCI:0000:1b:00): 94, pid=1, name=x, Contained: SM (0x1)");
  b.feed({ type: "tick" }, 9 * 60_000);
  b.kernel("NVRM: Xid (PCI:0000:1b:00): 94, pid=1, name=x, Contained: SM (0x1)");
  b.feed({ type: "tick" }, 9 * 60_000);
  assert.deepEqual(b.active(), ["xid_contained_memory@gpu0"], "the repeat restarted the hold");
  b.feed({ type: "tick" }, 60_000);
  assert.deepEqual(b.cleared.map((f) => [f.id, f.clearReason]), [["xid_contained_memory@gpu0", "no repeat for 10m"]]);

  for (let i = 0; i < 3; i++) b.kernel("NVRM: Xid (PCI:0000:3b:00): 13, pid=7, name=python3, Graphics SM Warp Exception");
  assert.deepEqual(b.active(), ["xid_app_error@gpu1"]);
  b.samples(5, gpu(0), gpu(1));
  assert.deepEqual(b.active(), ["xid_app_error@gpu1"], "a healthy GPU does not end what the app keeps doing");
  b.feed({ type: "reset", gpu: 1, by: "llmsup" });
  assert.deepEqual(b.active(), []);
});

test("a transient XID (45 alone) clears at the first healthy sample of its GPU after it, not while a condition fault is on it", () => {
  const b = box();
  b.kernel("NVRM: Xid (PCI:0000:1b:00): 45, pid=9, name=python3, Ch 00000010");
  b.feed({ type: "tick" }, 31_000);
  assert.deepEqual(b.raised.map((f) => [f.id, f.recovery]), [["xid_cleanup@gpu0", "none"]]);
  b.samples(1, gpu(0, { requiresReset: true }), gpu(1));
  assert.deepEqual(b.active(), ["requires_reset@gpu0", "xid_cleanup@gpu0"], "not healthy: a condition fault is on it");
  b.samples(1, gpu(0), gpu(1));
  b.samples(1, gpu(0, { temperatureC: 900 }), gpu(1));
  assert.deepEqual(b.active(), ["requires_reset@gpu0", "xid_cleanup@gpu0"]);
  b.samples(1, gpu(0), gpu(1));
  assert.deepEqual(
    b.cleared.map((f) => [f.id, f.clearReason]),
    [
      ["requires_reset@gpu0", "not seen for 3 samples"],
      ["xid_cleanup@gpu0", "nvidia-smi shows GPU 0 healthy again"],
    ],
  );
});
