/**
 * Who may do what on the control socket, decided without I/O.
 *
 * Everyone who can connect (the socket's mode and group, enforced by the
 * kernel) may read: every GET. Everything else acts, and needs a proof of
 * identity the kernel vouches for, since a unix socket in Node tells nothing
 * of its peer: the client asks for a challenge (a random nonce, single use,
 * short-lived), creates a file of that name in the daemon's auth directory
 * beside the socket (mode 1733: anyone may create, nobody else may list or
 * remove), and names the nonce in its request. The file's owner, set by the
 * kernel at creation, is the caller; only root can make a file owned by
 * another uid. The caller's groups then decide whether it may act.
 */
import path from "node:path";
import { accountName, type Account } from "../platform/users.ts";

/** Header an acting request names its nonce in. */
export const PROOF_HEADER = "x-llmsup-proof";
/** Where a client asks for a challenge. */
export const CHALLENGE_PATH = "/auth/challenge";
/** How long a challenge stays good. */
export const NONCE_TTL_MS = 10_000;
/** Challenges outstanding at most; the oldest go first beyond it. */
export const MAX_PENDING = 1_024;
/**
 * How far a proof file's birth time may lie before its challenge: the
 * kernel stamps files from a coarse clock that can run a tick behind the
 * daemon's.
 */
export const PROOF_CLOCK_SLACK_MS = 1_000;
/** Mode of the auth directory: sticky, writable and searchable by all, listable only by its owner. */
export const AUTH_DIR_MODE = 0o1733;

export type Privilege = "challenge" | "read" | "act";

/** What a request needs: nothing to get a challenge, the connection to read, a proof to act. */
export function privilegeOf(method: string | undefined, pathname: string): Privilege {
  if (method === "POST" && pathname === CHALLENGE_PATH) return "challenge";
  return method === "GET" || method === "HEAD" ? "read" : "act";
}

/** The auth directory of a control socket: beside it, named after it (control.sock → control-auth). */
export function authDirFor(socket: string): string {
  return path.join(path.dirname(socket), `${path.basename(socket).replace(/\.sock$/, "")}-auth`);
}

/** A nonce as the daemon issues them: 128 random bits in lower-case hex. */
export const isNonce = (s: string): boolean => /^[0-9a-f]{32}$/.test(s);

export type NonceTaken = { readonly ok: true; readonly issuedAt: number } | { readonly ok: false; readonly why: "unknown" | "expired" };

/** The challenges issued and not yet answered, each good once until it expires. Time is a parameter. */
export class NonceTable {
  readonly #pending = new Map<string, number>();
  readonly #ttlMs: number;
  readonly #max: number;

  constructor(ttlMs = NONCE_TTL_MS, max = MAX_PENDING) {
    this.#ttlMs = ttlMs;
    this.#max = max;
  }

  /** Records `nonce` as issued at `now`; the nonces dropped meanwhile (expired, or the oldest beyond the limit), whose proof files can go. */
  issue(nonce: string, now: number): readonly string[] {
    const dropped: string[] = [];
    for (const [n, at] of this.#pending) {
      if (now - at >= this.#ttlMs) {
        this.#pending.delete(n);
        dropped.push(n);
      }
    }
    // Insertion order is issue order: the first key is the oldest.
    while (this.#pending.size >= this.#max) {
      const oldest = this.#pending.keys().next().value!;
      this.#pending.delete(oldest);
      dropped.push(oldest);
    }
    this.#pending.set(nonce, now);
    return dropped;
  }

  /** Uses `nonce` up: when it was issued, or why it is no good. Either way it is gone afterwards. */
  take(nonce: string, now: number): NonceTaken {
    const at = this.#pending.get(nonce);
    if (at === undefined) return { ok: false, why: "unknown" };
    this.#pending.delete(nonce);
    return now - at >= this.#ttlMs ? { ok: false, why: "expired" } : { ok: true, issuedAt: at };
  }

  get size(): number {
    return this.#pending.size;
  }
}

/** What lstat() says of a proof file, as far as the judgement needs. */
export interface ProofStat {
  readonly kind: "file" | "symlink" | "other";
  readonly uid: number;
  readonly nlink: number;
  /** 0 where the file system keeps no birth time. */
  readonly birthtimeMs: number;
  readonly ctimeMs: number;
}

export type ProofVerdict = { readonly ok: true; readonly uid: number } | { readonly ok: false; readonly why: string };

/**
 * Whether a proof file proves its owner: a regular file (not a link that
 * points elsewhere, not a second name of another file) born after its
 * challenge was issued. A file moved or linked in keeps its old birth time;
 * where the file system keeps none, its change time stands in. Pure.
 */
export function judgeProof(st: ProofStat | undefined, issuedAt: number): ProofVerdict {
  if (st === undefined) return { ok: false, why: "no proof file for the nonce was created in the auth directory" };
  if (st.kind === "symlink") return { ok: false, why: "the proof file is a symbolic link" };
  if (st.kind !== "file") return { ok: false, why: "the proof file is not a regular file" };
  if (st.nlink !== 1) return { ok: false, why: `the proof file has ${st.nlink} names (a hard link to another file)` };
  const born = st.birthtimeMs > 0 ? st.birthtimeMs : st.ctimeMs;
  if (born < issuedAt - PROOF_CLOCK_SLACK_MS) return { ok: false, why: "the proof file is older than its challenge" };
  return { ok: true, uid: st.uid };
}

/** Who may act besides root. */
export interface ActPolicy {
  /** The daemon's own uid: it may act. */
  readonly daemonUid: number;
  /** [control] admin_group: its members may act; "" for none. */
  readonly adminGroup: string;
  /** Its gid, where the group exists. */
  readonly adminGid?: number;
}

export type Authorisation = { readonly ok: true } | { readonly ok: false; readonly message: string };

/** Whether `caller` may do `action` (`stop primary`, `reload`): root, the daemon's user, or a member of the admin group. Pure. */
export function authorise(caller: Account, policy: ActPolicy, action: string): Authorisation {
  if (caller.uid === 0 || caller.uid === policy.daemonUid) return { ok: true };
  if (policy.adminGid !== undefined && caller.gids.includes(policy.adminGid)) return { ok: true };
  const who = accountName(caller);
  const user = caller.user ?? "<user>";
  const daemon = policy.daemonUid === 0 ? "" : ` (uid ${policy.daemonUid})`;
  const head = `${who} may read but not act: ${action} needs root, the daemon's user${daemon}`;
  if (policy.adminGroup === "") return { ok: false, message: `${head}; to let a group act, set [control] admin_group = "<group>" and add the user to it: \`usermod -aG <group> ${user}\`` };
  if (policy.adminGid === undefined) return { ok: false, message: `${head} or a member of group ${policy.adminGroup} ([control] admin_group), which does not exist: \`groupadd ${policy.adminGroup}\`, then \`usermod -aG ${policy.adminGroup} ${user}\`` };
  return { ok: false, message: `${head} or a member of group ${policy.adminGroup}: \`usermod -aG ${policy.adminGroup} ${user}\`` };
}
