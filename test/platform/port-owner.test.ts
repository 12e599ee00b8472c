/** Who holds a TCP port: the /proc/net/tcp{,6} parser, address matching, the pure verdict, the readers over a fake /proc, and real sockets on this machine. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import {
  acceptingAddresses,
  describeHolder,
  findSocketOwner,
  listenersFor,
  listenSectionEnded,
  parseProcNetTcp,
  portHolder,
  portListeners,
  socketInodeOfLink,
  socketInodesOf,
  whoListens,
  whoListensInGroup,
  type ListeningSocket,
} from "../../src/platform/port-owner.ts";
import { tempDir } from "../helpers/tmp.ts";

// Real layout: right-aligned `sl`, hex words in host (little-endian) order, the port big-endian, then
// st, tx_queue:rx_queue, tr:tm->when, retrnsmt, uid, timeout, inode, and the kernel's trailing fields.
const TCP = [
  "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     ",
  "   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 424242 1 0000000000000000 100 0 0 10 0                    ",
  "   1: 0100007F:2CF0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5001 1 00000000c8418fa0 100 0 0 10 0                      ",
  "   2: 0500000A:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 5003 1 0000000000000000 100 0 0 10 0                      ",
  "   3: 0100007F:1F40 0100007F:A7B8 01 00000000:00000000 00:00000000 00000000     0        0 5002 1 0000000014bab8e5 20 4 30 10 -1                     ",
  "   4: 0100007F:AEB3 0100007F:A1C4 06 00000000:00000000 03:00000415 00000000     0        0 0 3 0000000014bab8e5                                      ",
  "",
].join("\n");

const TCP6 = [
  "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
  "   0: 00000000000000000000000000000000:2CF1 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6001 1 0000000008d81af9 100 0 0 10 0",
  "   1: 00000000000000000000000001000000:2CF2 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 6002 1 00000000fc3a1688 100 0 0 10 0",
  "   2: 0000000000000000FFFF00000100007F:2CF3 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6003 1 0000000008d81af9 100 0 0 10 0",
  // malformed: 33 and 31 hex digits, too few columns
  "   3: B80D01200000000000000100010000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6005 1 0000000008d81af9 100 0 0 10 0",
  "   4: B80D012000000000000001000100000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6006 1 0000000008d81af9 100 0 0 10 0",
  "   5: B80D012000000000000001000100000 0 garbage",
  "   6: B80D01200000000000000100010000000:0050",
  "   7: 00000000000000000000000001000000:2CF2 00000000000000000000000001000000:C350 01 00000000:00000000 02:000A7D8C 00000000     0        0 6004 1 0000000008d81af9 20 4 30 10 -1",
  "",
].join("\n");

test("parseProcNetTcp: v4 LISTEN rows only, little-endian words, hex port, uid and inode", () => {
  assert.deepEqual(parseProcNetTcp(TCP, 4), [
    { localAddress: "0.0.0.0", port: 8000, inode: 424242, uid: 1001 },
    { localAddress: "127.0.0.1", port: 11504, inode: 5001, uid: 0 },
    { localAddress: "10.0.0.5", port: 8000, inode: 5003, uid: 998 },
  ]);
  assert.deepEqual(
    parseProcNetTcp(TCP, 4).map((s) => s.inode),
    [424242, 5001, 5003],
    "ESTABLISHED (01) and TIME_WAIT (06) rows are not listeners",
  );
  assert.deepEqual(parseProcNetTcp("", 4), []);
  assert.deepEqual(parseProcNetTcp(TCP.split("\n")[0] ?? "", 4), [], "the header alone");
});

test("parseProcNetTcp: v6 in four words — ::, ::1, v4-mapped; malformed rows skipped", () => {
  const six = [
    TCP6,
    // 2001:db8:0:0:1:0:0:1 — two zero runs of two, the first is compressed (RFC 5952)
    "   8: B80D0120000000000000010001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6007 1 0000000008d81af9 100 0 0 10 0",
    // fe80::1
    "   9: 000080FE000000000000000001000000:0051 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6008 1 0000000008d81af9 100 0 0 10 0",
  ].join("\n");
  assert.deepEqual(parseProcNetTcp(six, 6), [
    { localAddress: "::", port: 11505, inode: 6001, uid: 0 },
    { localAddress: "::1", port: 11506, inode: 6002, uid: 1001 },
    { localAddress: "::ffff:127.0.0.1", port: 11507, inode: 6003, uid: 0 },
    { localAddress: "2001:db8::1:0:0:1", port: 80, inode: 6007, uid: 0 },
    { localAddress: "fe80::1", port: 81, inode: 6008, uid: 0 },
  ]);
  assert.deepEqual(parseProcNetTcp(TCP, 6), [], "v4 words are not v6 addresses");
});

test("listenSectionEnded: a complete row that is not LISTEN ends the listening section", () => {
  const lines = TCP.split("\n");
  assert.equal(listenSectionEnded(lines.slice(0, 4).join("\n") + "\n"), false, "header and listeners");
  assert.equal(listenSectionEnded(lines.slice(0, 5).join("\n")), false, "the ESTABLISHED row may be cut short");
  assert.equal(listenSectionEnded(lines.slice(0, 5).join("\n") + "\n"), true);
  assert.equal(listenSectionEnded(""), false);
});

test("acceptingAddresses: who takes a connection to each kind of host", () => {
  const sorted = (h: string | undefined) => {
    const a = acceptingAddresses(h);
    return a === "any" ? a : [...a].sort();
  };
  const v4 = ["0.0.0.0", "127.0.0.1", "::", "::ffff:0.0.0.0", "::ffff:127.0.0.1"];
  assert.deepEqual(sorted("127.0.0.1"), v4);
  assert.deepEqual(sorted("0.0.0.0"), v4, "connecting to 0.0.0.0 reaches loopback");
  assert.deepEqual(sorted("::ffff:127.0.0.1"), v4, "a v4-mapped host is a v4 connection");
  assert.deepEqual(sorted("::1"), ["::", "::1"]);
  assert.deepEqual(sorted("[::1]"), ["::", "::1"]);
  assert.deepEqual(sorted("::"), ["::", "::1"]);
  assert.deepEqual(sorted("0:0:0:0:0:0:0:1"), ["::", "::1"]);
  assert.deepEqual(sorted("FE80::1%eth0"), ["::", "fe80::1"]);
  assert.deepEqual(sorted("localhost"), [...v4, "::1"].sort());
  assert.equal(sorted("gpu-box.internal"), "any", "no DNS here");
  assert.equal(sorted(undefined), "any");
});

test("listenersFor: by port and by the addresses that take the host's connections", () => {
  const all = [...parseProcNetTcp(TCP, 4), ...parseProcNetTcp(TCP6, 6)];
  const inodes = (port: number, host?: string) => listenersFor(all, port, host).map((s) => s.inode);
  assert.deepEqual(inodes(8000, "127.0.0.1"), [424242], "0.0.0.0 takes it; 10.0.0.5 does not");
  assert.deepEqual(inodes(8000, "10.0.0.5"), [424242, 5003]);
  assert.deepEqual(inodes(8000), [424242, 5003]);
  assert.deepEqual(inodes(11504, "127.0.0.1"), [5001]);
  assert.deepEqual(inodes(11504, "::1"), [], "a v4 loopback listener does not take ::1");
  assert.deepEqual(inodes(11505, "127.0.0.1"), [6001], ":: counts as dual-stack");
  assert.deepEqual(inodes(11506, "127.0.0.1"), [], "::1 does not take v4");
  assert.deepEqual(inodes(11506, "localhost"), [6002]);
  assert.deepEqual(inodes(11507, "127.0.0.1"), [6003], "::ffff:127.0.0.1 takes v4 loopback");
  assert.deepEqual(inodes(11507, "127.0.0.2"), []);
  assert.deepEqual(inodes(9, "127.0.0.1"), []);
});

test("socketInodeOfLink: socket links only", () => {
  assert.equal(socketInodeOfLink("socket:[12345]"), 12345);
  assert.equal(socketInodeOfLink("pipe:[12345]"), undefined);
  assert.equal(socketInodeOfLink("anon_inode:[eventfd]"), undefined);
  assert.equal(socketInodeOfLink("/dev/nvidia0"), undefined);
});

test("portHolder: ours only when every listener is ours; foreign or unknown otherwise", () => {
  const s = (...n: number[]) => new Set(n);
  assert.deepEqual(portHolder([], [{ pid: 1, inodes: s(5) }]), { state: "nobody" });
  assert.deepEqual(portHolder([5], [{ pid: 10, inodes: s(1, 2) }, { pid: 11, inodes: s(5) }]), { state: "ours", pid: 11 }, "a child of the launcher binds");
  assert.deepEqual(portHolder([5, 6], [{ pid: 10, inodes: s(5) }, { pid: 11, inodes: s(6) }]), { state: "ours", pid: 10 });
  assert.deepEqual(portHolder([5], [{ pid: 10, inodes: s(1) }]), { state: "foreign", inode: 5 });
  assert.deepEqual(portHolder([5], []), { state: "foreign", inode: 5 }, "no backend process at all");
  assert.deepEqual(portHolder([5, 7], [{ pid: 10, inodes: s(5) }]), { state: "foreign", inode: 7 }, "an orphan beside us (SO_REUSEPORT) may take the probe");
  const u = portHolder([5], [{ pid: 10, inodes: s(1) }, { pid: 11, inodes: "unreadable" }]);
  assert.equal(u.state, "unknown", "the unreadable one may hold it: not 'not ours'");
  assert.match(u.state === "unknown" ? u.why : "", /pid 11/);
  assert.deepEqual(portHolder([5], [{ pid: 10, inodes: s(5) }, { pid: 11, inodes: "unreadable" }]), { state: "ours", pid: 10 }, "placed without the unreadable one");
});

test("describeHolder: the operator's sentence", () => {
  assert.equal(describeHolder(8000, { state: "foreign", pid: 4242, comm: "python3", uid: 1001 }), "port 8000 is held by pid 4242 (python3, uid 1001), not by the backend llmsup started");
  assert.equal(describeHolder(8000, { state: "foreign", uid: 1001 }), "port 8000 is held by another process (uid 1001), not by the backend llmsup started");
  assert.equal(describeHolder(8000, { state: "foreign" }), "port 8000 is held by another process, not by the backend llmsup started");
  assert.equal(describeHolder(8000, { state: "nobody" }), "nothing listens on port 8000");
  assert.equal(describeHolder(8000, { state: "ours", pid: 7 }), "port 8000 is held by pid 7 of the backend llmsup started");
  assert.equal(describeHolder(8000, { state: "unknown", why: "x" }), "cannot tell who holds port 8000: x");
});

/** A fake /proc: net/tcp{,6} and, per pid, fd links and comm; `fd: "unreadable"` makes fd a file (readdir fails, not with ENOENT). */
function fakeProc(t: Parameters<typeof tempDir>[0], procs: Record<number, { comm: string; fd: Record<number, string> | "unreadable" }>, tables: { tcp?: string; tcp6?: string } = { tcp: TCP, tcp6: TCP6 }): string {
  const proc = tempDir(t);
  mkdirSync(`${proc}/net`);
  if (tables.tcp !== undefined) writeFileSync(`${proc}/net/tcp`, tables.tcp);
  if (tables.tcp6 !== undefined) writeFileSync(`${proc}/net/tcp6`, tables.tcp6);
  mkdirSync(`${proc}/self`);
  for (const [pid, p] of Object.entries(procs)) {
    mkdirSync(`${proc}/${pid}`);
    writeFileSync(`${proc}/${pid}/comm`, `${p.comm}\n`);
    if (p.fd === "unreadable") writeFileSync(`${proc}/${pid}/fd`, "");
    else {
      mkdirSync(`${proc}/${pid}/fd`);
      for (const [fd, target] of Object.entries(p.fd)) symlinkSync(target, `${proc}/${pid}/fd/${fd}`);
    }
  }
  return proc;
}

