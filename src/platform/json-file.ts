/** Small-file persistence: atomic JSON writes (temp file, fsync, rename, directory fsync) and tolerant reads. */
import { open, readFile, rename, unlink } from "node:fs/promises";
import path from "node:path";

/** Writes `value` as JSON to `file` so a crash leaves the old or the new file, never a torn one. */
export async function writeJsonAtomic(file: string, value: unknown, mode = 0o600): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const fh = await open(tmp, "w", mode);
  try {
    await fh.writeFile(`${JSON.stringify(value)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await syncDir(path.dirname(file));
}

/** Makes a rename or unlink in `dir` durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r").catch(() => undefined);
  if (!fh) return;
  try {
    await fh.sync();
  } catch {
    /* some filesystems refuse fsync on a directory */
  } finally {
    await fh.close();
  }
}

/** The parsed JSON of `file`; undefined when it does not exist; "corrupt" when it cannot be parsed. */
export async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return "corrupt";
  }
}
