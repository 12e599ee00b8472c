/**
 * `llmsup test-alert [--config PATH] [--json]`: tries every configured alert
 * channel now, past the outbox: one mail through the SMTP server (when [alerts]
 * to is set), one short-lived LlmsupTestAlert posted to Alertmanager, one
 * notice to each webhook; and says exactly what each receiver answered.
 * Exit 0 when every channel took it (and every recipient was accepted);
 * otherwise the exit status and stable code of the first failure
 * (LLMSUP_E_SMTP_AUTH, _UNREACHABLE, _TLS, _REJECTED,
 * LLMSUP_E_ALERT_RECEIVER_UNREACHABLE, _REJECTED, LLMSUP_E_SECRET_UNREADABLE,
 * configuration errors).
 */
import { alertmanagerTransport, testAlert } from "../alerts/alertmanager.ts";
import type { Transport } from "../alerts/delivery.ts";
import { describeFailure, type DeliveryFailure } from "../alerts/failure.ts";
import { TEST_ALERT_NAME } from "../alerts/labels.ts";
import { createMailer, smtpTarget } from "../alerts/mailer.ts";
import { noticePayload, webhookTransport } from "../alerts/webhook.ts";
import { webhookChannelName } from "../config/checks.ts";
import { realClock } from "../platform/clock.ts";
import { describeSmtpFailure, type SmtpFailure } from "../alerts/smtp-failure.ts";
import { formatWhen, wrap } from "../alerts/text.ts";
import { DEFAULT_CONFIG_PATH, loadConfigFile } from "../config/load.ts";
import type { Config, ConfigProblem } from "../config/types.ts";
import { isLlmsupError, LlmsupError } from "../errors/error.ts";
import { ERRORS, EXIT } from "../errors/registry.ts";
import { formatProblem } from "./check-config.ts";
import { colourWanted, style, writeJson, type Io } from "./output.ts";

export interface TestAlertOptions {
  /** Configuration file; else $LLMSUP_CONFIG, else /etc/llmsup/supervisor.toml. */
  readonly config?: string;
  readonly json?: boolean;
}

export function testMail(config: Config, at: number): { subject: string; text: string } {
  const a = config.alerts;
  const host = config.daemon.hostname;
  const lines = [
    ...wrap(`This is a test alert from llmsup on ${host}, sent by \`llmsup test-alert\` at ${formatWhen(at)}.`),
    "",
    ...wrap("If you can read it, alert mail works. Real alerts look like this one: the subject says what happened, the body says where, when, why and what to do."),
    "",
    `SMTP:     ${smtpTarget(a.smtp)}`,
    `From:     ${a.from}`,
    `To:       ${a.to.join(", ")}`,
    `Critical: ${a.critical_to.length ? a.critical_to.join(", ") : "(no extra recipients)"}`,
    `Alerts:   ${a.enabled ? "enabled" : "DISABLED ([alerts] enabled = false)"}`,
    ...(a.alertmanager ? [`Alertmanager: ${a.alertmanager.url.join(", ")}`] : []),
    ...a.webhook.map((w, i) => `Webhook:  ${webhookChannelName(w, i)} ${w.url}`),
    "",
    "-- ",
    `llmsup on ${host}, test`,
  ];
  return { subject: `[llmsup] ${host}: test alert`, text: `${lines.join("\n")}\n` };
}

/** What one HTTP channel (Alertmanager, a webhook) made of the test alert. */
interface ChannelOutcome {
  readonly channel: string;
  readonly target: string;
  readonly sent: boolean;
  readonly ms?: number;
  readonly code?: keyof typeof ERRORS;
  readonly message?: string;
  readonly failure?: DeliveryFailure;
}

/** Tries one HTTP channel: its secret read, one message sent past the outbox. */
async function tryChannel(channel: string, target: string, open: () => Promise<Transport>, payload: unknown, subject: string): Promise<ChannelOutcome> {
  let transport: Transport;
  try {
    transport = await open();
  } catch (e) {
    if (e instanceof LlmsupError) return { channel, target, sent: false, code: e.code, message: e.message };
    throw e;
  }
  const started = performance.now();
  const now = Date.now();
  const r = await transport.send({ id: `test-${now}`, createdAt: now, severity: "info", kind: "test", subjectKey: "", to: [], subject, text: "", payload }, { signal: new AbortController().signal });
  transport.close();
  const ms = Math.round(performance.now() - started);
  if (r.ok) return { channel, target, sent: true, ms };
  return { channel, target, sent: false, ms, code: r.failure.llmsupCode, message: `cannot send the test alert to ${channel} (${target}): ${describeFailure(r.failure)}`, failure: r.failure };
}

