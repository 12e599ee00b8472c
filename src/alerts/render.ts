/**
 * Planned mails → subject and plain-text body. Pure. Subjects read
 * `[llmsup] <host>: <what happened>`; bodies say what, where, when, why, what
 * to do, what was folded in, the status snapshot and the last log lines, in
 * short lines a phone shows without side-scrolling.
 */
import { formatDuration } from "../config/units.ts";
import { describe, kindCount, subjectLabel } from "./describe.ts";
import type { AlertEvent, AlertKind } from "./events.ts";
import type { Fold, Held, PlannedMail } from "./policy.ts";
import { field, formatClock, formatSpan, formatWhen, indented, plural, quote, wrap } from "./text.ts";

export interface RenderContext {
  readonly host: string;
  /** IANA zone for times; the process's own when undefined. */
  readonly timeZone?: string;
  /** The status snapshot, already rendered (snapshot.ts); omitted when none could be taken. */
  readonly snapshot?: readonly string[];
  /** [alerts] max_per_hour, quoted when the rate cap held mails back. */
  readonly maxPerHour?: number;
}

export interface RenderedMail {
  readonly subject: string;
  readonly text: string;
}

/** How many log lines a mail quotes at most. */
export const LOG_LINES_MAX = 20;

function joinList(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? "") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

function countsOf(f: Fold, more: boolean): string {
  return joinList((Object.entries(f.byKind) as [AlertKind, number][]).map(([k, n]) => kindCount(k, n).replace(/^(\d+) /, more ? "$1 more " : "$1 ")));
}

function eventLine(e: AlertEvent, tz: string | undefined): string {
  return quote(`${formatClock(e.at, tz)} ${describe(e).headline}`);
}

/** "and 14 more failovers between …" (more = true) or "14 failovers between …", then the latest few. */
function foldLines(f: Fold, tz: string | undefined, more = true): string[] {
  const out = indented(`${more ? "and " : ""}${countsOf(f, more)} ${formatSpan(f.first, f.last, tz)}${f.outages ? `; ${plural(f.outages.n, "outage")} lasting ${outageRange(f.outages)}` : ""}:`);
  if (f.count > f.recent.length) out.push(`  (${f.count - f.recent.length} earlier not listed)`);
  out.push(...f.recent.map((e) => eventLine(e, tz)));
  return out;
}

function outageRange(o: NonNullable<Fold["outages"]>): string {
  return o.minMs === o.maxMs ? formatDuration(o.minMs) : `${formatDuration(o.minMs)} to ${formatDuration(o.maxMs)}`;
}

function heldLines(h: Held, ctx: RenderContext): string[] {
  const cap = ctx.maxPerHour !== undefined ? ` (max_per_hour = ${ctx.maxPerHour})` : "";
  const out = [`Held back by the rate cap${cap}:`];
  out.push(...indented(`${plural(h.mails, "mail")} about ${countsOf(h.events, false)} ${formatSpan(h.events.first, h.events.last, ctx.timeZone)}:`));
  if (h.events.count > h.events.recent.length) out.push(`  (${h.events.count - h.events.recent.length} earlier not listed)`);
  out.push(...h.events.recent.map((e) => eventLine(e, ctx.timeZone)));
  return out;
}

function section(title: string, lines: readonly string[]): string[] {
  return lines.length ? ["", title, ...lines] : [];
}

function tail(ctx: RenderContext, m: PlannedMail, logOf: string | undefined, logLines: readonly string[] | undefined): string[] {
  const out: string[] = [];
  if (m.fold) out.push(...section("Also:", foldLines(m.fold, ctx.timeZone)));
  if (m.held) out.push("", ...heldLines(m.held, ctx));
  if (ctx.snapshot?.length) out.push(...section("Status now:", ctx.snapshot.map((l) => `  ${l}`)));
  const logs = (logLines ?? []).slice(-LOG_LINES_MAX);
  if (logs.length) out.push(...section(`Last log lines${logOf ? ` (${logOf})` : ""}:`, logs.map((l) => quote(l))));
  out.push("", "-- ", `llmsup on ${ctx.host}${m.subject ? `, ${m.subject}` : ""}, ${m.severity}`);
  return out;
}

/** The words for a subject's state in a summary: "ok", "on tier 2", "ALL TIERS DOWN", … */
export function stateWords(state: string): string {
  if (state.startsWith("tier:")) return `on tier ${Number(state.slice(5))}`;
  const words: Record<string, string> = {
    all_down: "ALL TIERS DOWN",
    cache: "serving from cache",
    fatal: "FATAL",
    low: "low",
    down: "down",
    degraded: "degraded",
    resetting: "resetting",
    reset_needed: "needs a reset",
    reboot_required: "REBOOT REQUIRED",
  };
  return words[state] ?? state;
}

