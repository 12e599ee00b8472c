/** Reading a control request: its path, its parameters, and the action it asks for. Pure. */

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly message: string };

/** The path's segments, each percent-decoded; a malformed escape is a bad request, not a crash. */
export function decodePath(pathname: string): Parsed<readonly string[]> {
  const raw = pathname.split("/").filter(Boolean);
  const out: string[] = [];
  for (const seg of raw) {
    try {
      out.push(decodeURIComponent(seg));
    } catch {
      return { ok: false, message: `malformed URL: path segment ${JSON.stringify(seg)} has a bad percent-escape` };
    }
  }
  return { ok: true, value: out };
}

/** A drill's duration when the request names none. */
export const DRILL_DEFAULT_MS = 60_000;
/** The longest a drill may hold its failure. */
export const DRILL_MAX_MS = 3_600_000;

/** Why a drill duration (milliseconds) is not allowed, or undefined when it is: a whole number from 1 ms to an hour. */
export function drillDurationProblem(ms: number): string | undefined {
  if (!Number.isSafeInteger(ms) || ms < 1) return "a drill lasts a whole number of milliseconds above zero";
  if (ms > DRILL_MAX_MS) return `a drill lasts at most an hour (${DRILL_MAX_MS} ms)`;
  return undefined;
}

/** The `duration_ms` parameter of a drill request: absent means a minute. */
export function drillDuration(raw: string | null): Parsed<number> {
  if (raw === null) return { ok: true, value: DRILL_DEFAULT_MS };
  const problem = /^\d+$/.test(raw) ? drillDurationProblem(Number(raw)) : "a drill lasts a whole number of milliseconds above zero";
  return problem === undefined ? { ok: true, value: Number(raw) } : { ok: false, message: `duration_ms=${JSON.stringify(raw)}: ${problem}` };
}

/** What an acting request does, as the audit log and a refusal name it: `stop` of `primary`, `drill backend-crash`, `reload`. */
export interface Action {
  readonly action: string;
  readonly target?: string;
}

export function actionOf(method: string, parts: readonly string[], query: URLSearchParams): Action {
  const [a, b, c] = parts;
  if (a === "reload" && parts.length === 1) return { action: "reload" };
  if (a === "drills" && b !== undefined) return { action: `drill ${b}`, ...(query.get("route") ? { target: query.get("route")! } : {}) };
  if (a === "gpus" && b !== undefined && c === "clear") return { action: "gpus clear", target: b };
  if (a === "backends" && b !== undefined && c !== undefined) return { action: c, target: b };
  return { action: `${method} /${parts.join("/")}` };
}

/** An action as one reads it: `stop primary`. */
export const actionText = (a: Action): string => (a.target === undefined ? a.action : `${a.action} ${a.target}`);
