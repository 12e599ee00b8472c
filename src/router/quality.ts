/**
 * Model failures caught as tier failures: detectors that judge the text of an
 * answer, whole or streamed, and the rate of detections that marks a tier
 * DEGRADED. Pure: text in, a detection (the detector and why, in words) or
 * nothing out; the streaming watch keeps its state in the object, with
 * bounded memory (the last LOOP_WINDOW characters) and bounded work per check.
 *
 * | detector | an answer is a failure when …                                                        |
 * |----------|---------------------------------------------------------------------------------------|
 * | loop     | its tail repeats one span of ≥ LOOP_MIN_SPAN characters (with a letter or digit in    |
 * |          | it) back to back ≥ LOOP_MIN_REPEATS times, over ≥ LOOP_MIN_CHARS characters          |
 * | empty    | it finished (stop or length) with no text and no tool call                            |
 * | garbage  | most of its visible characters are U+FFFD (invalid UTF-8) or control characters       |
 * | refusal  | its first REFUSAL_CHARS characters match one of the route's `refusal_patterns`        |
 */

export type Detector = "loop" | "empty" | "garbage" | "refusal";

/** Every detector, for metrics labels (bounded). */
export const DETECTORS: readonly Detector[] = ["loop", "empty", "garbage", "refusal"];

export interface Detection {
  readonly detector: Detector;
  /** Why, in words: "repetition loop: 'foo bar …' repeated 6 times". */
  readonly detail: string;
}

/** A route's `quality` table: which detectors run on its answers. */
export interface QualityPolicy {
  readonly loop: boolean;
  readonly empty: boolean;
  readonly garbage: boolean;
  /** Regular expressions (case-insensitive) that the start of an answer must not match; [] = no refusal check. */
  readonly refusal_patterns: readonly string[];
}

/** The defaults of a route's `quality` table: loop, empty and garbage on, no refusal patterns. */
export const DEFAULT_QUALITY: QualityPolicy = { loop: true, empty: true, garbage: true, refusal_patterns: [] };

/** A route's detectors: its `quality` table, else the defaults. */
export function qualityOf(route: { readonly quality?: QualityPolicy }): QualityPolicy {
  return route.quality ?? DEFAULT_QUALITY;
}

export const LOOP_MIN_SPAN = 20;
export const LOOP_MAX_SPAN = 1024;
export const LOOP_MIN_REPEATS = 4;
export const LOOP_MIN_CHARS = 160;
/** The characters a stream's loop watch keeps: enough for LOOP_MIN_REPEATS of the longest span. */
export const LOOP_WINDOW = LOOP_MAX_SPAN * LOOP_MIN_REPEATS;
/** A stream is checked for a loop each time this many new characters arrived. */
export const LOOP_CHECK_EVERY = 32;
export const GARBAGE_MIN_CHARS = 16;
export const GARBAGE_FRACTION = 0.5;
/** How much of an answer's start the refusal patterns are matched against. */
export const REFUSAL_CHARS = 300;

const ALNUM = /[\p{L}\p{N}]/u;

function quote(s: string, max = 40): string {
  const one = s.replace(/\s+/g, " ");
  return `'${one.length > max ? `${one.slice(0, max)}…` : one}'`;
}

/** The shortest period of `span` (a divisor of its length). */
function minimalPeriod(span: string): number {
  const n = span.length;
  outer: for (let q = 1; q < n; q++) {
    if (n % q !== 0) continue;
    for (let i = q; i < n; i++) if (span.charCodeAt(i) !== span.charCodeAt(i - q)) continue outer;
    return q;
  }
  return n;
}

/**
 * A repetition loop at the end of `text`: the tail is periodic with some period p (LOOP_MIN_SPAN ≤ p ≤
 * LOOP_MAX_SPAN) over ≥ LOOP_MIN_REPEATS periods and ≥ LOOP_MIN_CHARS characters, and the repeated span
 * holds a letter or digit (rules such as "=====" are not loops). `loopStart`: where the repeated text begins.
 */