function renderEvent(m: PlannedMail & { event: AlertEvent }, ctx: RenderContext): RenderedMail {
  const e = m.event;
  const f = describe(e);
  const tz = ctx.timeZone;
  const lines: string[] = [];
  let subject = f.headline;
  lines.push(...field("What", f.what));
  lines.push(...field("Where", [`host ${ctx.host}`, ...f.where]));
  lines.push(...field("When", formatWhen(e.at, tz)));
  const first = m.outage ? describe(m.outage.first) : undefined;
  const why = f.why ?? first?.why;
  if (why) lines.push(...field("Why", why.raw && why.raw !== why.reason ? [why.reason, why.raw] : [why.reason]));
  for (const sec of f.sections ?? []) lines.push(...section(sec.title, sec.lines.flatMap((l) => indented(l))));
  if (m.outage) {
    const lasted = formatDuration(m.outage.until - m.outage.since);
    subject += ` after ${lasted}`;
    lines.push(...field("Outage", [`${lasted}, from ${formatClock(m.outage.since, tz)} to ${formatClock(m.outage.until, tz)}`, `began: ${first!.headline}`]));
  }
  lines.push("", "Action:", ...indented(f.action));
  lines.push(...tail(ctx, m, f.logOf, e.lastLines));
  return { subject: `[llmsup] ${ctx.host}: ${subject}`, text: `${lines.join("\n")}\n` };
}

function renderSummary(m: PlannedMail & { fold: Fold }, ctx: RenderContext): RenderedMail {
  const tz = ctx.timeZone;
  const label = subjectLabel(m.subject);
  const cur = m.current;
  const now = cur ? stateWords(cur.state) : "unchanged";
  const flaps = m.fold.outages?.n ?? 0;
  // A fold of state changes (written by an older llmsup) says how many; a fold of repeated notices says what repeated.
  const what = flaps > 0 ? `${label} flapped ${plural(flaps, "time")}` : m.fold.changes > 0 ? `${label}: ${plural(m.fold.changes, "more change")}` : `${label}: ${countsOf(m.fold, true)}`;
  const lines: string[] = [];
  lines.push(...field("What", `${what} ${formatSpan(m.fold.first, m.fold.last, tz)}; now ${now}.`));
  lines.push(...field("Where", [`host ${ctx.host}`, ...(cur?.latest ? describe(cur.latest).where : [])]));
  lines.push(...field("When", `${formatWhen(m.fold.first, tz)} to ${formatClock(m.fold.last, tz)}`));
  if (cur?.bad && cur.since !== undefined) lines.push(...field("Since", `${formatWhen(cur.since, tz)} (${formatDuration(m.at - cur.since)})`));
  const latest = cur?.latest ? describe(cur.latest) : undefined;
  const action = cur?.bad && latest ? latest.action : "Nothing to do now. Repeated flapping points at an unstable backend, network or GPU: see `llmsup status` and `llmsup logs`.";
  lines.push("", "Action:", ...indented(action));
  lines.push("", "Events:", ...foldLines(m.fold, tz, false));
  lines.push(...tail(ctx, { ...m, fold: undefined }, latest?.logOf, cur?.bad ? cur.latest?.lastLines : undefined));
  return { subject: `[llmsup] ${ctx.host}: ${what}, now ${now}`, text: `${lines.join("\n")}\n` };
}

function renderHeld(m: PlannedMail & { held: Held }, ctx: RenderContext): RenderedMail {
  const lines = [
    ...wrap(`At most ${ctx.maxPerHour ?? "max_per_hour"} alert mails go out per hour ([alerts] max_per_hour); these were held back and are summarised here.`, 72),
    "",
    ...heldLines(m.held, ctx),
  ];
  lines.push(...tail(ctx, { ...m, held: undefined }, undefined, undefined));
  return { subject: `[llmsup] ${ctx.host}: ${plural(m.held.events.count, "alert")} held back by the rate cap`, text: `${lines.join("\n")}\n` };
}

export function renderMail(m: PlannedMail, ctx: RenderContext): RenderedMail {
  if (m.type === "event" && m.event) return renderEvent({ ...m, event: m.event }, ctx);
  if (m.type === "summary" && m.fold) return renderSummary({ ...m, fold: m.fold }, ctx);
  if (m.held) return renderHeld({ ...m, held: m.held }, ctx);
  throw new Error(`cannot render a ${m.type} mail without its ${m.type === "event" ? "event" : m.type === "summary" ? "fold" : "held mails"}`);
}

/** The note the next delivered mail carries when the outbox had to drop alerts. */
export function droppedNote(n: number, first: number, last: number, outboxMax: number, timeZone?: string): string {
  return wrap(
    `NOTE: ${plural(n, "older alert")} ${n === 1 ? "was" : "were"} dropped from the outbox ${formatSpan(first, last, timeZone)} because mail could not be delivered and the outbox holds at most ${outboxMax} (outbox_max).`,
    72,
  ).join("\n");
}
