/**
 * When to mail: dedupe, recovery pairing, repeat folding and the hourly rate
 * cap. Pure: state in, state and planned mails out; time is an argument. The
 * state is plain JSON so the alerter can keep it across restarts (and
 * reconcile.ts settles it with the live state when the daemon starts again).
 *
 * Per subject (see events.ts), a *change* of state is news and a *repeat* is not:
 * - a raise that begins an outage, a raise to another bad state (further down
 *   the chain, all tiers down, fatal after restarting, …, and back up to a
 *   better fallback), and a clear that ends an outage are each mailed at once,
 *   whenever they come: a failover minutes after a recovery, or a second fatal
 *   after a reset, is a new outage the operator must hear of now, never a line
 *   in a later summary;
 * - a raise to the state the subject is already in is a repeat: folded and
 *   carried into the next mail about the subject ("and 14 more failovers
 *   between …"), never a mail of its own;
 * - a clear pairs with the first raise of its outage and goes to whoever heard
 *   of the outage (a fatal's all-clear reaches critical_to too); so does every
 *   change inside an outage;
 * - a notice (daemon started / stopping) is mailed at once, unless the same
 *   notice was mailed less than `coalesce_window` ago: then it is folded and
 *   the fold goes out as one summary when the window ends (a daemon that
 *   restarts in a loop is one summary, not a mail per start).
 * A subject that flaps therefore mails every change; the flood guard is global:
 * at most `max_per_hour` mails leave per sliding hour, the rest are held and
 * summarised (every event counted) in the next mail allowed out.
 */
import { classifyAlert, maxSeverity, type AlertEvent, type AlertKind, type AlertSeverity } from "./events.ts";

export const HOUR_MS = 3_600_000;
/** How many of the folded events a mail lists one by one. */
export const RECENT_MAX = 8;

export interface PolicyConfig {
  readonly coalesceWindowMs: number;
  readonly maxPerHour: number;
}

/** Events held back for the next mail about a subject (or, for Held, about anything). */
export interface Fold {
  readonly count: number;
  /** `at` of the first and last folded events. */
  readonly first: number;
  readonly last: number;
  readonly byKind: Readonly<Partial<Record<AlertKind, number>>>;
  /** How many of them changed the subject's state (not mere repeats). */
  readonly changes: number;
  readonly severity: AlertSeverity;
  /** The latest few, oldest first. */
  readonly recent: readonly AlertEvent[];
  /** Outages that began and ended inside the fold: how many, shortest and longest. */
  readonly outages?: { readonly n: number; readonly minMs: number; readonly maxMs: number };
}

export interface Outage {
  /** `at` of the raise that began it. */
  readonly since: number;
  readonly first: AlertEvent;
  /** Whether a mail has told the operator about it (the raise itself or a summary). */
  readonly mailed: boolean;
  readonly mailedSeverity?: AlertSeverity;
}

export interface SubjectState {
  readonly bad: boolean;
  readonly state: string;
  readonly severity: AlertSeverity;
  /** `at` of the event that put the subject in its current bad state (absent in state written by older versions: the outage's start stands in). */
  readonly stateSince?: number;
  readonly outage?: Outage;
  readonly latest?: AlertEvent;
  readonly lastMailAt?: number;
  readonly fold?: Fold;
  /** When the fold must go out as a summary (repeated notices; folds of older versions). */
  readonly flushAt?: number;
}

/** Mails the rate cap kept back, summarised in the next mail allowed out. */
export interface Held {
  /** Mails held. */
  readonly mails: number;
  /** Events in them (folded ones included). */
  readonly events: Fold;
}

export interface PolicyState {
  readonly version: 1;
  readonly subjects: Readonly<Record<string, SubjectState>>;
  /** When the mails of the last hour were let out. */
  readonly sentAt: readonly number[];
  readonly held?: Held;
}

/** A mail the policy wants sent now; render.ts turns it into text. */
export interface PlannedMail {
  /** event: about one event; summary: a subject's folded events at the end of a window; held: only what the rate cap kept back. */
  readonly type: "event" | "summary" | "held";
  /** The subject key ("" for a held-only mail). */
  readonly subject: string;
  /** Decides the recipients: critical mails also go to critical_to. */
  readonly severity: AlertSeverity;
  readonly at: number;
  readonly event?: AlertEvent;
  /** For a clear: the outage it ends, paired with its first failure. */
  readonly outage?: { readonly since: number; readonly until: number; readonly first: AlertEvent };
  /** Earlier events folded into this mail. */
  readonly fold?: Fold;
  /** For a summary: where the subject stands now. */
  readonly current?: { readonly bad: boolean; readonly state: string; readonly since?: number; readonly latest?: AlertEvent };
  /** Mails the rate cap held back before this one. */
  readonly held?: Held;
}

