/**
 * The one-line verdict of `llmsup status` and its exit code, following the
 * monitoring-plugin convention. Pure; every condition is in one table:
 *
 * | condition                                              | level        |
 * |--------------------------------------------------------|--------------|
 * | a route with no serving tier                           | CRITICAL (2) |
 * | a backend fatal (restart budget spent)                 | CRITICAL (2) |
 * | a route served by a fallback tier                      | WARNING (1)  |
 * | a tier DEGRADED by its rate of model failures          | WARNING (1)  |
 * | a backend not healthy (down, degraded, stopped, …)     | WARNING (1)  |
 * | a backend drained by an operator (maintenance)         | WARNING (1)  |
 * | a GPU fault, or a GPU throttling (thermal, power, hw)  | WARNING (1)  |
 * | alerts failing to go out (per channel)                 | WARNING (1)  |
 * | the last reload refused (until a good reload/restart)  | WARNING (1)  |
 * | settings changed that need a restart of llmsup         | WARNING (1)  |
 * | none of the above                                      | OK (0)       |
 *
 * UNKNOWN (3), the daemon unreachable, is decided by the CLI. The headline
 * names the worst thing and what to do about it, then how many more there are.
 */

export type Level = "ok" | "warning" | "critical";

export interface Verdict {
  readonly code: 0 | 1 | 2;
  readonly state: Level;
  readonly text: string;
  /** Every problem found, worst first. */
  readonly problems: readonly { readonly level: Exclude<Level, "ok">; readonly text: string }[];
}

export interface VerdictInput {
  readonly routes: readonly {
    readonly model: string;
    readonly serving_tier: number;
    readonly serving_backend: string | null;
    readonly tiers: readonly { readonly index: number; readonly backend: string; readonly model?: string; readonly why: string | null; readonly quality?: { readonly state: string; readonly detections: number; readonly window_s: number } | null }[];
  }[];
  readonly backends: readonly { readonly name: string; readonly state: string; readonly health: string; readonly health_reason: string; readonly drained?: { readonly by: string; readonly since: string } | null }[];
  readonly gpus: readonly { readonly index: number; readonly condition: string; readonly clock_event_reasons: readonly string[]; readonly faults: readonly { readonly reason: string; readonly action: string }[] }[];
  readonly alerts: {
    readonly enabled: boolean;
    readonly pending: number;
    readonly last_error: string | null;
    /** Per channel: smtp, alertmanager, webhooks by name. */
    readonly channels: readonly { readonly channel: string; readonly pending: number; readonly failing: boolean; readonly last_error_code: string | null; readonly last_error: string | null }[];
  } | null;
  /** Reloads: the last refused one (until a good reload or a restart), settings waiting for a restart of llmsup. */
  readonly reload?: { readonly needs_restart: readonly string[]; readonly refused: { readonly time: string; readonly error: string; readonly problems: readonly string[] } | null } | null;
}

/** Clock-event reasons that mean the GPU is being slowed (SW power cap is normal under load; idle is not a problem). */
const THROTTLES = new Set(["hw_slowdown", "hw_thermal_slowdown", "sw_thermal_slowdown", "hw_power_brake_slowdown"]);

const CODE: Record<Level, 0 | 1 | 2> = { ok: 0, warning: 1, critical: 2 };

export function verdict(s: VerdictInput): Verdict {
  const problems: { level: Exclude<Level, "ok">; text: string }[] = [];
  const add = (level: Exclude<Level, "ok">, text: string) => problems.push({ level, text });
  for (const r of s.routes) {
    const firstOut = r.tiers[0]?.why;
    if (r.serving_tier < 0) add("critical", `${r.model} has no serving tier (tier 0: ${firstOut ?? "unavailable"}); bring one tier back, \`llmsup status\` says why each is out`);
    else if (r.serving_tier > 0) add("warning", `${r.model} on fallback tier ${r.serving_tier} (${r.serving_backend})${firstOut ? `: tier 0 ${r.tiers[0]!.backend} ${firstOut}` : ""}`);
    for (const t of r.tiers) {
      if (t.quality?.state === "degraded") add("warning", `${r.model} tier ${t.index} (${t.backend}${t.model ? `/${t.model}` : ""}) is DEGRADED: ${t.quality.detections} bad answers (loops, empty, garbage or refusals) in ${Math.round(t.quality.window_s / 60)} min; \`llmsup events --kind quality\` and the log's router.quality lines show them — check the model and its sampling settings`);
    }
  }
  for (const b of s.backends) {
    if (b.state === "fatal") add("critical", `${b.name} is fatal (restart budget spent): fix the cause, then \`llmsup reset ${b.name}\``);
    else if (b.health !== "healthy") add("warning", `${b.name} is ${b.health}: ${b.health_reason}`);
    if (b.drained) add("warning", `${b.name} is drained by ${b.drained.by} since ${b.drained.since.slice(0, 19)}Z: \`llmsup undrain ${b.name}\` puts it back in rotation`);
  }
  for (const g of s.gpus) {
    const throttles = g.clock_event_reasons.filter((r) => THROTTLES.has(r));
    for (const f of g.faults) add("warning", `GPU ${g.index}: ${f.reason.replace(/^GPU \d+: /, "")}: ${f.action}`);
    if (throttles.length > 0 && g.faults.length === 0) add("warning", `GPU ${g.index} is throttling (${throttles.join(", ")}): check cooling and power`);
  }
  if (s.alerts?.enabled) {
    for (const ch of s.alerts.channels) {
      if (!ch.failing || ch.pending === 0) continue;
      const why = ch.last_error ?? ch.last_error_code ?? "failing";
      const [what, where] =
        ch.channel === "smtp" ? ["alert mails are not going out", "[alerts.smtp]"] : ch.channel === "alertmanager" ? ["alerts are not reaching Alertmanager", "[alerts.alertmanager] url"] : [`alerts are not reaching webhook ${ch.channel}`, `its [[alerts.webhook]] url`];
      add("warning", `${what} (${ch.pending} waiting): ${why}; check ${where} with \`llmsup test-alert\``);
    }
  }
  const refused = s.reload?.refused;
  if (refused) {
    add("warning", `reload refused at ${refused.time.slice(0, 19)}Z, the previous configuration is still running: ${refused.problems.length ? refused.problems.join("; ") : refused.error}; fix it, then \`llmsup reload\``);
  }
  if (s.reload?.needs_restart.length) add("warning", `settings changed that need a restart of llmsup: ${s.reload.needs_restart.join(", ")} (\`systemctl restart llmsup\`)`);
  problems.sort((a, b) => CODE[b.level] - CODE[a.level]);
  const worst = problems[0];
  if (!worst) return { code: 0, state: "ok", text: `OK: ${s.routes.map((r) => `${r.model} on ${r.serving_backend}`).join(", ") || "no routes"}`, problems };
  const more = problems.length > 1 ? ` (+${problems.length - 1} more)` : "";
  return { code: CODE[worst.level], state: worst.level, text: `${worst.level.toUpperCase()}: ${worst.text}${more}`, problems };
}
