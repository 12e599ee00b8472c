/**
 * Can this configuration run on this host? The pure half: given facts about
 * the host (file modes and owners, users, the daemon's environment, GPUs,
 * ports), decide every error and warning. host-facts.ts gathers the facts.
 *
 * Errors are certain failures at start (a program that is not there, a secret
 * the daemon cannot read, a variable that is not set); warnings are what may
 * be fine (a port in use, perhaps by our own backends from before; a secret
 * others can read). Modes are judged for the user the daemon (or a backend's
 * process.user) runs as, not for whoever runs check-config: root can read
 * everything, llmsup cannot.
 */
import path from "node:path";
import { parseHostPort } from "./fields.ts";
import type { Config, ConfigProblem } from "./types.ts";

export interface Identity {
  readonly name: string;
  readonly uid: number;
  /** Primary group first, then supplementary groups. */
  readonly gids: readonly number[];
}

export interface FileFact {
  readonly kind: "file" | "dir" | "other";
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
}
/** A stat result, or the errno code (ENOENT, EACCES, ENOTDIR) that stopped it. */
export type PathFact = FileFact | { readonly error: string };

/** "free", "in_use" (EADDRINUSE), or another errno from binding. */
export type PortFact = "free" | "in_use" | string;

export interface HostFacts {
  /** The environment the daemon will have: the current one plus --env-file. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The daemon's working directory (relative commands resolve against it). */
  readonly cwd: string;
  /** Who the daemon runs as (--user, else whoever runs check-config). */
  readonly daemon: Identity;
  /** uid of whoever gathered the facts: a stat it was refused says nothing about another user. */
  readonly checkerUid: number;
  /** process.user names → uid (undefined: no such user). */
  readonly users: ReadonlyMap<string, number | undefined>;
  /** process.group names → gid (undefined: no such group). */
  readonly groups: ReadonlyMap<string, number | undefined>;
  /** Every path asked for by hostNeeds, and every directory above it. */
  readonly paths: ReadonlyMap<string, PathFact>;
  /** GPU indices nvidia-smi lists; undefined when not checked (see gpuSkipped). */
  readonly gpus?: readonly number[];
  readonly gpuSkipped?: string;
  /** "host:port" → what binding it said. */
  readonly ports: ReadonlyMap<string, PortFact>;
}

export interface HostReport {
  readonly errors: readonly ConfigProblem[];
  readonly warnings: readonly ConfigProblem[];
  /** Checks that were not made, and why. */
  readonly skipped: readonly string[];
}

export interface PortNeed {
  readonly path: string;
  readonly host: string;
  readonly port: number;
  readonly what: string;
}

export interface HostNeeds {
  readonly paths: readonly string[];
  readonly users: readonly string[];
  readonly groups: readonly string[];
  readonly ports: readonly PortNeed[];
  /** True when a backend names GPUs and the GPU monitor is on: ask nvidia-smi. */
  readonly gpus: boolean;
}

interface SecretRef {
  readonly path: string;
  readonly file: string;
  /** A problem here is only a warning (alerts are off: only test-alert would read it). */
  readonly soft: boolean;
}
interface EnvRef {
  readonly path: string;
  readonly name: string;
  readonly soft: boolean;
}

function secretRefs(c: Config): { files: SecretRef[]; vars: EnvRef[] } {
  const files: SecretRef[] = [];
  const vars: EnvRef[] = [];
  c.backends.forEach((b, i) => {
    if (b.api_key_file) files.push({ path: `backend[${i}].api_key_file`, file: b.api_key_file, soft: false });
    if (b.api_key_env) vars.push({ path: `backend[${i}].api_key_env`, name: b.api_key_env, soft: false });
    for (const [k, f] of Object.entries(b.process?.secret_env ?? {})) files.push({ path: `backend[${i}].process.secret_env.${k}`, file: f, soft: false });
  });
  if (c.router.api_keys_file) files.push({ path: "router.api_keys_file", file: c.router.api_keys_file, soft: false });
  if (c.router.api_keys_env) vars.push({ path: "router.api_keys_env", name: c.router.api_keys_env, soft: false });
  const soft = !c.alerts.enabled;
  if (c.alerts.smtp.password_file) files.push({ path: "alerts.smtp.password_file", file: c.alerts.smtp.password_file, soft });
  if (c.alerts.smtp.password_env) vars.push({ path: "alerts.smtp.password_env", name: c.alerts.smtp.password_env, soft });
  const am = c.alerts.alertmanager;
  if (am?.bearer_token_file) files.push({ path: "alerts.alertmanager.bearer_token_file", file: am.bearer_token_file, soft });
  if (am?.password_file) files.push({ path: "alerts.alertmanager.password_file", file: am.password_file, soft });
  c.alerts.webhook.forEach((w, i) => files.push({ path: `alerts.webhook[${i}].secret_file`, file: w.secret_file, soft }));
  return { files, vars };
}