export interface Decision {
  readonly state: PolicyState;
  readonly mails: readonly PlannedMail[];
}

export function initialPolicyState(): PolicyState {
  return { version: 1, subjects: {}, sentAt: [] };
}

const FINE: SubjectState = { bad: false, state: "ok", severity: "info" };

export function addToFold(f: Fold | undefined, e: AlertEvent, change: boolean, outageMs?: number): Fold {
  const sev = classifyAlert(e).severity;
  const o = f?.outages;
  return {
    count: (f?.count ?? 0) + 1,
    first: Math.min(f?.first ?? e.at, e.at),
    last: Math.max(f?.last ?? e.at, e.at),
    byKind: { ...f?.byKind, [e.kind]: (f?.byKind[e.kind] ?? 0) + 1 },
    changes: (f?.changes ?? 0) + (change ? 1 : 0),
    severity: f ? maxSeverity(f.severity, sev) : sev,
    recent: [...(f?.recent ?? []), e].slice(-RECENT_MAX),
    outages:
      outageMs === undefined ? o : { n: (o?.n ?? 0) + 1, minMs: Math.min(o?.minMs ?? outageMs, outageMs), maxMs: Math.max(o?.maxMs ?? outageMs, outageMs) },
  };
}

function mergeFolds(a: Fold | undefined, b: Fold | undefined): Fold | undefined {
  if (!a || !b) return a ?? b;
  const byKind: Partial<Record<AlertKind, number>> = { ...a.byKind };
  for (const [k, n] of Object.entries(b.byKind) as [AlertKind, number][]) byKind[k] = (byKind[k] ?? 0) + n;
  const outages = !a.outages || !b.outages ? (a.outages ?? b.outages) : { n: a.outages.n + b.outages.n, minMs: Math.min(a.outages.minMs, b.outages.minMs), maxMs: Math.max(a.outages.maxMs, b.outages.maxMs) };
  return {
    count: a.count + b.count,
    first: Math.min(a.first, b.first),
    last: Math.max(a.last, b.last),
    byKind,
    changes: a.changes + b.changes,
    severity: maxSeverity(a.severity, b.severity),
    recent: [...a.recent, ...b.recent].sort((x, y) => x.at - y.at).slice(-RECENT_MAX),
    outages,
  };
}

/** Every event a mail speaks of, as one fold (for the rate cap's summary). */
function mailAsFold(m: PlannedMail): Fold | undefined {
  let f = mergeFolds(m.fold, m.held?.events);
  if (m.event) f = addToFold(f, m.event, true);
  return f;
}

/** Lets a mail out under the hourly cap, or holds it back. */
function admit(state: PolicyState, mail: PlannedMail, now: number, cfg: PolicyConfig): { state: PolicyState; out?: PlannedMail } {
  const sentAt = state.sentAt.filter((t) => now - t < HOUR_MS);
  if (sentAt.length < cfg.maxPerHour) {
    const out: PlannedMail = state.held ? { ...mail, held: state.held, severity: maxSeverity(mail.severity, state.held.events.severity) } : mail;
    return { state: { ...state, sentAt: [...sentAt, now], held: undefined }, out };
  }
  const held: Held = { mails: (state.held?.mails ?? 0) + 1, events: mergeFolds(state.held?.events, mailAsFold(mail))! };
  return { state: { ...state, sentAt, held } };
}

export function withSubject(state: PolicyState, key: string, s: SubjectState | undefined): PolicyState {
  const subjects = { ...state.subjects };
  if (s) subjects[key] = s;
  else delete subjects[key];
  return { ...state, subjects };
}

/** A subject once `mail` is planned about it: the fold went out with the mail, the outage is known. */
function told(s: SubjectState, mail: PlannedMail): SubjectState {
  return {
    ...s,
    fold: undefined,
    flushAt: undefined,
    lastMailAt: mail.at,
    outage: s.outage && { ...s.outage, mailed: true, mailedSeverity: maxSeverity(s.outage.mailedSeverity ?? "info", mail.severity) },
  };
}

