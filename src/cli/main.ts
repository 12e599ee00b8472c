#!/usr/bin/env node
/** Entry point of the `llmsup` executable: runMain (entry.ts) with this process's streams and environment. */
import { runMain } from "./entry.ts";
import { processIo } from "./output.ts";

void runMain(process.argv.slice(2), processIo()).then((code) => {
  process.exitCode = code;
});
