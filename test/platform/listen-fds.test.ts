/** sd_listen_fds(3) variables: whose they are, how many, their names, and what is malformed. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { openSync, closeSync } from "node:fs";
import { createServer } from "node:net";
import { adoptListenFd, describeInherited, parseListenFds, parseProcNetUnix, takeListenFds } from "../../src/platform/listen-fds.ts";
import { LlmsupError } from "../../src/errors/error.ts";

test("the sockets are taken only when LISTEN_PID is this process", () => {
  assert.deepEqual(parseListenFds({ LISTEN_PID: "42", LISTEN_FDS: "2" }, 42), { fds: [{ fd: 3 }, { fd: 4 }] });
  assert.equal(parseListenFds({ LISTEN_PID: "41", LISTEN_FDS: "2" }, 42), undefined, "inherited from a parent: meant for another process");
  assert.equal(parseListenFds({ LISTEN_FDS: "2" }, 42), undefined, "no LISTEN_PID: not activated");
  assert.equal(parseListenFds({}, 42), undefined);
  assert.equal(parseListenFds({ LISTEN_PID: "", LISTEN_FDS: "1" }, 42), undefined);
});

test("LISTEN_FDS=0 is no socket; a count or pid that is not a number is a problem to log, not a throw", () => {
  assert.equal(parseListenFds({ LISTEN_PID: "42", LISTEN_FDS: "0" }, 42), undefined);
  for (const [env, re] of [
    [{ LISTEN_PID: "42", LISTEN_FDS: "two" }, /LISTEN_FDS="two" is not a count/],
    [{ LISTEN_PID: "42", LISTEN_FDS: "-1" }, /LISTEN_FDS="-1"/],
    [{ LISTEN_PID: "42", LISTEN_FDS: "1.5" }, /LISTEN_FDS="1.5"/],
    [{ LISTEN_PID: "42", LISTEN_FDS: " 2" }, /LISTEN_FDS=" 2"/],
    [{ LISTEN_PID: "42", LISTEN_FDS: "100000" }, /more than the 64 sockets/],
    [{ LISTEN_PID: "42" }, /LISTEN_FDS is not set/],
    [{ LISTEN_PID: "abc", LISTEN_FDS: "1" }, /LISTEN_PID="abc" is not a process id/],
    [{ LISTEN_PID: "042", LISTEN_FDS: "1" }, /LISTEN_PID="042"/],
  ] as const) {
    const r = parseListenFds(env, 42);
    assert.ok(r?.problem, JSON.stringify(env));
    assert.match(r.problem, re);
    assert.deepEqual(r.fds, [], "nothing usable");
  }
});

test("LISTEN_FDNAMES names the sockets in order; a count that does not match keeps the sockets without names", () => {
  assert.deepEqual(parseListenFds({ LISTEN_PID: "7", LISTEN_FDS: "3", LISTEN_FDNAMES: "api:api-tcp:llmsup.socket" }, 7), {
    fds: [
      { fd: 3, name: "api" },
      { fd: 4, name: "api-tcp" },
      { fd: 5, name: "llmsup.socket" },
    ],
  });
  assert.deepEqual(parseListenFds({ LISTEN_PID: "7", LISTEN_FDS: "2", LISTEN_FDNAMES: ":tcp" }, 7), { fds: [{ fd: 3 }, { fd: 4, name: "tcp" }] }, "an empty name is no name");
  const off = parseListenFds({ LISTEN_PID: "7", LISTEN_FDS: "2", LISTEN_FDNAMES: "api" }, 7);
  assert.deepEqual(off?.fds, [{ fd: 3 }, { fd: 4 }]);
  assert.match(off?.problem ?? "", /LISTEN_FDNAMES has 1 name\(s\) for 2 socket\(s\)/);
});

test("takeListenFds removes the variables whatever they said, so that children do not inherit them", () => {
  const env: NodeJS.ProcessEnv = { LISTEN_PID: "9", LISTEN_FDS: "1", LISTEN_FDNAMES: "api", LISTEN_PIDFDID: "123", PATH: "/bin" };
  assert.deepEqual(takeListenFds(env, 9), { fds: [{ fd: 3, name: "api" }] });
  assert.deepEqual(env, { PATH: "/bin" });
  const other: NodeJS.ProcessEnv = { LISTEN_PID: "8", LISTEN_FDS: "1" };
  assert.equal(takeListenFds(other, 9), undefined);
  assert.deepEqual(other, {});
});

test("/proc/net/unix rows: inode, listening flag, type and path (spaces kept, unbound ones without)", () => {
  const text = [
    "Num       RefCount Protocol Flags    Type St Inode Path",
    "0000000000000000: 00000002 00000000 00010000 0001 01 5123 /run/llmsup/api.sock",
    "0000000000000000: 00000003 00000000 00000000 0001 03 5124",
    "0000000000000000: 00000002 00000000 00010000 0001 01 5125 /tmp/a b.sock",
    "0000000000000000: 00000002 00000000 00000000 0002 01 5126 @abstract",
    "garbage",
  ].join("\n");
  assert.deepEqual(parseProcNetUnix(text), [
    { inode: 5123, listening: true, type: 1, path: "/run/llmsup/api.sock" },
    { inode: 5124, listening: false, type: 1 },
    { inode: 5125, listening: true, type: 1, path: "/tmp/a b.sock" },
    { inode: 5126, listening: false, type: 2, path: "@abstract" },
  ]);
});

test("an inherited fd that is not a socket is LLMSUP_E_LISTEN_FAILED naming the fd", async (t) => {
  const fd = openSync("/dev/null", "r");
  t.after(() => closeSync(fd));
  const server = createServer();
  t.after(() => server.close());
  await assert.rejects(adoptListenFd(server, { fd, name: "api" }), (e: unknown) => e instanceof LlmsupError && e.code === "LLMSUP_E_LISTEN_FAILED" && e.message.includes(`fd ${fd} (api)`));
});

test("addresses for the log", () => {
  assert.equal(describeInherited({ kind: "unix", path: "/run/llmsup/api.sock" }), "/run/llmsup/api.sock");
  assert.equal(describeInherited({ kind: "unix" }), "a unix socket (path unknown)");
  assert.equal(describeInherited({ kind: "tcp", host: "127.0.0.1", port: 8181 }), "127.0.0.1:8181");
  assert.equal(describeInherited({ kind: "tcp", host: "::1", port: 8181 }), "[::1]:8181");
});