test("socketInodesOf and findSocketOwner over a fake /proc: sockets only; gone is empty, unreadable is not", async (t) => {
  const proc = fakeProc(t, {
    100: { comm: "vllm", fd: { 0: "/dev/null", 1: "pipe:[77]", 3: "socket:[5001]", 4: "socket:[5002]", 5: "anon_inode:[eventfd]" } },
    4242: { comm: "python3", fd: { 0: "/dev/null", 7: "socket:[424242]" } },
    300: { comm: "secret", fd: "unreadable" },
    500: { comm: "busy", fd: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [i, `socket:[${9000 + i}]`])) },
  });
  assert.deepEqual(await socketInodesOf(100, proc), new Set([5001, 5002]));
  const all = await socketInodesOf(500, proc);
  assert.equal(all !== "unreadable" && all.size, 200);
  const early = await socketInodesOf(500, proc, new Set([9010]));
  assert.ok(early !== "unreadable" && early.has(9010) && early.size <= 64, "read in fd order, stopping once the wanted inode is seen");
  const late = await socketInodesOf(500, proc, new Set([9010, 9199, 1]));
  assert.ok(late !== "unreadable" && late.size === 200, "an inode it does not hold means reading all");
  assert.deepEqual(await socketInodesOf(999, proc), new Set(), "a gone process holds nothing");
  assert.equal(await socketInodesOf(300, proc), "unreadable");
  assert.equal(await findSocketOwner(424242, { proc }), 4242);
  assert.equal(await findSocketOwner(424242, { proc, skip: new Set([4242]) }), undefined);
  assert.equal(await findSocketOwner(1, { proc }), undefined);
  assert.equal(await findSocketOwner(424242, { proc: `${proc}/nope` }), undefined);
});