export async function testAlertCommand(opts: TestAlertOptions, io: Io): Promise<number> {
  const file = opts.config ?? io.env.LLMSUP_CONFIG ?? DEFAULT_CONFIG_PATH;
  type Extra = { smtp?: SmtpFailure; target?: string; problems?: readonly ConfigProblem[] };
  /** A failure of the whole command (configuration) or of the mail channel: its line on stderr, its JSON. */
  const failed = (code: keyof typeof ERRORS, message: string, extra: Extra = {}): { exit: number; json: Record<string, unknown> } => {
    if (!opts.json) {
      const s = style(colourWanted(io.stderr, io.env));
      io.stderr.write(`${s.red("error")} ${code}: ${message}\n`);
      for (const p of extra.problems ?? []) io.stderr.write(`  ${formatProblem(p, s.bold)}\n`);
      if (extra.smtp) io.stderr.write(`  ${ERRORS[code].message}\n`);
    }
    return { exit: ERRORS[code].exit, json: { sent: false, code, message, ...extra } };
  };
  const fail = (code: keyof typeof ERRORS, message: string, extra: Extra = {}): number => {
    const r = failed(code, message, extra);
    if (opts.json) writeJson(io, r.json);
    return r.exit;
  };

  let config: Config;
  try {
    config = await loadConfigFile(file);
  } catch (e) {
    if (!isLlmsupError(e)) throw e;
    return fail(e.code, e.message, { problems: (e.details.problems as ConfigProblem[] | undefined) ?? [] });
  }
  const a = config.alerts;
  const host = config.daemon.hostname;
  const http: { channel: string; target: string; open: () => Promise<Transport>; payload: unknown }[] = [];
  const now = Date.now();
  const mail = testMail(config, now);
  if (a.alertmanager) {
    const am = a.alertmanager;
    http.push({ channel: "alertmanager", target: am.url.join(", "), open: () => alertmanagerTransport(am, realClock), payload: [testAlert(host, now, am.resend_interval)] });
  }
  a.webhook.forEach((w, i) => {
    const name = webhookChannelName(w, i);
    const payload = noticePayload({ kind: "test", alertname: TEST_ALERT_NAME, severity: "info", box: host, summary: "test alert", what: `A test alert sent by \`llmsup test-alert\` on ${host}.`, text: mail.text, at: now });
    http.push({ channel: name, target: w.url, open: () => webhookTransport(w, name, realClock), payload });
  });
  if (a.to.length === 0 && http.length === 0) {
    return fail("LLMSUP_E_CONFIG_INVALID", `${file}: alerts.to is empty: there is nobody to send the test alert to`, {
      problems: [{ path: "alerts.to", rule: "missing", message: "no recipient is set", expected: "at least one e-mail address, an [alerts.alertmanager] url or an [[alerts.webhook]]", found: "an empty list" }],
    });
  }
  const mailed = a.to.length > 0 ? await testMailChannel(config, mail, io, opts, failed) : undefined;
  if (http.length === 0) {
    if (opts.json) writeJson(io, mailed!.json);
    return mailed!.exit;
  }
  const outcomes: ChannelOutcome[] = [];
  for (const h of http) outcomes.push(await tryChannel(h.channel, h.target, h.open, h.payload, mail.subject));
  const firstFailure = outcomes.find((o) => !o.sent);
  const exit = mailed && mailed.exit !== EXIT.OK ? mailed.exit : firstFailure?.code ? ERRORS[firstFailure.code].exit : EXIT.OK;
  if (opts.json) {
    const channels = outcomes.map(({ failure, ...o }) => ({ ...o, ...(failure ? { failure } : {}) }));
    writeJson(io, mailed ? { ...mailed.json, channels } : { sent: !firstFailure, ...(firstFailure ? { code: firstFailure.code } : {}), channels });
  } else {
    const out = style(colourWanted(io.stdout, io.env));
    const err = style(colourWanted(io.stderr, io.env));
    for (const o of outcomes) {
      if (o.sent) io.stdout.write(`test alert ${out.green("sent")} to ${o.channel} (${o.target}) in ${o.ms} ms\n`);
      else io.stderr.write(`${err.red("error")} ${o.code}: ${o.message}\n`);
    }
  }
  return exit;
}

/** The mail channel: one mail to `to` and `critical_to`, what the server answered. */
async function testMailChannel(
  config: Config,
  mail: { subject: string; text: string },
  io: Io,
  opts: TestAlertOptions,
  failed: (code: keyof typeof ERRORS, message: string, extra?: { smtp?: SmtpFailure; target?: string }) => { exit: number; json: Record<string, unknown> },
): Promise<{ exit: number; json: Record<string, unknown> }> {
  const a = config.alerts;
  const target = smtpTarget(a.smtp);
  let mailer;
  try {
    mailer = await createMailer(a, { env: io.env, pool: false, clientName: config.daemon.hostname });
  } catch (e) {
    if (e instanceof LlmsupError) return failed(e.code, e.message, { target });
    throw e;
  }
  const to = [...new Set([...a.to, ...a.critical_to])];
  const started = performance.now();
  const r = await mailer.send({ to, ...mail, headers: { "X-Llmsup-Alert": "test" } });
  mailer.close();
  const ms = Math.round(performance.now() - started);
  if (!r.ok) return failed(r.failure.llmsupCode, `cannot send the test alert via ${target}: ${describeSmtpFailure(r.failure)}`, { smtp: r.failure, target });

  const partial = r.info.rejected.length > 0;
  const json = { sent: true, ...(partial ? { code: "LLMSUP_E_SMTP_REJECTED" } : {}), target, from: a.from, messageId: r.info.messageId, response: r.info.response, accepted: r.info.accepted, rejected: r.info.rejected, ms };
  if (!opts.json) {
    const s = style(colourWanted(io.stdout, io.env));
    io.stdout.write(`test alert ${s.green("sent")} via ${target} in ${ms} ms\n`);
    io.stdout.write(`  to:         ${r.info.accepted.join(", ")}\n`);
    io.stdout.write(`  message id: ${r.info.messageId}\n`);
    io.stdout.write(`  server:     ${r.info.response}\n`);
    if (partial) io.stderr.write(`${style(colourWanted(io.stderr, io.env)).red("error")} LLMSUP_E_SMTP_REJECTED: the server refused ${r.info.rejected.join(", ")}; they would get no alerts. Check [alerts] to and critical_to.\n`);
  }
  return { exit: partial ? ERRORS.LLMSUP_E_SMTP_REJECTED.exit : EXIT.OK, json };
}