export function findLoop(text: string): { readonly span: string; readonly repeats: number; readonly loopStart: number } | undefined {
  const n = text.length;
  if (n < LOOP_MIN_CHARS) return undefined;
  let lastAlnum = -1;
  for (let i = n - 1; i >= 0 && lastAlnum < 0; i--) if (ALNUM.test(text[i]!)) lastAlnum = i;
  const maxP = Math.min(LOOP_MAX_SPAN, Math.floor(n / LOOP_MIN_REPEATS));
  for (let p = LOOP_MIN_SPAN; p <= maxP; p++) {
    // The span (the last p characters) must hold a letter or digit.
    if (lastAlnum < n - p) continue;
    // Matching characters needed beyond the first period.
    const need = Math.max((LOOP_MIN_REPEATS - 1) * p, LOOP_MIN_CHARS - p);
    if (need > n - p) continue;
    let k = 0;
    while (k < need && text.charCodeAt(n - 1 - k) === text.charCodeAt(n - 1 - k - p)) k++;
    if (k < need) continue;
    // A loop: measure it whole, once.
    while (k < n - p && text.charCodeAt(n - 1 - k) === text.charCodeAt(n - 1 - k - p)) k++;
    const loopStart = n - k - p;
    const q = minimalPeriod(text.slice(loopStart, loopStart + p));
    return { span: text.slice(loopStart, loopStart + q), repeats: Math.floor((k + p) / q), loopStart };
  }
  return undefined;
}

export function detectLoop(text: string): Detection | undefined {
  const l = findLoop(text);
  return l ? { detector: "loop", detail: `repetition loop: ${quote(l.span)} repeated ${l.repeats} times` } : undefined;
}

/** An answer that finished (stop or length) with no text and no tool call. */
export function detectEmpty(text: string, toolCalls: boolean, finishReason: string | undefined): Detection | undefined {
  if (toolCalls || text.trim() !== "") return undefined;
  if (finishReason !== "stop" && finishReason !== "length") return undefined;
  return { detector: "empty", detail: `empty answer: finish_reason ${finishReason} with no text and no tool call` };
}

/** Counts of an answer's visible characters and of the broken ones among them. */
export interface GarbageCount {
  readonly visible: number;
  readonly broken: number;
}

export const NO_GARBAGE: GarbageCount = { visible: 0, broken: 0 };

/** Adds `text` to a count: U+FFFD, lone surrogates and control characters (but tab and line ends) are broken. */
export function countGarbage(c: GarbageCount, text: string): GarbageCount {
  let visible = c.visible;
  let broken = c.broken;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x20 || ch === 0x09 || ch === 0x0a || ch === 0x0d) continue;
    visible++;
    if (ch === 0xfffd || ch < 0x20 || ch === 0x7f) broken++;
    else if (ch >= 0xd800 && ch <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
      else broken++;
    } else if (ch >= 0xdc00 && ch <= 0xdfff) broken++;
  }
  return { visible, broken };
}

export function garbageVerdict(c: GarbageCount): Detection | undefined {
  if (c.visible < GARBAGE_MIN_CHARS || c.broken < c.visible * GARBAGE_FRACTION) return undefined;
  return { detector: "garbage", detail: `garbage: ${c.broken} of ${c.visible} characters are replacement or control characters (invalid UTF-8)` };
}

export function detectGarbage(text: string): Detection | undefined {
  return garbageVerdict(countGarbage(NO_GARBAGE, text));
}

/** Compiles a route's refusal patterns (case-insensitive); the configuration checked that they compile. */
export function refusalMatchers(patterns: readonly string[]): readonly RegExp[] {
  let m = compiled.get(patterns);
  if (!m) compiled.set(patterns, (m = patterns.map((p) => new RegExp(p, "iu"))));
  return m;
}

/** Each route's patterns are compiled once (the configuration's arrays are the keys). */
const compiled = new WeakMap<readonly string[], readonly RegExp[]>();

export function detectRefusal(text: string, matchers: readonly RegExp[]): Detection | undefined {
  if (matchers.length === 0) return undefined;
  const head = text.trimStart().slice(0, REFUSAL_CHARS);
  const hit = matchers.find((m) => m.test(head));
  return hit ? { detector: "refusal", detail: `refusal: the answer starts ${quote(head, 60)}, which matches /${hit.source}/` } : undefined;
}

