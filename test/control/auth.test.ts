/** The control socket's pure decisions: what a request needs, the challenge table, what a proof file proves, and who may act. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { authDirFor, authorise, CHALLENGE_PATH, isNonce, judgeProof, NONCE_TTL_MS, NonceTable, privilegeOf, PROOF_CLOCK_SLACK_MS, type ProofStat } from "../../src/control/auth.ts";

const N1 = "0123456789abcdef0123456789abcdef";
const N2 = "fedcba9876543210fedcba9876543210";
const N3 = "00000000000000000000000000000003";

test("every GET reads, POST /auth/challenge needs nothing, and every other request acts", () => {
  for (const p of ["/status", "/events", "/backends/primary/logs", "/backends/primary/drain"]) assert.equal(privilegeOf("GET", p), "read", p);
  assert.equal(privilegeOf("HEAD", "/status"), "read");
  assert.equal(privilegeOf("POST", CHALLENGE_PATH), "challenge");
  for (const [m, p] of [["POST", "/backends/primary/stop"], ["POST", "/reload"], ["POST", "/drills/primary-outage"], ["POST", "/gpus/all/clear"], ["DELETE", "/backends/primary"], ["PUT", "/status"], ["GET", CHALLENGE_PATH]] as const) {
    assert.equal(privilegeOf(m, p), m === "GET" ? "read" : "act", `${m} ${p}`);
  }
  assert.equal(privilegeOf(undefined, "/reload"), "act", "a request without a method is not a read");
});

test("the auth directory sits beside the control socket, named after it", () => {
  assert.equal(authDirFor("/run/llmsup/control.sock"), "/run/llmsup/control-auth");
  assert.equal(authDirFor("/srv/box/ctl"), "/srv/box/ctl-auth");
});

test("a nonce is 32 lower-case hex digits and nothing else", () => {
  assert.ok(isNonce(N1));
  for (const bad of ["", N1.toUpperCase(), `${N1}0`, N1.slice(1), "../../etc/passwd", `${N1.slice(0, 31)}g`]) assert.ok(!isNonce(bad), bad);
});

test("a nonce is good once, within its lifetime, and says when it was issued", () => {
  const table = new NonceTable();
  table.issue(N1, 1_000);
  assert.deepEqual(table.take(N1, 1_000 + NONCE_TTL_MS - 1), { ok: true, issuedAt: 1_000 });
  assert.deepEqual(table.take(N1, 1_000 + NONCE_TTL_MS - 1), { ok: false, why: "unknown" }, "used up: the second answer is refused");
  assert.deepEqual(table.take(N2, 1_000), { ok: false, why: "unknown" }, "never issued");
});

test("a nonce answered at or after its lifetime is expired, and gone afterwards", () => {
  const table = new NonceTable();
  table.issue(N1, 5_000);
  assert.deepEqual(table.take(N1, 5_000 + NONCE_TTL_MS), { ok: false, why: "expired" });
  assert.deepEqual(table.take(N1, 5_000), { ok: false, why: "unknown" });
  assert.equal(table.size, 0);
});

test("issuing drops the expired nonces and, beyond the limit, the oldest, and names them", () => {
  const table = new NonceTable(10_000, 2);
  assert.deepEqual(table.issue(N1, 0), []);
  assert.deepEqual(table.issue(N2, 9_000), []);
  assert.deepEqual(table.issue(N3, 10_000), [N1], "N1 expired at 10 s");
  assert.deepEqual(table.issue(N1, 10_500), [N2], "two outstanding at most: the oldest goes");
  assert.equal(table.size, 2);
  assert.deepEqual(table.take(N2, 10_500), { ok: false, why: "unknown" });
  assert.deepEqual(table.take(N3, 10_500), { ok: true, issuedAt: 10_000 });
});

const fresh: ProofStat = { kind: "file", uid: 1001, nlink: 1, birthtimeMs: 50_000, ctimeMs: 50_000 };

test("a fresh regular file with one name proves its owner's uid", () => {
  assert.deepEqual(judgeProof(fresh, 50_000), { ok: true, uid: 1001 });
  assert.deepEqual(judgeProof({ ...fresh, uid: 0 }, 49_000), { ok: true, uid: 0 });
});

test("a proof born within the kernel clock's slack before its challenge still counts; earlier does not", () => {
  assert.deepEqual(judgeProof(fresh, 50_000 + PROOF_CLOCK_SLACK_MS), { ok: true, uid: 1001 });
  const late = judgeProof(fresh, 50_000 + PROOF_CLOCK_SLACK_MS + 1);
  assert.equal(late.ok, false);
  assert.match(!late.ok ? late.why : "", /older than its challenge/);
});

test("a missing file, a symbolic link, a directory or a second name of another file proves nothing", () => {
  const why = (st: ProofStat | undefined) => {
    const v = judgeProof(st, 50_000);
    assert.equal(v.ok, false);
    return v.ok ? "" : v.why;
  };
  assert.match(why(undefined), /no proof file/);
  assert.match(why({ ...fresh, kind: "symlink", uid: 0 }), /symbolic link/);
  assert.match(why({ ...fresh, kind: "other" }), /not a regular file/);
  assert.match(why({ ...fresh, uid: 0, nlink: 2 }), /2 names/);
});

test("a file moved or linked in keeps its old birth time and is refused; without a birth time the change time decides", () => {
  assert.equal(judgeProof({ ...fresh, uid: 0, birthtimeMs: 1_000, ctimeMs: 50_000 }, 50_000).ok, false, "born long before, renamed in now");
  assert.deepEqual(judgeProof({ ...fresh, birthtimeMs: 0, ctimeMs: 50_000 }, 50_000), { ok: true, uid: 1001 });
  assert.equal(judgeProof({ ...fresh, birthtimeMs: 0, ctimeMs: 1_000 }, 50_000).ok, false);
});

const policy = { daemonUid: 990, adminGroup: "", adminGid: undefined };

test("root and the daemon's own user may act, whatever the admin group", () => {
  assert.deepEqual(authorise({ uid: 0, user: "root", gids: [0] }, policy, "stop primary"), { ok: true });
  assert.deepEqual(authorise({ uid: 990, user: "llmsup", gids: [990] }, policy, "stop primary"), { ok: true });
  assert.deepEqual(authorise({ uid: 0, gids: [] }, { daemonUid: 990, adminGroup: "ops", adminGid: 2000 }, "reload"), { ok: true });
});

test("a member of the admin group may act, by its primary or a supplementary group", () => {
  const ops = { daemonUid: 990, adminGroup: "ops", adminGid: 2000 };
  assert.deepEqual(authorise({ uid: 1001, user: "alice", gids: [1001, 2000] }, ops, "restart primary"), { ok: true });
  assert.deepEqual(authorise({ uid: 1002, user: "bob", gids: [2000] }, ops, "restart primary"), { ok: true });
});

test("with no admin group, anyone else may not act, and is told how to grant it", () => {
  const r = authorise({ uid: 1001, user: "alice", gids: [1001, 990] }, policy, "stop primary");
  assert.equal(r.ok, false);
  assert.equal(!r.ok && r.message, 'alice (uid 1001) may read but not act: stop primary needs root, the daemon\'s user (uid 990); to let a group act, set [control] admin_group = "<group>" and add the user to it: `usermod -aG <group> alice`');
});

test("a non-member is told which group grants acting and the usermod that adds them", () => {
  const r = authorise({ uid: 1001, user: "alice", gids: [1001] }, { daemonUid: 0, adminGroup: "ops", adminGid: 2000 }, "reload");
  assert.equal(!r.ok && r.message, "alice (uid 1001) may read but not act: reload needs root, the daemon's user or a member of group ops: `usermod -aG ops alice`");
});

test("an admin group that does not exist grants nothing and the refusal says to create it", () => {
  const r = authorise({ uid: 1001, user: "alice", gids: [1001] }, { daemonUid: 0, adminGroup: "ops", adminGid: undefined }, "reload");
  assert.equal(r.ok, false);
  assert.match(!r.ok ? r.message : "", /group ops \(\[control\] admin_group\), which does not exist: `groupadd ops`, then `usermod -aG ops alice`/);
});

test("a uid without a name in /etc/passwd is named by its number", () => {
  const r = authorise({ uid: 4242, gids: [] }, policy, "stop primary");
  assert.match(!r.ok ? r.message : "", /^uid 4242 may read but not act: .*`usermod -aG <group> <user>`$/);
});
