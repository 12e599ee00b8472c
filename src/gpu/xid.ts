/**
 * Kernel-log lines about NVIDIA GPUs, without I/O: /dev/kmsg records,
 * `journalctl -o json` lines, XID and "fallen off the bus" messages, and the
 * XID table (REFERENCE.md) with each class's meaning and recommended action.
 */
import { normalizeBusId } from "./bus-id.ts";
import type { Recovery, Severity } from "./types.ts";

export type XidClass =
  | "app_error"
  | "cleanup"
  | "ecc_uncontained"
  | "microcontroller_warning"
  | "microcontroller_halt"
  | "row_remap_pending"
  | "row_remap_failure"
  | "nvlink"
  | "fallen_off_bus"
  | "sbe_rate"
  | "contained_memory"
  | "driver_timeout"
  | "unclassified";

export interface XidInfo {
  readonly class: XidClass;
  readonly meaning: string;
  readonly action: string;
  /** What one occurrence is: a fault of this severity, or only worth logging. */
  readonly severity: Severity | "log";
  /**
   * NVIDIA's catalog resolution bucket (immediate action), as llmsup acts on
   * it: RESTART_APP → restart_app (application-caused: such a fault may clear
   * by time), RESET_GPU and the XID-48/NVLink workflows → reset_gpu,
   * RESTART_BM → reboot, IGNORE → none.
   */
  readonly recovery: Recovery;
}

const CLASSES: Record<XidClass, Omit<XidInfo, "class">> = {
  app_error: {
    meaning: "application-level GPU exception, page fault or stopped channel",
    action: "restart the owning app if it is ours; escalate if it keeps happening",
    severity: "log",
    recovery: "restart_app",
  },
  cleanup: { meaning: "preemptive cleanup after other errors (also seen during normal teardown)", action: "none unless it comes alone; then check the apps on this GPU", severity: "log", recovery: "none" },
  ecc_uncontained: {
    meaning: "double-bit, uncontained or unrecovered ECC error",
    action: "GPU unusable: stop the apps on it and reset the GPU",
    severity: "down",
    recovery: "reset_gpu",
  },
  microcontroller_warning: { meaning: "GPU micro-controller warning", action: "alert; reset the GPU if it repeats", severity: "degraded", recovery: "reset_gpu" },
  microcontroller_halt: { meaning: "GPU micro-controller halted", action: "reset the GPU", severity: "down", recovery: "reset_gpu" },
  row_remap_pending: { meaning: "memory row remap pending", action: "schedule a GPU reset when it is idle", severity: "degraded", recovery: "reset_gpu" },
  row_remap_failure: { meaning: "memory row remap failed", action: "reset the GPU; the hardware is suspect", severity: "down", recovery: "reset_gpu" },
  nvlink: { meaning: "NVLink error", action: "take the GPU out of service, reset it and alert", severity: "down", recovery: "reset_gpu" },
  fallen_off_bus: { meaning: "GPU has fallen off the bus", action: "only a reboot recovers it; nvidia-smi may fail or hang meanwhile", severity: "down", recovery: "reboot" },
  sbe_rate: { meaning: "high single-bit ECC error rate", action: "watch the trend", severity: "log", recovery: "none" },
  contained_memory: { meaning: "contained memory error", action: "restart the affected app", severity: "degraded", recovery: "restart_app" },
  driver_timeout: {
    meaning: "context-switch timeout, GSP RPC timeout or GSP error: the driver may hang",
    action: "reset the GPU, or reboot if the reset fails",
    severity: "down",
    recovery: "reset_gpu",
  },
  unclassified: { meaning: "XID not in llmsup's table", action: "look it up in NVIDIA's XID catalogue", severity: "log", recovery: "none" },
};

const XID_CLASS: Record<number, XidClass> = {
  13: "app_error",
  31: "app_error",
  43: "app_error",
  45: "cleanup",
  48: "ecc_uncontained",
  95: "ecc_uncontained",
  140: "ecc_uncontained",
  61: "microcontroller_warning",
  62: "microcontroller_halt",
  63: "row_remap_pending",
  64: "row_remap_failure",
  74: "nvlink",
  79: "fallen_off_bus",
  92: "sbe_rate",
  94: "contained_memory",
  109: "driver_timeout",
  119: "driver_timeout",
  120: "driver_timeout",
};

