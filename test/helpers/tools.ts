/** The Debian tools some tests run for real (promtool, prometheus, alertmanager, nginx, haproxy): finding them, and promtool's lint of an exposition. */
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import path from "node:path";

/** A program on PATH (or in /usr/sbin, /sbin, where nginx and haproxy live, or in `extra` dirs), else undefined. Also used by the benchmark (scripts/bench-wrk.ts). */
export function which(bin: string, extra: readonly string[] = []): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/sbin", "/usr/bin", ...extra];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, bin);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/** `promtool check metrics` on a Prometheus exposition: what it found and its exit status, or, without promtool, why the lint could not run. */
export function promtoolCheckMetrics(text: string): { readonly missing: string } | { readonly status: number | null; readonly findings: string; readonly error: Error | undefined } {
  const promtool = which("promtool");
  if (!promtool) return { missing: "promtool not installed: apt-get install prometheus (Debian package); the exposition was not linted" };
  const r = spawnSync(promtool, ["check", "metrics"], { input: text, encoding: "utf8", timeout: 20_000 });
  return { status: r.status, findings: `${r.stdout}${r.stderr}`.trim(), error: r.error };
}
