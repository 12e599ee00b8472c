/**
 * A backend's port on this machine and who holds it: readiness is tied to
 * the process llmsup started or adopted, so a port another process holds (an
 * orphan of an earlier server, another service) blocks the backend, naming
 * that process, instead of letting its answer pass for ours.
 */
import { describeHolder, whoListens, whoListensInGroup, type PortHolder } from "../platform/port-owner.ts";
import { portOf } from "./launch.ts";

/** Who listens on a local TCP port: a process of group `pgid` (ours), another one, or nobody. */
export type PortHolderLookup = (port: number, host: string, pgid: number | undefined) => Promise<PortHolder>;

/** The real lookup on this host: a listener of group `pgid` is ours; with no group, any listener is another's. */
export function portHolderOnThisHost(port: number, host: string, pgid: number | undefined): Promise<PortHolder> {
  return pgid === undefined ? whoListens(port, host, []) : whoListensInGroup(port, host, pgid);
}

/** Hosts whose port is on this machine: its holder can be known. */
const LOCAL_HOST = /^(localhost|127(\.\d+){3}|0\.0\.0\.0|\[?::1?\]?)$/;

/** The backend's port when its URL is on this machine; undefined otherwise. Pure. */
export function localPort(url: string): { readonly port: number; readonly host: string } | undefined {
  const port = portOf(url);
  let host: string;
  try {
    host = new URL(url).hostname;
  } catch {
    return undefined;
  }
  return port !== undefined && LOCAL_HOST.test(host) ? { port, host: host.replace(/^\[|\]$/g, "") } : undefined;
}

/**
 * Why the backend at `url` is not served by process group `pgid` (undefined:
 * no process of ours yet, so any listener is another's): another process
 * listens there. Undefined when none does, or when that cannot be known.
 */
export async function heldByAnother(lookup: PortHolderLookup, url: string, pgid: number | undefined): Promise<string | undefined> {
  const p = localPort(url);
  if (!p) return undefined;
  const h = await lookup(p.port, p.host, pgid).catch(() => undefined);
  return h?.state === "foreign" ? describeHolder(p.port, h) : undefined;
}