/** Decides what one event leads to at time `now`. */
export function decide(state: PolicyState, e: AlertEvent, now: number, cfg: PolicyConfig): Decision {
  const c = classifyAlert(e);
  const s = state.subjects[c.subject] ?? FINE;
  const fold = (next: SubjectState, flushAt: number | undefined): Decision => ({
    state: withSubject(state, c.subject, { ...next, fold: addToFold(s.fold, e, false), flushAt }),
    mails: [],
  });
  const mail = (next: SubjectState, severity: AlertSeverity, outage?: PlannedMail["outage"]): Decision => {
    const planned: PlannedMail = { type: "event", subject: c.subject, severity: s.fold ? maxSeverity(severity, s.fold.severity) : severity, at: now, event: e, outage, fold: s.fold };
    const r = admit(withSubject(state, c.subject, told(next, planned)), planned, now, cfg);
    return { state: r.state, mails: r.out ? [r.out] : [] };
  };
  // Whoever heard of an outage hears of every change in it, and of its end.
  const toldOf = (sev: AlertSeverity) => maxSeverity(sev, s.bad ? (s.outage?.mailedSeverity ?? "info") : "info");

  switch (c.phase) {
    case "raise": {
      if (s.bad && c.state === s.state) return fold({ ...s, latest: e }, s.flushAt);
      const next: SubjectState = s.bad
        ? { ...s, state: c.state, severity: c.severity, stateSince: e.at, latest: e }
        : { ...s, bad: true, state: c.state, severity: c.severity, stateSince: e.at, latest: e, outage: { since: e.at, first: e, mailed: false } };
      return mail(next, toldOf(c.severity));
    }
    case "clear": {
      if (!s.bad || !s.outage) return { state, mails: [] };
      const next: SubjectState = { ...s, bad: false, state: "ok", severity: "info", stateSince: undefined, latest: e, outage: undefined };
      return mail(next, toldOf(c.severity), { since: s.outage.since, until: e.at, first: s.outage.first });
    }
    case "notice": {
      const next: SubjectState = { ...s, state: c.state, latest: e };
      const again = c.state === s.state && s.lastMailAt !== undefined && now - s.lastMailAt < cfg.coalesceWindowMs;
      return again ? fold(next, s.flushAt ?? s.lastMailAt! + cfg.coalesceWindowMs) : mail(next, c.severity);
    }
  }
}

/**
 * Time passing: folds whose window ended go out as summaries, held mails go
 * out once the cap allows, quiet subjects are forgotten.
 */
export function tick(state: PolicyState, now: number, cfg: PolicyConfig): Decision {
  let st = state;
  const mails: PlannedMail[] = [];
  for (const [key, s] of Object.entries(state.subjects)) {
    if (s.flushAt !== undefined && s.flushAt <= now) {
      if (!s.fold || s.fold.count === 0) {
        st = withSubject(st, key, { ...s, flushAt: undefined });
        continue;
      }
      const planned: PlannedMail = {
        type: "summary",
        subject: key,
        // Whoever heard of the outage hears how it goes on.
        severity: maxSeverity(s.fold.severity, s.bad ? maxSeverity(s.severity, s.outage?.mailedSeverity ?? "info") : "info"),
        at: now,
        fold: s.fold,
        current: { bad: s.bad, state: s.state, since: s.outage?.since, latest: s.latest },
      };
      const r = admit(withSubject(st, key, told(s, planned)), planned, now, cfg);
      st = r.state;
      if (r.out) mails.push(r.out);
    }
  }
  for (const [key, s] of Object.entries(st.subjects)) {
    const quiet = !s.bad && !s.fold && s.flushAt === undefined && (s.lastMailAt === undefined || now - s.lastMailAt >= cfg.coalesceWindowMs);
    if (quiet) st = withSubject(st, key, undefined);
  }
  if (st.held) {
    const sentAt = st.sentAt.filter((t) => now - t < HOUR_MS);
    if (sentAt.length < cfg.maxPerHour) {
      mails.push({ type: "held", subject: "", severity: st.held.events.severity, at: now, held: st.held });
      st = { ...st, sentAt: [...sentAt, now], held: undefined };
    }
  }
  return { state: st, mails };
}

/** When `tick` next has something to do; undefined when nothing is waiting. */
export function nextWake(state: PolicyState, cfg: PolicyConfig): number | undefined {
  let at: number | undefined;
  const consider = (t: number) => (at = at === undefined ? t : Math.min(at, t));
  for (const s of Object.values(state.subjects)) {
    if (s.flushAt !== undefined) consider(s.flushAt);
  }
  if (state.held) {
    const oldest = state.sentAt.length >= cfg.maxPerHour ? state.sentAt[state.sentAt.length - cfg.maxPerHour] : undefined;
    consider(oldest === undefined ? 0 : oldest + HOUR_MS);
  }
  return at;
}

/** Accepts state read back from disk, or answers undefined when it is not one of ours. */
export function parsePolicyState(value: unknown): PolicyState | undefined {
  if (!value || typeof value !== "object") return undefined;
  const v = value as Partial<PolicyState>;
  if (v.version !== 1 || !v.subjects || typeof v.subjects !== "object" || !Array.isArray(v.sentAt)) return undefined;
  return v as PolicyState;
}
