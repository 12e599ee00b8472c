/** Zod building blocks for supervisor.toml values: durations, sizes, modes, addresses. */
import { z } from "zod";
import { parseDuration, parseSize } from "./units.ts";

/** A duration string with a unit ("250ms", "10s", "15m"), parsed to milliseconds. */
export function duration() {
  return z.string({ error: () => 'expected a duration string with a unit, such as "250ms", "10s" or "15m"' }).transform((s, ctx) => {
    const ms = parseDuration(s);
    if (ms === undefined) {
      ctx.issues.push({
        code: "custom",
        message: 'expected a duration with a unit, such as "250ms", "10s", "15m", "2h" or "7d"',
        input: s,
        params: { rule: "duration" },
      });
      return z.NEVER;
    }
    return ms;
  });
}

/** A size string ("4MiB", "500kB", "2GB"), parsed to bytes. */
export function size() {
  return z.string({ error: () => 'expected a size string such as "4MiB", "500kB" or "2GiB"' }).transform((s, ctx) => {
    const bytes = parseSize(s);
    if (bytes === undefined) {
      ctx.issues.push({
        code: "custom",
        message: 'expected a size such as "4MiB", "500kB" or "2GiB"',
        input: s,
        params: { rule: "size" },
      });
      return z.NEVER;
    }
    return bytes;
  });
}

/** A file mode written as an octal string ("0660"), parsed to a number. */
export function fileMode() {
  return z
    .string()
    .regex(/^0?[0-7]{3}$/, { message: 'expected an octal file mode such as "0660"' })
    .transform((s) => Number.parseInt(s, 8));
}

/** "host:port" for a TCP listener; "" disables it. */
export function listenAddress() {
  return z.string().refine((s) => s === "" || parseHostPort(s) !== undefined, {
    message: 'expected "host:port" such as "127.0.0.1:8181", or "" to disable',
  });
}

export function parseHostPort(s: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port > 65535) return undefined;
  return { host: (m[1] as string).replace(/^\[|\]$/g, ""), port };
}

/** An http(s) URL. */
export function httpUrl() {
  return z.string().refine(
    (s) => {
      try {
        const u = new URL(s);
        return u.protocol === "http:" || u.protocol === "https:";
      } catch {
        return false;
      }
    },
    { message: 'expected an http(s) URL such as "http://127.0.0.1:8000"' },
  );
}

/** A name for backends: lower-case letters, digits, '.', '_' and '-'. */
export function name() {
  return z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, {
      message: "expected a name of lower-case letters, digits, '.', '_' or '-' (at most 63 characters, starting with a letter or digit)",
    });
}

/** An environment variable name. */
export function envName() {
  return z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: "expected an environment variable name such as SMTP_PASSWORD" });
}

/** An absolute path. */
export function absPath() {
  return z.string().refine((s) => s.startsWith("/"), { message: "expected an absolute path" });
}

/**
 * A duration that must be longer than zero: intervals that drive a loop,
 * timeouts a request or a start must fit in, delays a restart waits. "0s"
 * there makes the daemon spin or fail every time, so it is refused.
 */
export function positiveDuration() {
  return z.string({ error: () => 'expected a duration string with a unit, such as "250ms", "10s" or "15m"' }).transform((s, ctx) => {
    const ms = parseDuration(s);
    if (ms === undefined || ms <= 0) {
      ctx.issues.push(
        ms === undefined
          ? { code: "custom", message: 'expected a duration with a unit, such as "250ms", "10s", "15m", "2h" or "7d"', input: s, params: { rule: "duration" } }
          : { code: "custom", message: 'expected a duration longer than zero, such as "5s" (zero here would make llmsup spin or fail at once)', input: s, params: { rule: "positive" } },
      );
      return z.NEVER;
    }
    return ms;
  });
}

/** `addr@host` or `Display Name <addr@host>`, as a mail From: header takes it. */
export const MAILBOX = /^(?:[^<>@]*<[^\s@<>]+@[^\s@<>]+>|[^\s@<>]+@[^\s@<>]+)$/;

/** An e-mail address, optionally with a display name: "llmsup@box.example.com" or "llmsup <llmsup@box.example.com>". */
export function mailbox() {
  return z.string().refine((s) => MAILBOX.test(s.trim()), {
    message: 'expected an e-mail address such as "llmsup@gpu-box-1.example.com" or "llmsup <llmsup@gpu-box-1.example.com>"',
    params: { rule: "format" },
  });
}
