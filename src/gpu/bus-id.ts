/**
 * PCI bus ids in every spelling the GPU tools use, reduced to nvidia-smi's
 * `pci.bus_id` form: 8-digit domain, upper-case hex, function digit.
 *
 *   PCI:0000:3b:00     (kernel log, XID lines)        → 00000000:3B:00.0
 *   0000:3b:00         (older XID lines)              → 00000000:3B:00.0
 *   0000:18:00.0       (fallen off the bus, nvidia-smi errors) → 00000000:18:00.0
 *   00000000:3B:00.0   (nvidia-smi pci.bus_id)        → unchanged
 */

const BUS = /^(?:PCI:)?(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})(?:\.([0-7]))?$/;

/** The canonical form, or undefined when `text` is not a bus id. */
export function normalizeBusId(text: string): string | undefined {
  const m = BUS.exec(text.trim());
  if (!m) return undefined;
  const domain = (m[1] ?? "0").padStart(8, "0").toUpperCase();
  const bus = (m[2] as string).padStart(2, "0").toUpperCase();
  const device = (m[3] as string).padStart(2, "0").toUpperCase();
  return `${domain}:${bus}:${device}.${m[4] ?? "0"}`;
}