test("whoListens over a fake /proc: ours, foreign named with comm and uid, unknown, nobody", async (t) => {
  const proc = fakeProc(t, {
    100: { comm: "vllm", fd: { 3: "socket:[5001]" } },
    101: { comm: "VLLM::APIServer", fd: { 9: "socket:[6001]" } },
    4242: { comm: "python3", fd: { 7: "socket:[424242]" } },
    300: { comm: "other", fd: "unreadable" },
  });
  assert.deepEqual(await whoListens(11504, "127.0.0.1", [100], { proc }), { state: "ours", pid: 100 });
  assert.deepEqual(await whoListens(11505, "127.0.0.1", [100, 101], { proc }), { state: "ours", pid: 101 }, "the child binds");
  const foreign = await whoListens(8000, "127.0.0.1", [100, 101], { proc });
  assert.deepEqual(foreign, { state: "foreign", pid: 4242, comm: "python3", uid: 1001, inode: 424242 });
  assert.equal(describeHolder(8000, foreign), "port 8000 is held by pid 4242 (python3, uid 1001), not by the backend llmsup started");
  assert.equal((await whoListens(8000, "127.0.0.1", [100, 300], { proc })).state, "unknown", "our pid 300 may be the holder");
  assert.deepEqual(await whoListens(11506, "127.0.0.1", [100], { proc }), { state: "nobody" }, "::1 does not take 127.0.0.1");
  assert.deepEqual(await whoListens(9, "127.0.0.1", [100], { proc }), { state: "nobody" });
  assert.deepEqual(await whoListens(11507, "127.0.0.1", [], { proc }), { state: "foreign", uid: 0, inode: 6003 }, "nobody holds the inode's fd that we can see");
});

