/**
 * systemd's notify protocol (Type=notify): READY=1, STATUS=…, WATCHDOG=1,
 * STOPPING=1 as datagrams to $NOTIFY_SOCKET. A real unix datagram through an
 * N-API addon with prebuilt binaries (no compiler at install time); a no-op
 * outside systemd.
 */
import { createRequire } from "node:module";
import type { Logger } from "../log/logger.ts";
import type { Clock, TimerHandle } from "../platform/clock.ts";

interface DgramSocket {
  sendTo(buf: Buffer, offset: number, length: number, path: string, cb?: (err?: Error) => void): void;
  close(): void;
}

export interface Notifier {
  readonly active: boolean;
  notify(state: Record<string, string | number>): void;
  close(): void;
}

export function createNotifier(env: NodeJS.ProcessEnv, log: Logger): Notifier {
  const target = env.NOTIFY_SOCKET;
  if (!target) return { active: false, notify: () => undefined, close: () => undefined };
  let socket: DgramSocket | undefined;
  try {
    const require = createRequire(import.meta.url);
    const { DgramSocket } = require("node-unix-socket") as { DgramSocket: new () => DgramSocket };
    socket = new DgramSocket();
  } catch (e) {
    log.warn({ event: "systemd.notify.unavailable", err: (e as Error).message }, "cannot send systemd notifications (node-unix-socket did not load); READY and WATCHDOG will not reach systemd");
    return { active: false, notify: () => undefined, close: () => undefined };
  }
  // "@name" is an abstract socket: a leading NUL byte.
  const address = target.startsWith("@") ? `\0${target.slice(1)}` : target;
  return {
    active: true,
    notify(state) {
      const text = Object.entries(state)
        .map(([k, v]) => `${k}=${String(v).replace(/\n/g, " ")}`)
        .join("\n");
      const buf = Buffer.from(text);
      try {
        socket!.sendTo(buf, 0, buf.length, address, (err) => {
          if (err) log.debug({ event: "systemd.notify.failed", err: err.message }, "sd_notify failed");
        });
      } catch (e) {
        log.debug({ event: "systemd.notify.failed", err: (e as Error).message }, "sd_notify failed");
      }
    },
    close() {
      try {
        socket!.close();
      } catch {
        /* already closed */
      }
    },
  };
}

/** Half of $WATCHDOG_USEC in ms (when the watchdog is meant for this process), else undefined. */
export function watchdogInterval(env: NodeJS.ProcessEnv, pid = process.pid): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}

/** How often systemd's STATUS= line is refreshed. */
const STATUS_EVERY_MS = 10_000;

/**
 * The daemon's pulse to systemd while it runs: WATCHDOG=1 every half
 * $WATCHDOG_USEC, sent from the event loop itself (a blocked loop stops the
 * pings and systemd notices), and a fresh STATUS= line every 10 s. Nothing
 * outside systemd.
 */
export function startHeartbeat(notifier: Notifier, env: NodeJS.ProcessEnv, clock: Clock, statusLine: () => string): { stop(): void } {
  const timers: TimerHandle[] = [];
  const every = (ms: number, fn: () => void, slot: number) => {
    timers[slot] = clock.setTimeout(() => {
      fn();
      every(ms, fn, slot);
    }, ms);
  };
  if (notifier.active) {
    const wd = watchdogInterval(env);
    if (wd) every(wd, () => notifier.notify({ WATCHDOG: 1 }), 0);
    every(STATUS_EVERY_MS, () => notifier.notify({ STATUS: statusLine() }), 1);
  }
  return { stop: () => timers.forEach((t) => t?.cancel()) };
}
