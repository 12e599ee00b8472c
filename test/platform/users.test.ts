/** A uid's account from /etc/passwd and /etc/group: its name, its primary group and the groups that list it. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { accountFrom, accountName } from "../../src/platform/users.ts";

const passwd = ["root:x:0:0:root:/root:/bin/bash", "llmsup:x:990:990::/var/lib/llmsup:/usr/sbin/nologin", "alice:x:1001:1001:Alice:/home/alice:/bin/bash", "# a comment", "broken line", ""].join("\n");
const group = ["root:x:0:", "llmsup:x:990:alice", "alice:x:1001:", "ops:x:2000:bob, alice", "video:x:44:bob", "malformed", ""].join("\n");

test("a uid's account: its name, its primary group and every group whose members name it", () => {
  assert.deepEqual(accountFrom(1001, passwd, group), { uid: 1001, user: "alice", gids: [1001, 990, 2000] });
  assert.deepEqual(accountFrom(0, passwd, group), { uid: 0, user: "root", gids: [0] });
});

test("a uid no line names has no name and no groups", () => {
  assert.deepEqual(accountFrom(4242, passwd, group), { uid: 4242, gids: [] });
});

test("a caller is named by user and uid, or by uid alone", () => {
  assert.equal(accountName({ uid: 1001, user: "alice" }), "alice (uid 1001)");
  assert.equal(accountName({ uid: 4242 }), "uid 4242");
});