test("whoListens: a missing tcp6 (IPv6 off) is fine; no table at all is unknown", async (t) => {
  const v4only = fakeProc(t, { 100: { comm: "x", fd: { 3: "socket:[5001]" } } }, { tcp: TCP });
  assert.deepEqual(await whoListens(11504, "127.0.0.1", [100], { proc: v4only }), { state: "ours", pid: 100 });
  assert.deepEqual(await portListeners(11504, "127.0.0.1", v4only), [{ localAddress: "127.0.0.1", port: 11504, inode: 5001, uid: 0 }] satisfies ListeningSocket[]);
  // A busy table: the reader stops at the first established row, so a (bogus) listener 100 KiB later is never read.
  const established = (i: number) => `${String(i).padStart(4)}: 0100007F:1F40 0100007F:${(0x8000 + i).toString(16).toUpperCase()} 01 00000000:00000000 00:00000000 00000000     0        0 ${70000 + i} 1 0000000014bab8e5 20 4 30 10 -1`;
  const rows = Array.from({ length: 800 }, (_, i) => established(i + 1));
  const late = "9999: 0100007F:2CF4 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7777 1 0000000000000000 100 0 0 10 0";
  const busyText = [...TCP.split("\n").slice(0, 4), ...rows, late, ""].join("\n");
  assert.ok(busyText.length > 100_000 && parseProcNetTcp(busyText, 4).some((s) => s.inode === 7777));
  const busy = fakeProc(t, {}, { tcp: busyText });
  assert.deepEqual((await portListeners(8000, undefined, busy)).map((s) => s.inode), [424242, 5003]);
  assert.deepEqual(await portListeners(11508, undefined, busy), [], "not read past the listening section");
  const none = fakeProc(t, {}, {});
  const r = await whoListens(11504, "127.0.0.1", [100], { proc: none });
  assert.equal(r.state, "unknown");
});