/** The directories PATH lists, from the backend's own env, else the daemon's. */
function searchPath(c: Config["backends"][number], env: HostFacts["env"]): string[] {
  const p = c.process?.env.PATH ?? env.PATH ?? "/usr/local/bin:/usr/bin:/bin";
  return p.split(":").filter((d) => d !== "");
}

/** Where command[0] may be: one path when it has a slash, else each PATH entry. */
function commandCandidates(b: Config["backends"][number], env: HostFacts["env"], cwd: string): string[] {
  const program = b.process!.command[0]!;
  if (program.includes("/")) return [path.resolve(b.process!.cwd ?? cwd, program)];
  return searchPath(b, env).map((d) => path.resolve(cwd, d, program));
}

function managed(c: Config): [Config["backends"][number], number][] {
  return c.backends.map((b, i) => [b, i] as [Config["backends"][number], number]).filter(([b]) => b.managed && b.process !== undefined);
}

function portOf(url: string): { host: string; port: number } | undefined {
  try {
    const u = new URL(url);
    return { host: u.hostname.replace(/^\[|\]$/g, ""), port: u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80 };
  } catch {
    return undefined;
  }
}

/** What to find out about the host for this configuration. */
export function hostNeeds(c: Config, env: HostFacts["env"], cwd: string): HostNeeds {
  const paths = new Set<string>();
  const users = new Set<string>();
  const groups = new Set<string>();
  const ports: PortNeed[] = [];
  for (const [b, i] of managed(c)) {
    for (const p of commandCandidates(b, env, cwd)) paths.add(p);
    if (b.process!.cwd) paths.add(b.process!.cwd);
    if (b.process!.user) users.add(b.process!.user);
    if (b.process!.group) groups.add(b.process!.group);
    const hp = portOf(b.url);
    if (hp) ports.push({ path: `backend[${i}].url`, ...hp, what: `backend "${b.name}"` });
  }
  for (const s of secretRefs(c).files) paths.add(s.file);
  if (c.router.listen !== "") {
    const hp = parseHostPort(c.router.listen);
    if (hp) ports.push({ path: "router.listen", ...hp, what: "the router" });
  }
  const gpus = c.gpu.enabled && c.backends.some((b) => b.gpus.length > 0);
  return { paths: [...paths], users: [...users], groups: [...groups], ports, gpus };
}

/** Every directory above `p`, outermost first. */
export function ancestors(p: string): string[] {
  const out: string[] = [];
  for (let d = path.dirname(p); ; d = path.dirname(d)) {
    out.unshift(d);
    if (d === path.dirname(d)) return out;
  }
}

const isFact = (f: PathFact | undefined): f is FileFact => f !== undefined && !("error" in f);

/** Whether `id` has permission `bit` (4 read, 2 write, 1 execute) on a file, by its mode and owners. */
export function permits(id: Identity, f: FileFact, bit: 4 | 2 | 1): boolean {
  if (id.uid === 0) return bit !== 1 || f.kind === "dir" || (f.mode & 0o111) !== 0;
  if (f.uid === id.uid) return (f.mode & (bit << 6)) !== 0;
  if (id.gids.includes(f.gid)) return (f.mode & (bit << 3)) !== 0;
  return (f.mode & bit) !== 0;
}

/** The first directory above `p` that `id` cannot search, if any (unknown directories are given the benefit of the doubt). */
function blockedAt(id: Identity, p: string, paths: HostFacts["paths"]): string | undefined {
  return ancestors(p).find((d) => {
    const f = paths.get(d);
    return isFact(f) && !permits(id, f, 1);
  });
}

const octal = (mode: number) => `0${(mode & 0o777).toString(8).padStart(3, "0")}`;
const owner = (f: FileFact) => `owner uid ${f.uid}, group gid ${f.gid}, mode ${octal(f.mode)}`;
const ERRNO_WORDS: Record<string, string> = { ENOENT: "no such file", EACCES: "permission denied", ENOTDIR: "a path component is not a directory", ELOOP: "too many symbolic links" };
const errnoWords = (code: string) => ERRNO_WORDS[code] ?? code;

