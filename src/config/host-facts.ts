/**
 * The thin half of the host checks: stat files, read /etc/passwd and
 * /etc/group, read an EnvironmentFile, try to bind ports on this host, ask
 * nvidia-smi for its GPUs (through execa). Every decision is in host-checks.ts.
 */
import { constants as fsConstants } from "node:fs";
import { access, readFile, stat } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { ancestors, decideHostChecks, hostNeeds, parseEnvFile, type FileFact, type HostFacts, type HostReport, type Identity, type PathFact, type PortFact } from "./host-checks.ts";
import type { Config } from "./types.ts";

export interface GatherOptions {
  /** The current environment (the daemon's is this plus envFiles). */
  readonly env: NodeJS.ProcessEnv;
  /** EnvironmentFile(s) the unit gives the daemon. */
  readonly envFiles?: readonly string[];
  /** The user the daemon runs as; default: whoever runs this. */
  readonly user?: string;
  /** Working directory of the daemon; default "/" (systemd's), else process.cwd() for a foreground run. */
  readonly cwd?: string;
  /** nvidia-smi's answer deadline. */
  readonly smiTimeoutMs?: number;
}

interface PasswdEntry {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

async function readLines(file: string): Promise<string[][]> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).map((l) => l.split(":"));
}

async function passwd(): Promise<PasswdEntry[]> {
  return (await readLines("/etc/passwd")).map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]) }));
}

/** The identity of a named (or numeric) user: primary group plus the groups that list it. */
export async function identityOf(user: string): Promise<Identity | undefined> {
  const entry = (await passwd()).find((p) => p.name === user || (/^\d+$/.test(user) && p.uid === Number(user)));
  if (!entry) return undefined;
  const groups = await readLines("/etc/group");
  const extra = groups.filter((g) => (g[3] ?? "").split(",").includes(entry.name)).map((g) => Number(g[2]));
  return { name: entry.name, uid: entry.uid, gids: [entry.gid, ...extra.filter((g) => g !== entry.gid)] };
}

function currentIdentity(): Identity {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const name = (() => {
    try {
      return os.userInfo().username;
    } catch {
      return `uid ${uid}`;
    }
  })();
  return { name, uid, gids: [gid, ...(process.getgroups?.() ?? []).filter((g) => g !== gid)] };
}

async function pathFact(p: string): Promise<PathFact> {
  try {
    const s = await stat(p);
    const fact: FileFact = { kind: s.isFile() ? "file" : s.isDirectory() ? "dir" : "other", mode: s.mode, uid: s.uid, gid: s.gid };
    return fact;
  } catch (e) {
    return { error: (e as NodeJS.ErrnoException).code ?? "EIO" };
  }
}

/** Binds host:port for a moment: "free", "in_use", or the errno that refused it. */
export function probePort(host: string, port: number): Promise<PortFact> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", (e: NodeJS.ErrnoException) => resolve(e.code === "EADDRINUSE" ? "in_use" : (e.code ?? e.message)));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve("free")));
  });
}

async function lookupId(file: string, name: string): Promise<number | undefined> {
  if (/^\d+$/.test(name)) return Number(name);
  const row = (await readLines(file)).find((f) => f[0] === name);
  return row && row[2] !== undefined ? Number(row[2]) : undefined;
}

/** GPU indices from nvidia-smi, or why they could not be had. */
async function gpuIndices(smi: string, env: HostFacts["env"], timeoutMs: number): Promise<{ gpus?: number[]; skipped?: string }> {
  if (!smi.includes("/")) {
    const dirs = (env.PATH ?? "").split(":").filter(Boolean);
    let found: string | undefined;
    for (const d of dirs) {
      const p = path.join(d, smi);
      if (await access(p, fsConstants.X_OK).then(() => true, () => false)) {
        found = p;
        break;
      }
    }
    if (!found) return { skipped: `${smi} is not on PATH on this host` };
    smi = found;
  } else if (!(await access(smi, fsConstants.X_OK).then(() => true, () => false))) return { skipped: `${smi} is not present or not executable` };
  const r = await execa(smi, ["--query-gpu=index", "--format=csv,noheader,nounits"], {
    env: env as NodeJS.ProcessEnv,
    extendEnv: false,
    stdin: "ignore",
    timeout: timeoutMs,
    forceKillAfterDelay: false,
    reject: false,
  });
  if (r.failed) return { skipped: `${smi} failed: ${r.timedOut ? `no answer within ${timeoutMs} ms` : (r.shortMessage ?? "").split("\n")[0]}` };
  const gpus = r.stdout.split("\n").map((l) => l.trim()).filter((l) => /^\d+$/.test(l)).map(Number);
  return { gpus };
}

/** Reads the environment files; a file that cannot be read is an error the caller reports. */
export async function daemonEnvironment(env: NodeJS.ProcessEnv, envFiles: readonly string[] = []): Promise<Record<string, string | undefined>> {
  const out: Record<string, string | undefined> = { ...env };
  for (const f of envFiles) Object.assign(out, parseEnvFile(await readFile(f, "utf8")));
  return out;
}

/** Gathers the facts this configuration needs about this host. */
export async function gatherHostFacts(c: Config, o: GatherOptions): Promise<HostFacts> {
  const env = await daemonEnvironment(o.env, o.envFiles);
  const cwd = o.cwd ?? "/";
  const needs = hostNeeds(c, env, cwd);
  const current = currentIdentity();
  const daemon = o.user === undefined ? current : await identityOf(o.user);
  if (!daemon) throw new Error(`user "${o.user}" does not exist on this host`);

  const all = new Set<string>();
  for (const p of needs.paths) {
    all.add(p);
    for (const d of ancestors(p)) all.add(d);
  }
  const paths = new Map<string, PathFact>();
  await Promise.all([...all].map(async (p) => paths.set(p, await pathFact(p))));
  const users = new Map<string, number | undefined>();
  for (const u of needs.users) users.set(u, await lookupId("/etc/passwd", u));
  const groups = new Map<string, number | undefined>();
  for (const g of needs.groups) groups.set(g, await lookupId("/etc/group", g));
  const ports = new Map<string, PortFact>();
  for (const p of needs.ports) {
    const key = `${p.host}:${p.port}`;
    if (!ports.has(key)) ports.set(key, await probePort(p.host, p.port));
  }
  const gpu = needs.gpus ? await gpuIndices(c.gpu.nvidia_smi, env, o.smiTimeoutMs ?? 10_000) : {};
  return { env, cwd, daemon, checkerUid: current.uid, users, groups, paths, ports, gpus: gpu.gpus, gpuSkipped: gpu.skipped };
}

/** Gathers the facts and decides: every error and warning for this configuration on this host. */
export async function checkHost(c: Config, o: GatherOptions): Promise<HostReport> {
  return decideHostChecks(c, await gatherHostFacts(c, o));
}