/** A whole answer (one choice's text, whether it called a tool, its finish_reason), judged by every detector the policy has on. */
export function judgeAnswer(policy: QualityPolicy, matchers: readonly RegExp[], text: string, toolCalls: boolean, finishReason: string | undefined): Detection | undefined {
  return (
    (policy.empty ? detectEmpty(text, toolCalls, finishReason) : undefined) ??
    (policy.garbage ? detectGarbage(text) : undefined) ??
    (matchers.length > 0 ? detectRefusal(text, matchers) : undefined) ??
    (policy.loop ? detectLoop(text) : undefined)
  );
}

/** Whether any detector is on. */
export function judges(policy: QualityPolicy): boolean {
  return policy.loop || policy.empty || policy.garbage || policy.refusal_patterns.length > 0;
}

/**
 * The detectors on a stream, fed its text as it arrives. `feed` answers a detection as soon as the text
 * so far shows one (a loop, garbage); `finish` judges the whole answer at its finish_reason (empty, a
 * refusal not yet decided, a last look for a loop). `holdChars`: how much of the answer's start must be
 * seen before its first token may reach the client (the refusal patterns need it; 0 without them).
 */
export class QualityWatch {
  private readonly policy: QualityPolicy;
  private readonly matchers: readonly RegExp[];
  /** The last LOOP_WINDOW characters. */
  private tail = "";
  private sinceCheck = 0;
  private head = "";
  private refusalDecided: boolean;
  private garbage: GarbageCount = NO_GARBAGE;
  private seen = 0;
  /** Some text that is not whitespace was seen. */
  private written = false;

  constructor(policy: QualityPolicy, matchers: readonly RegExp[] = refusalMatchers(policy.refusal_patterns)) {
    this.policy = policy;
    this.matchers = matchers;
    this.refusalDecided = matchers.length === 0;
  }

  get holdChars(): number {
    return this.matchers.length > 0 ? REFUSAL_CHARS : 0;
  }

  /** Characters of text seen so far. */
  get chars(): number {
    return this.seen;
  }

  feed(text: string): Detection | undefined {
    if (text === "") return undefined;
    this.seen += text.length;
    if (!this.written && text.trim() !== "") this.written = true;
    if (!this.refusalDecided) {
      this.head += text;
      if (this.head.trimStart().length >= REFUSAL_CHARS) {
        this.refusalDecided = true;
        const r = detectRefusal(this.head, this.matchers);
        this.head = "";
        if (r) return r;
      }
    }
    if (this.policy.garbage) {
      this.garbage = countGarbage(this.garbage, text);
      const g = garbageVerdict(this.garbage);
      if (g) return g;
    }
    if (this.policy.loop) {
      this.tail += text;
      if (this.tail.length > LOOP_WINDOW) this.tail = this.tail.slice(-LOOP_WINDOW);
      this.sinceCheck += text.length;
      if (this.sinceCheck >= LOOP_CHECK_EVERY) {
        this.sinceCheck = 0;
        return detectLoop(this.tail);
      }
    }
    return undefined;
  }

  /** At the answer's finish_reason: what the text as a whole shows. */
  finish(toolCalls: boolean, finishReason: string | undefined): Detection | undefined {
    if (this.policy.empty && !this.written) {
      const e = detectEmpty("", toolCalls, finishReason);
      if (e) return e;
    }
    if (!this.refusalDecided) {
      this.refusalDecided = true;
      const r = detectRefusal(this.head, this.matchers);
      if (r) return r;
    }
    return this.policy.loop && this.sinceCheck > 0 ? detectLoop(this.tail) : undefined;
  }
}

/** How many detections within how long mark a tier DEGRADED. */
export interface DegradePolicy {
  readonly detections: number;
  readonly windowMs: number;
}

export const DEGRADE_POLICY: DegradePolicy = { detections: 3, windowMs: 5 * 60_000 };

/** The detections still inside the window at `now`, oldest first. */
export function recentDetections(times: readonly number[], now: number, policy: DegradePolicy): number[] {
  return times.filter((t) => t > now - policy.windowMs && t <= now);
}

/** Whether a tier with these detection times is DEGRADED at `now`, and since when (the detection that made it so). */
export function qualityVerdict(times: readonly number[], now: number, policy: DegradePolicy): { readonly degraded: boolean; readonly count: number; readonly since?: number } {
  const recent = recentDetections(times, now, policy);
  if (recent.length < policy.detections) return { degraded: false, count: recent.length };
  return { degraded: true, count: recent.length, since: recent[policy.detections - 1]! };
}
