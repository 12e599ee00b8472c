/** User and group names to numeric ids, from /etc/passwd and /etc/group (no native addon needed). */
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
