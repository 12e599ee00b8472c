/** Alert receivers for tests: a real Alertmanager (the Debian binary) and a webhook receiver that checks signatures, both on loopback. */
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import path from "node:path";
import { verifySignature } from "../../src/alerts/webhook.ts";
import { freePort } from "../helpers/sim.ts";
import { tempDir } from "../helpers/tmp.ts";
import { which } from "../helpers/tools.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";

/** Debian's name for it, else the upstream one. */
const ALERTMANAGER_BIN = which("prometheus-alertmanager") ?? which("alertmanager");

/** Why Alertmanager tests cannot run here, or undefined when they can. */
export function alertmanagerMissing(): string | undefined {
  return ALERTMANAGER_BIN ? undefined : "prometheus-alertmanager is not installed (Debian package prometheus-alertmanager): the tests against a real Alertmanager are skipped";
}

/** An alert as GET /api/v2/alerts lists it. */
export interface GettableAlert {
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  readonly startsAt: string;
  readonly endsAt: string;
  readonly status: { readonly state: string };
}

/** What Alertmanager sent its webhook receiver (one notification per group flush). */
export interface AmNotification {
  readonly status: "firing" | "resolved";
  readonly alerts: readonly { readonly status: string; readonly labels: Record<string, string>; readonly startsAt: string; readonly endsAt: string }[];
}

export interface TestAlertmanager {
  readonly url: string;
  readonly port: number;
  /** Notifications Alertmanager sent to its receiver (group_wait 0s, group_interval 1s, send_resolved). */
  readonly notifications: AmNotification[];
  /** The alerts it holds that have not ended (GET /api/v2/alerts). */
  alerts(): Promise<GettableAlert[]>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A real Alertmanager on 127.0.0.1 (`port`, else a free one), clustering off, its storage in
 * a temp dir, routing everything at once to a loopback receiver that records notifications.
 * Not started until start() unless `started` (the default).
 */
export async function startAlertmanager(t: { after(fn: () => unknown): void }, options: { port?: number; started?: boolean } = {}): Promise<TestAlertmanager> {
  const dir = tempDir(t, "llmsup-am-");
  const port = options.port ?? (await freePort());
  const notifications: AmNotification[] = [];
  const hook = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      try {
        notifications.push(JSON.parse(Buffer.concat(chunks).toString("utf8")) as AmNotification);
      } catch {
        // not a notification
      }
      res.end("ok");
    });
  });
  hook.listen(0, "127.0.0.1");
  await once(hook, "listening");
  t.after(() => new Promise<void>((resolve) => hook.close(() => resolve())));
  const hookPort = (hook.address() as { port: number }).port;
  const config = path.join(dir, "alertmanager.yml");
  writeFileSync(
    config,
    `route:\n  receiver: hook\n  group_by: ["..."]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: "http://127.0.0.1:${hookPort}/"\n        send_resolved: true\n`,
  );
  const url = `http://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, "exit");
    c.kill("SIGTERM");
    const timer = setTimeout(() => c.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  };
  t.after(stop);
  const am: TestAlertmanager = {
    url,
    port,
    notifications,
    async alerts() {
      const r = await fetch(`${url}/api/v2/alerts`);
      if (r.status !== 200) throw new Error(`GET /api/v2/alerts answered ${r.status}`);
      return (await r.json()) as GettableAlert[];
    },
    async start() {
      let log = "";
      child = spawn(ALERTMANAGER_BIN!, [`--config.file=${config}`, `--storage.path=${path.join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--cluster.listen-address=", "--log.level=warn"], { stdio: ["ignore", "ignore", "pipe"] });
      child.stderr!.on("data", (c: Buffer) => (log += c.toString()));
      const c = child;
      await waitUntil(`Alertmanager ready on ${url}`, async () => {
        if (c.exitCode !== null) throw new Error(`Alertmanager exited (${c.exitCode}): ${log}`);
        return answers200(`${url}/-/ready`);
      }, { timeoutMs: 15_000, everyMs: 50 });
    },
    stop,
  };
  if (options.started !== false) await am.start();
  return am;
}

export interface ReceivedHook {
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  readonly json: Record<string, unknown>;
  /** The signature checked against the secret and the receiver's clock. */
  readonly verified: boolean;
}

export interface TestWebhook {
  readonly url: string;
  readonly port: number;
  readonly received: ReceivedHook[];
  /** Requests answered, whatever the answer. */
  readonly requests: number;
  /** What the next requests are answered (200 by default). */
  answer: number;
  waitFor(n: number, ms?: number): Promise<ReceivedHook[]>;
  close(): Promise<void>;
}

/** A webhook receiver on 127.0.0.1 (`port`, else a free one) that verifies each request's HMAC with `secret`; records what it accepted (2xx answers). */
export async function startWebhookReceiver(t: { after(fn: () => unknown): void }, secret: string, options: { port?: number } = {}): Promise<TestWebhook> {
  const received: ReceivedHook[] = [];
  const state = { requests: 0, answer: 200 };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      state.requests++;
      const body = Buffer.concat(chunks).toString("utf8");
      const h = (n: string) => (typeof req.headers[n] === "string" ? (req.headers[n] as string) : undefined);
      const verified = verifySignature(secret, { timestamp: h("x-llmsup-timestamp"), signature: h("x-llmsup-signature") }, body, Math.floor(Date.now() / 1000));
      if (!verified) {
        res.statusCode = 401;
        return res.end("bad signature");
      }
      if (state.answer >= 200 && state.answer < 300) received.push({ headers: req.headers, body, json: JSON.parse(body) as Record<string, unknown>, verified });
      res.statusCode = state.answer;
      res.end(state.answer === 400 ? "unknown field" : "ok");
    });
  });
  server.listen(options.port ?? 0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  let closed = false;
  const close = () =>
    new Promise<void>((resolve) => {
      if (closed) return resolve();
      closed = true;
      server.closeAllConnections();
      server.close(() => resolve());
    });
  t.after(close);
  return {
    url: `http://127.0.0.1:${port}/hook`,
    port,
    received,
    get requests() {
      return state.requests;
    },
    get answer() {
      return state.answer;
    },
    set answer(n: number) {
      state.answer = n;
    },
    waitFor: (n, ms = 5_000) => waitUntil(`${n} webhook deliveries (got ${received.length})`, () => received.length >= n && received, { timeoutMs: ms }),
    close,
  };
}
