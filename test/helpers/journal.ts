/** A stand-in for the kernel log's journal reader, so that a daemon under test sees the XIDs a test writes. */
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

/**
 * A stand-in for `journalctl -k -f -o json --lines=0` in `dir`/bin: it follows `kernelLog`, a plain
 * kernel-log file (dmesg lines) that starts empty, and prints each line appended to it as a journal
 * JSON entry. Returns the directory to put first on the daemon's PATH.
 */
export function journalStandIn(dir: string, kernelLog: string): string {
  const bin = path.join(dir, "bin");
  mkdirSync(bin);
  const follower = path.join(bin, "follow-kernel-log.cjs");
  writeFileSync(
    follower,
    `const fs = require("node:fs");
const file = ${JSON.stringify(kernelLog)};
let offset = 0;
let partial = "";
setInterval(() => {
  const size = fs.statSync(file).size;
  if (size <= offset) return;
  const buf = Buffer.alloc(size - offset);
  const fd = fs.openSync(file, "r");
  fs.readSync(fd, buf, 0, buf.length, offset);
  fs.closeSync(fd);
  offset = size;
  const lines = (partial + buf.toString("utf8")).split("\\n");
  partial = lines.pop();
  for (const line of lines) process.stdout.write(JSON.stringify({ MESSAGE: line, _TRANSPORT: "kernel" }) + "\\n");
}, 50);
`,
  );
  const journalctl = path.join(bin, "journalctl");
  writeFileSync(journalctl, `#!/bin/sh\nexec '${process.execPath}' '${follower}'\n`);
  chmodSync(journalctl, 0o755);
  return bin;
}
