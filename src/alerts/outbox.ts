/**
 * The outbox: every alert mail is on disk before delivery is tried, so an SMTP
 * outage or a daemon restart loses nothing.
 *
 * Each channel has its own outbox: <state_dir>/alerts/outbox/ for mail (as
 * ever), outbox-<channel>/ for Alertmanager and each webhook.
 *
 * One JSON file per message in <state_dir>/alerts/outbox/, written atomically
 * (temp file, fsync, rename, fsync of the directory) and deleted once the
 * server accepted it. Chosen over a single journal because each message is
 * then created and removed by one atomic step with no compaction, a torn
 * write can only ever affect the temp file, the bound is a count of files, and
 * an operator can read or delete a stuck message with ordinary tools. Names are
 * `<sequence>-<created ms>.json`: sorting them is delivery order, and the
 * sequence continues across restarts.
 *
 * Past `outbox_max` messages the oldest are dropped; how many (and when they
 * were written) is kept in <state_dir>/alerts/outbox.json until a delivered
 * mail has said so. Messages the server refused for good move to
 * outbox/rejected/ (the newest REJECTED_KEEP are kept). A message the disk
 * refuses (full, read-only) is kept in memory and still delivered: the disk
 * filling up is itself something llmsup mails about.
 */
import { mkdir, readdir, readFile, rename, unlink } from "node:fs/promises";
import path from "node:path";
import type { AlertSeverity } from "./events.ts";
import { readJson, syncDir, writeJsonAtomic } from "../platform/json-file.ts";

export interface OutboxMessage {
  readonly id: string;
  readonly createdAt: number;
  readonly severity: AlertSeverity;
  /** The event kind, or summary, held, digest. */
  readonly kind: string;
  /** The policy subject ("" when none). */
  readonly subjectKey: string;
  readonly to: readonly string[];
  readonly subject: string;
  readonly text: string;
  /** What an HTTP channel posts (its JSON body, or what it is built from); absent for mail. */
  readonly payload?: unknown;
}

/** Messages dropped for the bound and not yet reported in a delivered mail. */
export interface DropRecord {
  readonly count: number;
  /** When the first and last of them were written. */
  readonly first: number;
  readonly last: number;
}

export const REJECTED_KEEP = 100;
const NAME = /^(\d{12})-(\d+)\.json$/;

function parseName(name: string): { seq: number; createdAt: number } | undefined {
  const m = NAME.exec(name);
  return m ? { seq: Number(m[1]), createdAt: Number(m[2]) } : undefined;
}

export class Outbox {
  readonly dir: string;
  private readonly rejectedDir: string;
  private readonly metaFile: string;
  private readonly max: number;
  /** Pending file names, oldest first. */
  private names: string[];
  private seq: number;
  private drops: DropRecord | undefined;
  private inFlight: string | undefined;
  /** Messages that could not be written (disk full, read-only): kept in memory so they still go out. */
  private readonly unwritten = new Map<string, OutboxMessage>();

  private constructor(alertsDir: string, name: string, max: number, names: string[], seq: number, drops: DropRecord | undefined) {
    this.dir = path.join(alertsDir, name);
    this.rejectedDir = path.join(this.dir, "rejected");
    this.metaFile = path.join(alertsDir, `${name}.json`);
    this.max = max;
    this.names = names;
    this.seq = seq;
    this.drops = drops;
  }

  /** Opens (creating) the outbox `name` under `alertsDir` (outbox: mail's), picking up what an earlier process left. */
  static async open(alertsDir: string, max: number, name = "outbox"): Promise<Outbox> {
    const dir = path.join(alertsDir, name);
    await mkdir(path.join(dir, "rejected"), { recursive: true, mode: 0o700 });
    const all = await readdir(dir);
    for (const n of all) if (n.startsWith(".") && n.endsWith(".tmp")) await unlink(path.join(dir, n)).catch(() => undefined);
    const names = all.filter((n) => parseName(n)).sort();
    const rejected = (await readdir(path.join(dir, "rejected"))).filter((n) => parseName(n));
    const seq = Math.max(0, ...[...names, ...rejected].map((n) => parseName(n)!.seq));
    const meta = (await readJson(path.join(alertsDir, `${name}.json`)).catch(() => undefined)) as { dropped?: DropRecord } | undefined;
    const d = meta && typeof meta === "object" ? meta.dropped : undefined;
    const drops = d && typeof d.count === "number" && d.count > 0 ? d : undefined;
    return new Outbox(alertsDir, name, max, names, seq, drops);
  }

