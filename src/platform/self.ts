/** How to start llmsup itself again: the node binary and this installation's CLI entry (sources or build). */
import { fileURLToPath } from "node:url";

/** Absolute path of the CLI entry beside this module: src/cli/main.ts when running from sources, dist/cli/main.js when built. */
export function selfEntry(): string {
  const ext = import.meta.url.endsWith(".ts") ? "ts" : "js";
  return fileURLToPath(new URL(`../cli/main.${ext}`, import.meta.url));
}

/** argv prefix that runs `llmsup` with the same node binary. */
export function selfCommand(): [string, string] {
  return [process.execPath, selfEntry()];
}
