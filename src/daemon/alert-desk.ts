/**
 * The daemon's side of alerting: component events through the bridge to the
 * alerter (none — said loudly — when it cannot open: alerts that cannot be
 * sent must not keep the API down), a day of alerts for drills and the
 * digest, a new alerter over the same outbox and policy state when a reload
 * changes `[alerts]` or the hostname, and quiet once a deliberate stop has
 * begun (it takes every route down on purpose: no news for the inbox).
 */
import type { LiveState } from "../alerts/reconcile.ts";
import type { StatusSnapshot } from "../alerts/snapshot.ts";
import { Alerter } from "../alerts/alerter.ts";
import type { MailerFactory } from "../alerts/mailer.ts";
import type { Config } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import { within, type Clock } from "../platform/clock.ts";
import { AlertBridge, type BridgeInput } from "./alert-bridge.ts";
import { AlertLog } from "./event-hub.ts";

export interface AlertDeskDeps {
  readonly logger: Logger;
  readonly clock: Clock;
  readonly env: NodeJS.ProcessEnv;
  /** Builds the SMTP transport (createMailer, from the composition root); Alertmanager and webhooks need nothing injected. */
  readonly mailer: MailerFactory;
  /** What every alert mail shows of the current state. */
  readonly snapshot: () => StatusSnapshot;
}

export class AlertDesk {
  /** The alerts of the last day. */
  readonly log = new AlertLog();
  private alerter: Alerter | undefined;
  private readonly bridge: AlertBridge;
  private readonly d: AlertDeskDeps;
  private quiet = false;

  private constructor(config: Config, d: AlertDeskDeps, alerter: Alerter | undefined) {
    this.bridge = new AlertBridge(config);
    this.d = d;
    this.alerter = alerter;
  }

  static async open(config: Config, d: AlertDeskDeps): Promise<AlertDesk> {
    return new AlertDesk(config, d, await openAlerter(config, d));
  }

  /** The alerter now (undefined when alerts could not be opened); a reload may replace it. */
  get current(): Alerter | undefined {
    return this.alerter;
  }

  send(e: BridgeInput): void {
    if (this.quiet && e.event !== "daemon.stopping") return;
    for (const a of this.bridge.translate(e)) {
      this.log.add(a, this.d.clock.now());
      this.alerter?.notify(a);
    }
  }

  /** From now on only the stop itself is sent. */
  hush(): void {
    this.quiet = true;
  }

  reconcile(live: LiveState): void {
    this.alerter?.reconcile(live);
  }

  /** Mails delivered so far, when alerts are on. */
  delivered(): number | undefined {
    const s = this.alerter?.status();
    return s?.enabled ? s.delivered : undefined;
  }

  /** Takes a reloaded configuration; true when a new alerter was opened (the scheduler's jobs hold the old one). */
  async reconfigure(prev: Config, next: Config): Promise<boolean> {
    this.bridge.reconfigure(next);
    if (JSON.stringify(prev.alerts) === JSON.stringify(next.alerts) && prev.daemon.hostname === next.daemon.hostname) return false;
    await this.close(5_000);
    this.alerter = await openAlerter(next, this.d);
    return true;
  }

  /** Delivers what it can within `ms`, then closes. */
  async close(ms: number): Promise<void> {
    const old = this.alerter;
    if (!old) return;
    await within(this.d.clock, old.flush(ms), ms);
    await old.close().catch(() => undefined);
  }
}

async function openAlerter(c: Config, d: AlertDeskDeps): Promise<Alerter | undefined> {
  try {
    return await Alerter.open({
      config: c.alerts,
      hostname: c.daemon.hostname,
      stateDir: c.daemon.state_dir,
      logger: d.logger,
      clock: d.clock,
      ioClock: d.clock,
      env: d.env,
      mailer: d.mailer,
      snapshot: d.snapshot,
    });
  } catch (e) {
    const err = e as Error & { code?: string };
    d.logger.error({ event: "alerts.unavailable", code: err.code, err: err.message }, `alerts are off (every channel): ${err.message}`);
    return undefined;
  }
}
