#!/usr/bin/env node
/** Entry point of the `llmsup` executable. */
import { runCli } from "./program.ts";
import { EXIT } from "../errors/registry.ts";

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`llmsup: internal error (LLMSUP_E_INTERNAL): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = EXIT.SOFTWARE;
  },
);
