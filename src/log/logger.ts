/**
 * Structured logging: pino, JSON lines to stdout (journald keeps them).
 * Every line that records something happening carries a stable `event` name.
 * Secrets are redacted by key wherever they appear in a logged object.
 */
import { pino, type DestinationStream, type Logger } from "pino";
import type { LogLevel } from "../config/schema.ts";

export type { Logger } from "pino";

/** Keys whose values never reach a log line, at any nesting depth up to REDACT_DEPTH. */
export const SECRET_KEYS = [
  "password",
  "pass",
  "passwd",
  "secret",
  "token",
  "api_key",
  "apiKey",
  "api_keys",
  "apiKeys",
  "authorization",
  "Authorization",
  "proxy-authorization",
  "cookie",
  "set-cookie",
  "x-api-key",
  "api-key",
] as const;

const REDACT_DEPTH = 5;

function keyPath(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? key : `["${key}"]`;
}

/** pino redact paths for every secret key at depths 0..REDACT_DEPTH. */
export function redactPaths(): string[] {
  const out: string[] = [];
  for (const key of SECRET_KEYS) {
    const k = keyPath(key);
    for (let depth = 0; depth <= REDACT_DEPTH; depth++) {
      const prefix = "*.".repeat(depth);
      out.push(k.startsWith("[") ? (depth === 0 ? k : `${prefix.slice(0, -1)}${k}`) : `${prefix}${k}`);
    }
  }
  return out;
}

export const REDACTED = "[redacted]";

export interface LoggerOptions {
  readonly level?: LogLevel;
  /** Where lines go; stdout by default. */
  readonly destination?: DestinationStream;
  /** Fields on every line. */
  readonly base?: Record<string, unknown>;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { name: "llmsup", ...options.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: redactPaths(), censor: REDACTED },
      errorKey: "err",
    },
    options.destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

/** A logger that drops everything, for library callers that pass none. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
