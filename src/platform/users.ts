/**
 * Users and groups from /etc/passwd and /etc/group (no native addon needed):
 * names to numeric ids, and a uid's account (its name and groups). The
 * parsers are pure; the lookups read the files afresh each time, so a
 * `usermod` takes effect at once.
 */
import { readFile } from "node:fs/promises";

async function lookup(file: string, name: string): Promise<number | undefined> {
  if (/^\d+$/.test(name)) return Number(name);
  const text = await readFile(file, "utf8").catch(() => "");
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f[0] === name && f[2] !== undefined) return Number(f[2]);
  }
  return undefined;
}

export const uidOf = (name: string) => lookup("/etc/passwd", name);
export const gidOf = (name: string) => lookup("/etc/group", name);

/** A uid as the account files know it: its user name (absent for a uid no line names) and every group it is in. */
export interface Account {
  readonly uid: number;
  readonly user?: string;
  /** Its primary group (from /etc/passwd) and every group whose member list names it (/etc/group), each once. */
  readonly gids: readonly number[];
}

const whole = (s: string | undefined): number | undefined => (s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined);

/** The account of `uid` from the texts of /etc/passwd and /etc/group. Pure. */
export function accountFrom(uid: number, passwd: string, group: string): Account {
  let user: string | undefined;
  let primary: number | undefined;
  for (const line of passwd.split("\n")) {
    const f = line.split(":");
    if (f.length >= 4 && whole(f[2]) === uid && f[0] !== "") {
      user = f[0];
      primary = whole(f[3]);
      break;
    }
  }
  const gids = new Set<number>(primary === undefined ? [] : [primary]);
  if (user !== undefined) {
    for (const line of group.split("\n")) {
      const f = line.split(":");
      const gid = whole(f[2]);
      if (gid !== undefined && (f[3] ?? "").split(",").map((m) => m.trim()).includes(user)) gids.add(gid);
    }
  }
  return { uid, ...(user === undefined ? {} : { user }), gids: [...gids] };
}

/** The account of `uid` as the files say now. */
export async function accountOf(uid: number): Promise<Account> {
  const [passwd, group] = await Promise.all([readFile("/etc/passwd", "utf8").catch(() => ""), readFile("/etc/group", "utf8").catch(() => "")]);
  return accountFrom(uid, passwd, group);
}

/** How a caller reads in a log line or a message: `alice (uid 1001)`, or `uid 1001` for a uid without a name. */
export function accountName(a: { readonly uid: number; readonly user?: string }): string {
  return a.user === undefined ? `uid ${a.uid}` : `${a.user} (uid ${a.uid})`;
}