// ---- real sockets on this machine ----------------------------------------

/** A `node -e` child listening on 127.0.0.1:0, in its own process group; resolves with its pid and port. */
async function listeningChild(t: { after(fn: () => void): void }): Promise<{ pid: number; port: number }> {
  const child = spawn(process.execPath, ["-e", `const s = require("node:net").createServer().listen(0, "127.0.0.1", () => console.log(s.address().port)); setTimeout(() => process.exit(0), 60000);`], {
    stdio: ["ignore", "pipe", "inherit"],
    detached: true,
  });
  t.after(() => {
    child.kill("SIGKILL");
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("child did not listen within 10 s")), 10_000);
    child.stdout.once("data", (d: Buffer) => {
      clearTimeout(timer);
      resolve(Number(String(d).trim()));
    });
    child.once("exit", (code) => reject(new Error(`child exited early (${code})`)));
  });
  assert.ok(child.pid !== undefined && port > 0);
  return { pid: child.pid, port };
}

/** A port nobody listens on now (bound, then released). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test("real: a child's listener is ours by its pid and group, foreign to us, and a free port is nobody's", { timeout: 30_000 }, async (t) => {
  const child = await listeningChild(t);
  assert.deepEqual(await whoListens(child.port, "127.0.0.1", [child.pid]), { state: "ours", pid: child.pid });
  assert.deepEqual(await whoListensInGroup(child.port, "127.0.0.1", child.pid), { state: "ours", pid: child.pid });
  assert.deepEqual(await whoListens(child.port, "localhost", [process.pid, child.pid]), { state: "ours", pid: child.pid });

  const foreign = await whoListens(child.port, "127.0.0.1", [process.pid]);
  assert.equal(foreign.state, "foreign");
  if (foreign.state !== "foreign") return;
  assert.equal(foreign.pid, child.pid);
  // Node names its main thread: /proc/<pid>/comm reads "MainThread" on recent versions, "node" on older ones.
  const comm = readFileSync(`/proc/${child.pid}/comm`, "utf8").trim();
  assert.ok(comm === "node" || comm === "MainThread", comm);
  assert.equal(foreign.comm, comm);
  assert.equal(foreign.uid, process.getuid?.());
  assert.equal((await whoListensInGroup(child.port, "127.0.0.1", process.pid)).state, "foreign");

  assert.deepEqual(await whoListens(child.port, "::1", [child.pid]), { state: "nobody" }, "127.0.0.1 does not take ::1");
  assert.deepEqual(await whoListens(await freePort(), "127.0.0.1", [child.pid]), { state: "nobody" });
});

test("real: a listener on :: in this process takes 127.0.0.1", { timeout: 10_000 }, async (t) => {
  const server = net.createServer();
  const listened = await new Promise<boolean>((resolve) => {
    server.once("error", () => resolve(false));
    server.listen({ port: 0, host: "::" }, () => resolve(true));
  });
  if (!listened) {
    t.skip("IPv6 is not available here");
    return;
  }
  t.after(() => {
    server.close();
  });
  const port = (server.address() as net.AddressInfo).port;
  const listeners = await portListeners(port, "127.0.0.1");
  assert.deepEqual(listeners.map((l) => l.localAddress), ["::"]);
  assert.deepEqual(await whoListens(port, "127.0.0.1", [process.pid]), { state: "ours", pid: process.pid });
  assert.deepEqual(await whoListens(port, "::1", [process.pid]), { state: "ours", pid: process.pid });
});
