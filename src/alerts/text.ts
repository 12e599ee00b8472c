/** Plain-text building blocks for mails read on a phone: short lines, local times. Pure. */

/** Lines longer than this are wrapped (prose) or cut (quoted log lines). */
export const WIDTH = 72;
export const QUOTE_MAX = 160;

/** Wraps `text` at word boundaries to `width`, every line but the first prefixed by `indent`. */
export function wrap(text: string, width = WIDTH, indent = ""): string[] {
  const out: string[] = [];
  for (const para of text.split("\n")) {
    let line = "";
    for (const word of para.split(/\s+/).filter(Boolean)) {
      const room = width - (out.length === 0 ? 0 : indent.length);
      if (line !== "" && line.length + 1 + word.length > room) {
        out.push(line);
        line = word;
      } else line = line === "" ? word : `${line} ${word}`;
    }
    out.push(line);
  }
  return out.map((l, i) => (i === 0 ? l : `${indent}${l}`));
}

/** "Label:  value" with the value wrapped under itself; several values go on their own lines. */
export function field(label: string, values: string | readonly string[]): string[] {
  const pad = " ".repeat(8);
  const head = `${label}:`.padEnd(8);
  const list = typeof values === "string" ? [values] : values;
  return list.flatMap((v, i) => wrap(v, WIDTH - pad.length).map((l, j) => `${i === 0 && j === 0 ? head : pad}${l}`));
}

/** A paragraph indented by two spaces, wrapped to the width. */
export function indented(text: string): string[] {
  return wrap(text, WIDTH - 2).map((l) => `  ${l}`);
}

/** A quoted line (error text, log line), cut rather than wrapped. */
export function quote(line: string, indent = "  "): string {
  const clean = line.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, "").replace(/\s+$/, "");
  const room = QUOTE_MAX - indent.length;
  return `${indent}${clean.length > room ? `${clean.slice(0, room - 3)}...` : clean}`;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function parts(ms: number, timeZone: string | undefined): Record<string, string> {
  const key = timeZone ?? "";
  let f = formatters.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat("en-GB", {
      timeZone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
      timeZoneName: "short",
    });
    formatters.set(key, f);
  }
  return Object.fromEntries(f.formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
}

/** "2025-06-01 14:02:03 UTC" in `timeZone` (the process's zone when undefined). */
export function formatWhen(ms: number, timeZone?: string): string {
  const p = parts(ms, timeZone);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
}

/** "14:02:03". */
export function formatClock(ms: number, timeZone?: string): string {
  const p = parts(ms, timeZone);
  return `${p.hour}:${p.minute}:${p.second}`;
}

/** "between 14:02:05 and 14:09:40", or "at 14:02:05" for one instant. */
export function formatSpan(first: number, last: number, timeZone?: string): string {
  const a = formatClock(first, timeZone);
  const b = formatClock(last, timeZone);
  return a === b ? `at ${a}` : `between ${a} and ${b}`;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