  /** Messages waiting, the one being sent included. */
  get size(): number {
    return this.names.length;
  }

  get dropped(): DropRecord | undefined {
    return this.drops;
  }

  /**
   * Writes a message; drops the oldest waiting ones beyond the bound. Resolves once it
   * is on disk, or, when the disk refuses it, kept in memory (`unwritten` says why).
   */
  async add(msg: Omit<OutboxMessage, "id">): Promise<{ id: string; dropped: number; unwritten?: string }> {
    const name = `${String(++this.seq).padStart(12, "0")}-${msg.createdAt}.json`;
    const id = name.slice(0, -5);
    let unwritten: string | undefined;
    try {
      await writeJsonAtomic(path.join(this.dir, name), { ...msg, id });
    } catch (e) {
      unwritten = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      this.unwritten.set(name, { ...msg, id });
    }
    this.names.push(name);
    let dropped = 0;
    let first = Number.POSITIVE_INFINITY;
    let last = 0;
    while (this.names.length > this.max) {
      const victim = this.names.find((n) => n !== this.inFlight);
      if (!victim) break;
      this.names = this.names.filter((n) => n !== victim);
      if (!this.unwritten.delete(victim)) await unlink(path.join(this.dir, victim)).catch(() => undefined);
      const at = parseName(victim)!.createdAt;
      first = Math.min(first, at);
      last = Math.max(last, at);
      dropped++;
    }
    if (dropped > 0) {
      const d = this.drops;
      this.drops = { count: (d?.count ?? 0) + dropped, first: Math.min(d?.first ?? first, first), last: Math.max(d?.last ?? last, last) };
      await this.saveMeta().catch(() => undefined);
    }
    return { id, dropped, unwritten };
  }

  /** The oldest waiting message, marked in flight (the bound never drops it); undefined when empty. */
  async claim(): Promise<OutboxMessage | undefined> {
    while (this.names.length > 0) {
      const name = this.names[0]!;
      const kept = this.unwritten.get(name);
      if (kept) {
        this.inFlight = name;
        return kept;
      }
      try {
        const msg = JSON.parse(await readFile(path.join(this.dir, name), "utf8")) as OutboxMessage;
        if (typeof msg.text !== "string" || !Array.isArray(msg.to)) throw new Error("not an outbox message");
        this.inFlight = name;
        return { ...msg, id: name.slice(0, -5) };
      } catch (e) {
        // Unreadable (deleted by hand, corrupt): set it aside so it cannot block the queue.
        this.names = this.names.filter((n) => n !== name);
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") await rename(path.join(this.dir, name), path.join(this.rejectedDir, name)).catch(() => undefined);
      }
    }
    return undefined;
  }

  /** The message was accepted: delete it. */
  async done(id: string): Promise<void> {
    const name = `${id}.json`;
    this.names = this.names.filter((n) => n !== name);
    if (this.inFlight === name) this.inFlight = undefined;
    if (this.unwritten.delete(name)) return;
    await unlink(path.join(this.dir, name)).catch(() => undefined);
    await syncDir(this.dir);
  }

  /** Delivery failed for now: the message stays first in line. */
  release(id: string): void {
    if (this.inFlight === `${id}.json`) this.inFlight = undefined;
  }

  /** The server refused the message for good: keep it aside, out of the queue. */
  async reject(id: string): Promise<void> {
    const name = `${id}.json`;
    this.names = this.names.filter((n) => n !== name);
    if (this.inFlight === name) this.inFlight = undefined;
    if (this.unwritten.delete(name)) return;
    await rename(path.join(this.dir, name), path.join(this.rejectedDir, name)).catch(() => undefined);
    const kept = (await readdir(this.rejectedDir)).filter((n) => parseName(n)).sort();
    for (const old of kept.slice(0, Math.max(0, kept.length - REJECTED_KEEP))) await unlink(path.join(this.rejectedDir, old)).catch(() => undefined);
  }

  /** A delivered mail reported `count` drops. */
  async ackDrops(count: number): Promise<void> {
    if (!this.drops) return;
    const left = this.drops.count - count;
    this.drops = left > 0 ? { ...this.drops, count: left } : undefined;
    await this.saveMeta().catch(() => undefined);
  }

  private async saveMeta(): Promise<void> {
    await writeJsonAtomic(this.metaFile, { dropped: this.drops ?? null });
  }
}
