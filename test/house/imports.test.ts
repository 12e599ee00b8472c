/**
 * The layering the codebase keeps, as a test: folders depend on each other
 * without value cycles, and the libraries that touch the outside world are
 * imported only by the thin modules that wrap them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { REPO_ROOT } from "../helpers/cli.ts";

const SRC = path.join(REPO_ROOT, "src");

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly typeOnly: boolean;
}

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []));
}

/** Every import and re-export of every source file: what it names and whether only types cross. */
function imports(): Map<string, { spec: string; typeOnly: boolean }[]> {
  const out = new Map<string, { spec: string; typeOnly: boolean }[]>();
  const re = /^(?:import|export)\s+(type\s+)?(?:[^;'"]*?\sfrom\s+)?["']([^"']+)["']/gms;
  for (const f of files(SRC)) {
    const text = readFileSync(f, "utf8");
    const list: { spec: string; typeOnly: boolean }[] = [];
    for (const m of text.matchAll(re)) {
      // `import { type A, type B }` carries no value either.
      const clause = m[0];
      const braces = /\{([^}]*)\}/s.exec(clause)?.[1];
      const allTypes = braces !== undefined && braces.split(",").map((s) => s.trim()).filter(Boolean).every((s) => s.startsWith("type "));
      list.push({ spec: m[2]!, typeOnly: m[1] !== undefined || (allTypes && !/^import\s+\w/.test(clause.replace(/^import\s+\{/, "{"))) });
    }
    out.set(path.relative(SRC, f), list);
  }
  return out;
}

const folderOf = (rel: string) => rel.split(path.sep)[0]!;

function edges(): Edge[] {
  const out: Edge[] = [];
  for (const [file, list] of imports()) {
    for (const i of list) {
      if (!i.spec.startsWith(".")) continue;
      const target = path.relative(SRC, path.resolve(path.dirname(path.join(SRC, file)), i.spec));
      out.push({ from: file, to: target, typeOnly: i.typeOnly });
    }
  }
  return out;
}

/** Cycles among folders along value imports: each as the folders in order. */
function folderCycles(es: readonly Edge[]): string[][] {
  const graph = new Map<string, Set<string>>();
  for (const e of es) {
    if (e.typeOnly) continue;
    const a = folderOf(e.from);
    const b = folderOf(e.to);
    if (a === b) continue;
    if (!graph.has(a)) graph.set(a, new Set());
    graph.get(a)!.add(b);
  }
  const cycles: string[][] = [];
  const seen = new Set<string>();
  const walk = (node: string, trail: string[]) => {
    for (const next of graph.get(node) ?? []) {
      const at = trail.indexOf(next);
      if (at >= 0) {
        const cycle = trail.slice(at);
        const key = [...cycle].sort().join(">");
        if (!seen.has(key)) {
          seen.add(key);
          cycles.push([...cycle, next]);
        }
      } else walk(next, [...trail, next]);
    }
  };
  for (const start of graph.keys()) walk(start, [start]);
  return cycles;
}

/** Which files a package may be imported from (the thin shells over the outside world). */
const SHELLS: Record<string, (file: string) => boolean> = {
  // Processes, all through execa: the supervisor's backends, the GPU monitor's programs (nvidia-smi, journalctl),
  // check-config's nvidia-smi on this host, and the simulated vLLM's engine child.
  execa: (f) => [path.join("supervisor", "spawn.ts"), path.join("gpu", "spawn.ts"), path.join("config", "host-facts.ts"), path.join("sim", "backend", "engine-child.ts")].includes(f),
  nodemailer: (f) => f === path.join("alerts", "mailer.ts"),
  "node-cron": (f) => f === path.join("schedule", "scheduler.ts") || f === path.join("config", "schema.ts"),
  "node:sqlite": (f) => f === path.join("cache", "sqlite.ts"),
  // The router's upstream pools, and the drill's client of the router socket.
  undici: (f) => f === path.join("router", "upstream.ts") || f === path.join("drills", "traffic.ts"),
  // No process is started without execa: its types may be named, nothing more.
  "node:child_process": () => false,
  child_process: () => false,
};

test("no value import cycles between the folders of src/", () => {
  const cycles = folderCycles(edges());
  assert.deepEqual(cycles.map((c) => c.join(" → ")), []);
});

test("execa, nodemailer, node-cron, node:sqlite and undici are imported only by the thin modules that wrap them, and node:child_process for its types only", () => {
  const wrong: string[] = [];
  for (const [file, list] of imports()) {
    for (const i of list) {
      const allowed = SHELLS[i.spec];
      if (allowed && !i.typeOnly && !allowed(file)) wrong.push(`${file} imports ${i.spec}`);
    }
  }
  assert.deepEqual(wrong, []);
});

/**
 * The real dependencies and where each is defined: the composition root
 * (daemon/wire.ts) builds them and hands them down; nothing below it takes
 * one as a default.
 */
const REAL_DEPENDENCIES: Record<string, string> = {
  realClock: path.join("platform", "clock.ts"),
  spawnBackend: path.join("supervisor", "spawn.ts"),
  spawnChild: path.join("gpu", "spawn.ts"),
  loadSqlite: path.join("cache", "sqlite.ts"),
  createMailer: path.join("alerts", "mailer.ts"),
  nodeCronTicks: path.join("schedule", "scheduler.ts"),
};

/** Who may import them (as values): */
function mayImportRealDependencies(file: string): boolean {
  return (
    // the daemon's composition root;
    file === path.join("daemon", "wire.ts") ||
    // the one-shot commands (`llmsup gpus`, `test-alert`, …): programs of their own, each its own composition root;
    file.startsWith(`cli${path.sep}`) ||
    // the simulators (`llmsup sim …`): programs of their own too.
    file.startsWith(`sim${path.sep}`)
  );
}

test("the real clock, spawners, SQLite loader, mailer and cron ticks are imported only by the composition roots (daemon/wire.ts, cli/, sim/)", () => {
  const wrong: string[] = [];
  const re = /^import\s+\{([^}]*)\}\s*from\s+["']([^"']+)["']/gms;
  for (const f of files(SRC)) {
    const file = path.relative(SRC, f);
    if (mayImportRealDependencies(file)) continue;
    for (const m of readFileSync(f, "utf8").matchAll(re)) {
      if (!m[2]!.startsWith(".")) continue;
      const target = path.relative(SRC, path.resolve(path.dirname(f), m[2]!));
      const names = m[1]!.split(",").map((s) => s.trim()).filter((s) => s && !s.startsWith("type "));
      for (const n of names) {
        const name = n.split(/\s+as\s+/)[0]!;
        if (REAL_DEPENDENCIES[name] === target) wrong.push(`${file} imports ${name}`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});
