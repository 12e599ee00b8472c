/**
 * The control socket's door keeper, the thin shell around auth.ts: it keeps
 * the auth directory, issues challenges, reads the proof files the kernel
 * vouches for, and looks the caller up in /etc/passwd and /etc/group.
 */
import { randomBytes } from "node:crypto";
import { chmod, lstat, mkdir, readdir, unlink } from "node:fs/promises";
import path from "node:path";
import { LlmsupError } from "../errors/error.ts";
import type { Clock } from "../platform/clock.ts";
import { accountOf, gidOf, type Account } from "../platform/users.ts";
import { AUTH_DIR_MODE, authorise, isNonce, judgeProof, NONCE_TTL_MS, NonceTable, type Authorisation, type ProofStat } from "./auth.ts";

/** What POST /auth/challenge answers. */
export interface Challenge {
  readonly nonce: string;
  /** The directory the proof file goes into. */
  readonly dir: string;
  readonly expires_ms: number;
}

export type Identified = { readonly ok: true; readonly caller: Account } | { readonly ok: false; readonly why: string };

/**
 * Makes `dir` the auth directory: a directory of the daemon's own (never a
 * link, never someone else's), mode 1733, emptied of proofs an earlier
 * daemon left.
 */
export async function prepareAuthDir(dir: string, ownUid: number): Promise<void> {
  await mkdir(path.dirname(dir), { recursive: true });
  await mkdir(dir, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "EEXIST") throw new LlmsupError("LLMSUP_E_LISTEN_FAILED", `cannot create the control socket's auth directory ${dir}: ${e.code ?? e.message}`, { path: dir }, { cause: e });
  });
  const st = await lstat(dir);
  if (!st.isDirectory() || st.uid !== ownUid) {
    throw new LlmsupError("LLMSUP_E_LISTEN_FAILED", `${dir} (the control socket's auth directory) is ${st.isSymbolicLink() ? "a symbolic link" : !st.isDirectory() ? "not a directory" : `owned by uid ${st.uid}, not by the daemon's user (uid ${ownUid})`}: remove it and start again`, { path: dir });
  }
  await chmod(dir, AUTH_DIR_MODE);
  for (const name of await readdir(dir)) await unlink(path.join(dir, name)).catch(() => undefined);
}

const statOf = (st: import("node:fs").Stats): ProofStat => ({
  kind: st.isSymbolicLink() ? "symlink" : st.isFile() ? "file" : "other",
  uid: st.uid,
  nlink: st.nlink,
  birthtimeMs: st.birthtimeMs,
  ctimeMs: st.ctimeMs,
});

export interface GuardOptions {
  readonly dir: string;
  readonly clock: Clock;
  /** The daemon's own uid. */
  readonly daemonUid: number;
  /** [control] admin_group. */
  readonly adminGroup: string;
  /** 128 fresh random bits as hex; crypto's by default. */
  readonly nonce?: () => string;
}

export class ControlGuard {
  private readonly o: GuardOptions;
  private readonly table = new NonceTable();
  private readonly fresh: () => string;

  constructor(o: GuardOptions) {
    this.o = o;
    this.fresh = o.nonce ?? (() => randomBytes(16).toString("hex"));
  }

  get dir(): string {
    return this.o.dir;
  }

  /** A new single-use nonce; the proof files of challenges that lapsed meanwhile are removed. */
  challenge(): Challenge {
    const nonce = this.fresh();
    for (const gone of this.table.issue(nonce, this.o.clock.now())) void this.removeProof(gone);
    return { nonce, dir: this.o.dir, expires_ms: NONCE_TTL_MS };
  }

  /** Who sent a request naming `proof` (the x-llmsup-proof header): the owner of its proof file, or why there is none. The nonce and its file are used up either way. */
  async identify(proof: string | string[] | undefined): Promise<Identified> {
    if (proof === undefined || proof === "") return { ok: false, why: `no proof of identity: ask POST /auth/challenge for a nonce, create <dir>/<nonce>, and name it in x-llmsup-proof` };
    if (typeof proof !== "string" || !isNonce(proof)) return { ok: false, why: "the proof is not a nonce this daemon issues" };
    const taken = this.table.take(proof, this.o.clock.now());
    if (!taken.ok) {
      await this.removeProof(proof);
      return { ok: false, why: taken.why === "expired" ? `the challenge expired (a nonce is good for ${NONCE_TTL_MS / 1000}s): ask again` : "the nonce is unknown or already used: ask for a new challenge" };
    }
    const file = path.join(this.o.dir, proof);
    const st = await lstat(file).then(statOf, () => undefined);
    await this.removeProof(proof);
    const verdict = judgeProof(st, taken.issuedAt);
    if (!verdict.ok) return verdict;
    return { ok: true, caller: await accountOf(verdict.uid) };
  }

  /** Whether `caller` may do `action`, by [control] admin_group as /etc/group says now. */
  async authorise(caller: Account, action: string): Promise<Authorisation> {
    const adminGid = this.o.adminGroup === "" ? undefined : await gidOf(this.o.adminGroup);
    return authorise(caller, { daemonUid: this.o.daemonUid, adminGroup: this.o.adminGroup, ...(adminGid === undefined ? {} : { adminGid }) }, action);
  }

  private removeProof(nonce: string): Promise<void> {
    return unlink(path.join(this.o.dir, nonce)).catch(() => undefined);
  }
}