export function xidInfo(xid: number): XidInfo {
  const cls = XID_CLASS[xid] ?? "unclassified";
  return { class: cls, ...CLASSES[cls] };
}

export function xidClassInfo(cls: XidClass): XidInfo {
  return { class: cls, ...CLASSES[cls] };
}

export type KernelGpuEvent =
  | {
      readonly type: "xid";
      readonly xid: number;
      /** nvidia-smi form. */
      readonly busId: string;
      readonly pid?: number;
      readonly processName?: string;
      /** The rest of the message after the XID number. */
      readonly detail: string;
      readonly message: string;
    }
  | { readonly type: "fallen_off_bus"; readonly busId: string; readonly message: string };

const BUS = "[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\\.[0-7])?";
// NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus.
// NVRM: Xid (0000:3b:00): 13, 0002 00000000 …   (older drivers: no "PCI:", no pid/name)
const XID_RE = new RegExp(`NVRM: Xid \\((?:PCI:)?(${BUS})\\): (\\d+)(?:, ?(.*))?$`);
const PID_NAME_RE = /^pid=(?:'?<unknown>'?|'?(\d+)'?), name=([^,]*),? ?(.*)$/;
// NVRM: GPU 0000:18:00.0: GPU has fallen off the bus.   /   NVRM: GPU at PCI:0000:18:00: GPU has fallen off the bus.
const OFF_BUS_RE = new RegExp(`NVRM: .*?GPU (?:at )?(?:PCI:)?(${BUS})\\b.*fallen off the bus`, "i");

/** The GPU event a kernel message reports, or undefined for any other message. */
export function parseKernelMessage(text: string): KernelGpuEvent | undefined {
  // Tolerate dmesg's "[  123.456789] " prefix, for logs fed from files.
  const message = text.replace(/^\[\s*\d+\.\d+\]\s*/, "").trim();
  const xid = XID_RE.exec(message);
  if (xid) {
    const busId = normalizeBusId(xid[1] as string) as string;
    const rest = xid[3] ?? "";
    const pn = PID_NAME_RE.exec(rest);
    const name = pn?.[2]?.trim();
    return {
      type: "xid",
      xid: Number(xid[2]),
      busId,
      pid: pn?.[1] !== undefined ? Number(pn[1]) : undefined,
      processName: name && name !== "<unknown>" ? name : undefined,
      detail: pn ? (pn[3] ?? "") : rest,
      message,
    };
  }
  const off = OFF_BUS_RE.exec(message);
  if (off) return { type: "fallen_off_bus", busId: normalizeBusId(off[1] as string) as string, message };
  return undefined;
}

export interface KmsgRecord {
  readonly priority: number;
  readonly seq: number;
  /** Microseconds since boot (CLOCK_MONOTONIC-like). */
  readonly usec: number;
  readonly message: string;
}

/**
 * One /dev/kmsg record: `<prefix>,<seq>,<usec>,<flags>[,…];<message>`.
 * Continuation lines (` KEY=value` dictionary entries) and anything else are undefined.
 */
export function parseKmsgRecord(line: string): KmsgRecord | undefined {
  const m = /^(\d+),(\d+),(\d+),[^;]*;(.*)$/.exec(line);
  if (!m) return undefined;
  const prefix = Number(m[1]);
  return { priority: prefix & 7, seq: Number(m[2]), usec: Number(m[3]), message: unescapeKmsg(m[4] as string) };
}

/** kmsg writes non-printable bytes as \xNN. */
function unescapeKmsg(s: string): string {
  return s.includes("\\x") ? s.replace(/\\x([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16))) : s;
}

/** The MESSAGE of one `journalctl -o json` line (a string, or an array of bytes when not UTF-8). */
export function parseJournalLine(line: string): string | undefined {
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!entry || typeof entry !== "object") return undefined;
  const message = (entry as Record<string, unknown>).MESSAGE;
  if (typeof message === "string") return message;
  if (Array.isArray(message) && message.every((b) => typeof b === "number")) return Buffer.from(message as number[]).toString("utf8");
  return undefined;
}