/** Decides every host problem from the facts. Pure. */
export function decideHostChecks(c: Config, facts: HostFacts): HostReport {
  const errors: ConfigProblem[] = [];
  const warnings: ConfigProblem[] = [];
  const skipped: string[] = [];
  const daemon = facts.daemon;
  const asChecker = daemon.uid === facts.checkerUid;

  // The remediation ladder's GPU reset: nvidia-smi -r needs root; as anyone else it is refused and every reset need becomes "reboot required".
  if (c.gpu.enabled && c.gpu.auto_reset && daemon.uid !== 0) {
    warnings.push({
      path: "gpu.auto_reset",
      rule: "auto_reset_needs_root",
      message: `gpu.auto_reset = true, but the daemon runs as ${daemon.name} (uid ${daemon.uid}) and nvidia-smi -r needs root: every reset would be refused and escalate to "reboot required"; run llmsup as root (remove User= from the unit) or set auto_reset = false`,
    });
  }

  // Programs: command[0] exists and the user the backend runs as may execute it.
  for (const [b, i] of managed(c)) {
    const proc = b.process!;
    const at = `backend[${i}].process`;
    let uid = daemon.uid;
    let who = daemon.name;
    if (proc.user) {
      const u = facts.users.get(proc.user);
      if (u === undefined) {
        errors.push({ path: `${at}.user`, rule: "user_unknown", message: `user "${proc.user}" does not exist on this host; the backend cannot be started`, expected: "an existing user", found: JSON.stringify(proc.user) });
        continue;
      }
      if (u !== daemon.uid && daemon.uid !== 0) {
        errors.push({ path: `${at}.user`, rule: "user_switch", message: `running the backend as "${proc.user}" needs the daemon to start as root, but it runs as ${daemon.name} (uid ${daemon.uid})`, expected: "the daemon's own user, or a daemon started as root", found: JSON.stringify(proc.user) });
      }
      uid = u;
      who = proc.user;
    }
    let gid = daemon.gids[0] ?? 0;
    if (proc.group) {
      const g = facts.groups.get(proc.group);
      if (g === undefined) {
        errors.push({ path: `${at}.group`, rule: "group_unknown", message: `group "${proc.group}" does not exist on this host; the backend cannot be started`, expected: "an existing group", found: JSON.stringify(proc.group) });
        continue;
      }
      gid = g;
    }
    // A switched user keeps only its one group (supplementary groups are dropped at setuid).
    const id: Identity = proc.user || proc.group ? { name: who, uid, gids: [gid] } : daemon;
    if (proc.cwd) {
      const f = facts.paths.get(proc.cwd);
      if (f && !(isFact(f) && f.kind === "dir")) errors.push({ path: `${at}.cwd`, rule: "cwd", message: `${proc.cwd}: ${isFact(f) ? "not a directory" : errnoWords(f.error)}`, expected: "an existing directory", found: JSON.stringify(proc.cwd) });
    }
    const program = proc.command[0]!;
    const candidates = commandCandidates(b, facts.env, facts.cwd);
    const existing = candidates.filter((p) => isFact(facts.paths.get(p)));
    const runnable = existing.find((p) => {
      const f = facts.paths.get(p) as FileFact;
      return f.kind === "file" && permits(id, f, 1) && blockedAt(id, p, facts.paths) === undefined;
    });
    if (runnable) continue;
    const where = program.includes("/") ? candidates[0]! : `on PATH (${searchPath(b, facts.env).join(":")})`;
    const base = { path: `${at}.command[0]`, expected: `an executable file${proc.user ? ` that user "${who}" may run` : ""}`, found: JSON.stringify(program) };
    if (existing.length === 0) {
      const refused = candidates.map((p) => facts.paths.get(p)).find((f) => f && !isFact(f) && f.error === "EACCES");
      if (refused && !asChecker) {
        warnings.push({ ...base, rule: "command_unchecked", message: `cannot look at ${where} as uid ${facts.checkerUid}; run check-config as root or as ${who} to check it` });
      } else {
        errors.push({ ...base, rule: "command_missing", message: `${program} not found ${program.includes("/") ? `(${where}: no such file)` : where}; the backend cannot be started` });
      }
      continue;
    }
    const p = existing[0]!;
    const f = facts.paths.get(p) as FileFact;
    const blocked = blockedAt(id, p, facts.paths);
    const why =
      f.kind !== "file"
        ? `${p} is ${f.kind === "dir" ? "a directory" : "not a regular file"}`
        : blocked
          ? `${who} cannot enter ${blocked} to reach ${p}`
          : `${p} is not executable by ${who} (${owner(f)})`;
    errors.push({ ...base, rule: "command_not_executable", message: `${why}; the backend cannot be started` });
  }

  // Secrets by file: there, readable by the daemon's user, not readable by everyone.
  const { files, vars } = secretRefs(c);
  for (const s of files) {
    const into = s.soft ? warnings : errors;
    const tail = s.soft ? " (alerts are off: only `llmsup test-alert` and enabling alerts need it)" : "";
    const f = facts.paths.get(s.file);
    const base = { path: s.path, expected: `a file readable by ${daemon.name} and nobody else`, found: JSON.stringify(s.file) };
    if (!f) continue;
    if (!isFact(f)) {
      if (f.error === "EACCES" && !asChecker) warnings.push({ ...base, rule: "secret_unchecked", message: `cannot look at ${s.file} as uid ${facts.checkerUid}; run check-config as root or as ${daemon.name} to check it` });
      else into.push({ ...base, rule: "secret_unreadable", message: `cannot read ${s.file}: ${errnoWords(f.error)}${tail}` });
      continue;
    }
    if (f.kind !== "file") {
      into.push({ ...base, rule: "secret_unreadable", message: `${s.file} is ${f.kind === "dir" ? "a directory" : "not a regular file"}${tail}` });
      continue;
    }
    const blocked = blockedAt(daemon, s.file, facts.paths);
    if (blocked || !permits(daemon, f, 4)) {
      into.push({ ...base, rule: "secret_unreadable", message: `${s.file} is not readable by ${daemon.name} (uid ${daemon.uid})${blocked ? `: cannot enter ${blocked}` : ` (${owner(f)})`}${tail}` });
      continue;
    }
    if (f.mode & 0o004) {
      warnings.push({ ...base, rule: "secret_exposed", message: `${s.file} is readable by every user on this host (mode ${octal(f.mode)}); chmod 0600 (owned by ${daemon.name}) or 0640 with a group only ${daemon.name} is in` });
    } else if (f.mode & 0o040 && (f.uid === daemon.uid || daemon.uid === 0)) {
      warnings.push({ ...base, rule: "secret_exposed", message: `${s.file} is readable by group gid ${f.gid} (mode ${octal(f.mode)}), which ${daemon.name} does not need; chmod 0600` });
    }
  }

  // Secrets by variable: set in the environment the daemon gets.
  for (const v of vars) {
    const value = facts.env[v.name];
    if (value !== undefined && value !== "") continue;
    (v.soft ? warnings : errors).push({
      path: v.path,
      rule: "env_unset",
      message: `${v.name} is ${value === "" ? "empty" : "not set"} in the environment the daemon gets; set it in the unit (Environment= or EnvironmentFile=) and pass that file here with --env-file${v.soft ? " (alerts are off: only `llmsup test-alert` and enabling alerts need it)" : ""}`,
      expected: `${v.name} set`,
      found: value === "" ? "an empty value" : "not set",
    });
  }

  // GPUs named exist.
  if (c.gpu.enabled && c.backends.some((b) => b.gpus.length > 0)) {
    if (facts.gpus === undefined) skipped.push(`GPU indices not checked: ${facts.gpuSkipped ?? "nvidia-smi not available"}`);
    else {
      const have = new Set(facts.gpus);
      c.backends.forEach((b, i) =>
        b.gpus.forEach((g, j) => {
          if (!have.has(g)) {
            errors.push({ path: `backend[${i}].gpus[${j}]`, rule: "gpu_missing", message: `GPU ${g} does not exist on this host (nvidia-smi lists ${facts.gpus!.length ? facts.gpus!.join(", ") : "none"})`, expected: facts.gpus!.length ? `one of ${facts.gpus!.join(", ")}` : "no GPUs", found: String(g) });
          }
        }),
      );
    }
  }

  // Ports: free, or (warning) held by someone — perhaps our own backends from a previous run.
  for (const p of hostNeeds(c, facts.env, facts.cwd).ports) {
    const r = facts.ports.get(`${p.host}:${p.port}`);
    if (r === undefined || r === "free") continue;
    const hp = `${p.host}:${p.port}`;
    warnings.push(
      r === "in_use"
        ? { path: p.path, rule: "port_in_use", message: `${hp}, where ${p.what} listens, is in use: fine if it is llmsup's own ${p.what === "the router" ? "daemon" : "backend"} still running (it is adopted at start); otherwise ${p.what} will fail to listen`, expected: "a free port", found: "in use" }
        : { path: p.path, rule: "port_unavailable", message: `cannot listen on ${hp} for ${p.what}: ${r}`, expected: "a port this host can listen on", found: r },
    );
  }
  return { errors, warnings, skipped };
}

/** Parses a systemd EnvironmentFile: KEY=VALUE lines, # and ; comments, optional quotes. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    let value = m[2]!;
    const q = value[0];
    if ((q === '"' || q === "'") && value.endsWith(q) && value.length >= 2) {
      value = value.slice(1, -1);
      if (q === '"') value = value.replace(/\\(["\\$`])/g, "$1").replace(/\\n/g, "\n");
    }
    out[m[1]!] = value;
  }
  return out;
}
