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
// What `NVRM: .*?GPU (?:at )?(?:PCI:)?(BUS)\b.*fallen off the bus` (case-insensitive) matches, found in
// linear scans: that one regular expression backtracks quadratically over a long line of GPU mentions.
const NVRM_RE = /NVRM: /i;
const GPU_AT_RE = new RegExp(`GPU (?:at )?(?:PCI:)?(${BUS})\\b`, "gi");
const OFF_BUS_PHRASE_RE = /fallen off the bus/gi;

/** The bus id of a "fallen off the bus" message: "NVRM: ", a GPU's bus id, then the phrase, on one line. */
function fallenOffBus(message: string): string | undefined {
  // `.` stops at these, so the whole pattern lies on one of these lines.
  for (const line of message.split(/[\n\r\u2028\u2029]/)) {
    const nvrm = line.search(NVRM_RE);
    if (nvrm < 0) continue;
    let phrase = -1;
    OFF_BUS_PHRASE_RE.lastIndex = 0;
    for (let m = OFF_BUS_PHRASE_RE.exec(line); m; m = OFF_BUS_PHRASE_RE.exec(line)) phrase = m.index;
    if (phrase < 0) continue;
    // The first GPU mention after "NVRM: "; if the phrase does not follow it, it follows no later one either.
    GPU_AT_RE.lastIndex = nvrm + "NVRM: ".length;
    const gpu = GPU_AT_RE.exec(line);
    if (gpu && gpu.index + gpu[0].length <= phrase) return gpu[1];
  }
  return undefined;
}

/** What follows the last line break (any of those `.` does not match). */
function lastLine(text: string): string {
  const at = Math.max(text.lastIndexOf("\n"), text.lastIndexOf("\r"), text.lastIndexOf("\u2028"), text.lastIndexOf("\u2029"));
  return at < 0 ? text : text.slice(at + 1);
}

/** A whole number as the kernel printed it, if it is one a number can hold exactly (not 400 digits). */
function safeInt(digits: string | undefined): number | undefined {
  const n = digits === undefined ? NaN : Number(digits);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The GPU event a kernel message reports, or undefined for any other message. */
export function parseKernelMessage(text: string): KernelGpuEvent | undefined {
  // Tolerate dmesg's "[  123.456789] " prefix, for logs fed from files.
  const message = text.replace(/^\[\s*\d+\.\d+\]\s*/, "").trim();
  // XID_RE ends in `.*$`, which can only reach the end of the message on its last line: it is tried
  // there alone (over a long line of XID heads followed by a line break it backtracks quadratically).
  const xid = XID_RE.exec(lastLine(message));
  // An XID number no number holds exactly is not the driver's: no XID event.
  const xidNumber = safeInt(xid?.[2]);
  if (xid && xidNumber !== undefined) {
    const busId = normalizeBusId(xid[1] as string) as string;
    const rest = xid[3] ?? "";
    const pn = PID_NAME_RE.exec(rest);
    const name = pn?.[2]?.trim();
    return {
      type: "xid",
      xid: xidNumber,
      busId,
      pid: safeInt(pn?.[1]),
      processName: name && name !== "<unknown>" ? name : undefined,
      detail: pn ? (pn[3] ?? "") : rest,
      message,
    };
  }
  const off = fallenOffBus(message);
  if (off !== undefined) return { type: "fallen_off_bus", busId: normalizeBusId(off) as string, message };
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
  // The message is everything after the ";", whatever it holds (a CR from a file with CRLF line ends, say).
  const m = /^(\d+),(\d+),(\d+),[^;]*;(.*)$/s.exec(line);
  if (!m) return undefined;
  const prefix = safeInt(m[1]);
  const seq = safeInt(m[2]);
  const usec = safeInt(m[3]);
  // Numbers the kernel cannot have written (past 2^53) make it no record.
  if (prefix === undefined || seq === undefined || usec === undefined) return undefined;
  return { priority: prefix & 7, seq, usec, message: unescapeKmsg(m[4] as string) };
}

/**
 * kmsg writes every byte below 0x20, from 0x7f up, and the backslash as \xNN: a UTF-8 character
 * (a process name, say) comes as its bytes, so the bytes are decoded as UTF-8, not one character each.
 */
function unescapeKmsg(s: string): string {
  if (!s.includes("\\x")) return s;
  const parts: Buffer[] = [];
  let at = 0;
  for (const m of s.matchAll(/\\x([0-9a-fA-F]{2})/g)) {
    parts.push(Buffer.from(s.slice(at, m.index), "utf8"), Buffer.of(Number.parseInt(m[1] as string, 16)));
    at = m.index + m[0].length;
  }
  parts.push(Buffer.from(s.slice(at), "utf8"));
  return Buffer.concat(parts).toString("utf8");
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
  if (Array.isArray(message) && message.every((b) => Number.isInteger(b) && (b as number) >= 0 && (b as number) <= 255)) return Buffer.from(message as number[]).toString("utf8");
  return undefined;
}
