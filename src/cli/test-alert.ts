/**
 * `llmsup test-alert [--config PATH] [--json]`: sends one mail through the
 * configured SMTP server, now, and says exactly what the server answered.
 * Exit 0 when every recipient was accepted; otherwise the exit status and
 * stable code of the failure (LLMSUP_E_SMTP_AUTH, _UNREACHABLE, _TLS, _REJECTED,
 * LLMSUP_E_SECRET_UNREADABLE, configuration errors).
 */
import { createMailer, smtpTarget } from "../alerts/mailer.ts";
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
    "",
    "-- ",
    `llmsup on ${host}, test`,
  ];
  return { subject: `[llmsup] ${host}: test alert`, text: `${lines.join("\n")}\n` };
}

export async function testAlertCommand(opts: TestAlertOptions, io: Io): Promise<number> {
  const file = opts.config ?? io.env.LLMSUP_CONFIG ?? DEFAULT_CONFIG_PATH;
  const fail = (code: keyof typeof ERRORS, message: string, extra: { smtp?: SmtpFailure; target?: string; problems?: readonly ConfigProblem[] } = {}): number => {
    if (opts.json) writeJson(io, { sent: false, code, message, ...extra });
    else {
      const s = style(colourWanted(io.stderr, io.env));
      io.stderr.write(`${s.red("error")} ${code}: ${message}\n`);
      for (const p of extra.problems ?? []) io.stderr.write(`  ${formatProblem(p, s.bold)}\n`);
      if (extra.smtp) io.stderr.write(`  ${ERRORS[code].message}\n`);
    }
    return ERRORS[code].exit;
  };

  let config: Config;
  try {
    config = await loadConfigFile(file);
  } catch (e) {
    if (!isLlmsupError(e)) throw e;
    return fail(e.code, e.message, { problems: (e.details.problems as ConfigProblem[] | undefined) ?? [] });
  }
  const a = config.alerts;
  if (a.to.length === 0) {
    return fail("LLMSUP_E_CONFIG_INVALID", `${file}: alerts.to is empty: there is nobody to send the test alert to`, {
      problems: [{ path: "alerts.to", rule: "missing", message: "no recipient is set", expected: "at least one e-mail address", found: "an empty list" }],
    });
  }
  const target = smtpTarget(a.smtp);
  let mailer;
  try {
    mailer = await createMailer(a, { env: io.env, pool: false, clientName: config.daemon.hostname });
  } catch (e) {
    if (e instanceof LlmsupError) return fail(e.code, e.message, { target });
    throw e;
  }
  const to = [...new Set([...a.to, ...a.critical_to])];
  const started = performance.now();
  const mail = testMail(config, Date.now());
  const r = await mailer.send({ to, ...mail, headers: { "X-Llmsup-Alert": "test" } });
  mailer.close();
  const ms = Math.round(performance.now() - started);
  if (!r.ok) return fail(r.failure.llmsupCode, `cannot send the test alert via ${target}: ${describeSmtpFailure(r.failure)}`, { smtp: r.failure, target });

  const partial = r.info.rejected.length > 0;
  if (opts.json) {
    writeJson(io, { sent: true, ...(partial ? { code: "LLMSUP_E_SMTP_REJECTED" } : {}), target, from: a.from, messageId: r.info.messageId, response: r.info.response, accepted: r.info.accepted, rejected: r.info.rejected, ms });
  } else {
    const s = style(colourWanted(io.stdout, io.env));
    io.stdout.write(`test alert ${s.green("sent")} via ${target} in ${ms} ms\n`);
    io.stdout.write(`  to:         ${r.info.accepted.join(", ")}\n`);
    io.stdout.write(`  message id: ${r.info.messageId}\n`);
    io.stdout.write(`  server:     ${r.info.response}\n`);
    if (partial) io.stderr.write(`${style(colourWanted(io.stderr, io.env)).red("error")} LLMSUP_E_SMTP_REJECTED: the server refused ${r.info.rejected.join(", ")}; they would get no alerts. Check [alerts] to and critical_to.\n`);
  }
  return partial ? ERRORS.LLMSUP_E_SMTP_REJECTED.exit : EXIT.OK;
}
