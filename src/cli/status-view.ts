/** The human form of `llmsup status`: one screen, plain text, colour only where the caller allows it. */
import type { DaemonStatus } from "../daemon/status.ts";
import { formatDuration, formatSize } from "../config/units.ts";
import type { Style } from "./output.ts";

function table(rows: string[][], indent = "  "): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, visible(c).length)));
  return rows.map((r) => indent + r.map((c, i) => (i === r.length - 1 ? c : c + " ".repeat(widths[i]! - visible(c).length))).join("  ").trimEnd()).join("\n");
}

function visible(s: string): string {
  return s.replace(/\u001b\[[0-9;]*m/g, "");
}

function ago(iso: string | null, now: number): string {
  if (!iso) return "";
  return formatDuration(Math.max(0, now - Date.parse(iso)));
}

export function renderStatus(s: DaemonStatus, st: Style, now = Date.now()): string {
  const colour = (state: string, text = state) =>
    ["ok", "healthy", "ready"].includes(state) ? st.green(text) : ["degraded", "warning", "starting", "backoff", "stopping", "exited", "blocked"].includes(state) ? st.yellow(text) : ["down", "fatal", "critical"].includes(state) ? st.red(text) : text;
  const out: string[] = [];
  out.push(`${st.bold("llmsup")} ${s.daemon.version} on ${s.daemon.hostname} — ${colour(s.summary.state, s.summary.text)}`);
  // Every problem, worst first, when there is more than the headline's.
  if (s.summary.problems.length > 1) for (const p of s.summary.problems) out.push(`  ${colour(p.level, p.level === "critical" ? "✗" : "!")} ${p.text}`);
  out.push(st.dim(`  up ${formatDuration(s.daemon.uptime_s * 1000)}, pid ${s.daemon.pid}, config ${s.daemon.config}`));
  out.push("");
  const share = s.router.fallback_share_5m === null ? "–" : `${Math.round(s.router.fallback_share_5m * 100)}%`;
  out.push(`${st.bold("Router")}  ${[s.router.socket, s.router.tcp].filter(Boolean).join("  ")}  ${s.router.requests_per_s} req/s, fallback ${share} (5 min)`);
  out.push(
    table([
      ["ROUTE", "SERVING", "TIERS"],
      ...s.router.routes.map((r) => [
        r.model,
        r.serving_tier < 0 ? st.red("none") : r.serving_tier === 0 ? st.green(`tier 0 ${r.serving_backend}`) : st.yellow(`tier ${r.serving_tier} ${r.serving_backend}`),
        r.tiers.map((t) => (t.available ? t.backend : st.dim(`${t.backend}✗`))).join(" → "),
      ]),
    ]),
  );
  // Why each tier above the serving one is out, and until when.
  for (const r of s.router.routes) {
    const above = r.serving_tier < 0 ? r.tiers : r.tiers.slice(0, r.serving_tier);
    for (const t of above.filter((x) => !x.available)) {
      const until = t.out_until && Date.parse(t.out_until) > now ? ` (until ${t.out_until.slice(11, 19)}Z)` : "";
      const since = t.out_since ? `, out for ${ago(t.out_since, now)}` : "";
      out.push(`  ${st.yellow("✗")} ${r.model} tier ${t.index} ${t.backend}: ${t.why}${until}${since}`);
    }
    for (const t of r.tiers.filter((x) => x.quality?.state === "degraded")) {
      out.push(`  ${st.yellow("!")} ${r.model} tier ${t.index} ${t.backend}: DEGRADED — ${t.quality!.detections} bad answers in ${Math.round(t.quality!.window_s / 60)} min${t.quality!.since ? ` (since ${t.quality!.since.slice(11, 19)}Z)` : ""}`);
    }
    if (r.phase === "settling" && r.serving_tier !== 0) out.push(st.dim(`  ${r.model}: starting — tier 0 is still loading`));
  }
  out.push("");
  out.push(st.bold("Backends"));
  out.push(
    table([
      ["NAME", "KIND", "STATE", "FOR", "HEALTH", "PID", "CPU", "MEM", "RESTARTS", "GPU", "NOTE"],
      ...s.backends.map((b) => [
        b.name,
        b.kind,
        b.drained ? st.yellow(`DRAINED (${b.state})`) : b.held ? st.red(`HELD (${b.state})`) : colour(b.state),
        b.drained ? ago(b.drained.since, now) : b.since ? ago(b.since, now) : "",
        colour(b.health),
        b.pid === null ? "" : `${b.pid}${b.adopted ? " (adopted)" : ""}`,
        b.cpu_pct === null ? (b.pid === null ? "" : "–") : `${b.cpu_pct.toFixed(b.cpu_pct < 10 ? 1 : 0)}%`,
        b.rss_bytes === null ? (b.pid === null ? "" : "–") : `${formatSize(b.rss_bytes)}${b.processes !== null && b.processes > 1 ? ` (${b.processes} procs)` : ""}`,
        b.restarts ?? "",
        b.gpus.join(","),
        b.drained ? `drained by ${b.drained.by}: ${b.inflight > 0 ? `${b.inflight} in flight` : "idle"} — \`llmsup undrain ${b.name}\`` : b.held ? `held stopped: ${b.held}` : b.progress ?? (b.health !== "healthy" ? b.health_reason : b.state === "fatal" || b.state === "blocked" ? (b.state_reason ?? "") : b.last_failure ? `last: ${b.last_failure}` : ""),
      ]),
    ]),
  );
  if (s.gpus && s.gpus.gpus.length > 0) {
    out.push("");
    const m = s.gpu_monitor;
    // Readings a failing or stuck nvidia-smi no longer refreshes are said to be old, not shown as now.
    const old = m && m.state !== "sampling" && m.last_sample_at ? ` — readings below are ${ago(m.last_sample_at, now)} old` : "";
    out.push(`${st.bold("GPUs")}  ${st.dim(`nvidia-smi ${m?.state ?? ""}`)}${old ? st.yellow(old) : ""}`);
    out.push(
      table([
        ["GPU", "TEMP", "UTIL", "MEMORY", "POWER", "THROTTLE", "ECC", "CONDITION"],
        ...s.gpus.gpus.map((g) => [
          `${g.index} ${g.name ?? ""}`.trim(),
          g.temperature_c === null ? "–" : `${g.temperature_c}°C`,
          g.utilization_pct === null ? "–" : `${g.utilization_pct}%`,
          g.memory_used_mib === null ? "–" : `${Math.round(g.memory_used_mib / 1024)}/${Math.round((g.memory_total_mib ?? 0) / 1024)} GiB`,
          g.power_draw_w === null ? "–" : `${Math.round(g.power_draw_w)}/${Math.round(g.power_limit_w ?? 0)} W`,
          g.clock_event_reasons.filter((r) => r !== "gpu_idle" && r !== "sw_power_cap").join(",") || "–",
          g.ecc_uncorrected_volatile === null ? "–" : String(g.ecc_uncorrected_volatile),
          colour(g.condition === "ok" ? "ok" : g.condition, g.faults.length ? `${g.condition}: ${g.faults.map((f) => f.reason).join("; ")}` : g.condition),
        ]),
      ]),
    );
  } else if (s.gpu_monitor) {
    out.push("");
    out.push(`${st.bold("GPUs")}  ${st.dim(`no GPU sample (nvidia-smi ${s.gpu_monitor.state})`)}`);
  }
  if (s.remediation && s.remediation.length > 0) {
    out.push("");
    out.push(`${st.bold("Remediation")}  ${st.dim(`auto_reset ${s.remediation[0]!.auto_reset ? "on" : "off"}`)}`);
    for (const r of s.remediation) {
      const state = r.state === "reboot_required" ? st.red("REBOOT REQUIRED") : r.state === "recovered" ? st.green(r.state) : st.yellow(r.state.replace("_", " "));
      out.push(`  GPU ${r.gpu}  ${state} for ${ago(r.since, now)}: ${r.why}`);
      if (r.backends.length) out.push(st.dim(`         backends ${r.backends.join(", ")}${r.backends_held ? ": held stopped" : ""}`));
      if (r.next) {
        const when = r.next_at ? ` at ${r.next_at.slice(11, 19)}Z${Date.parse(r.next_at) > now ? ` (in ${formatDuration(Date.parse(r.next_at) - now)})` : ""}` : "";
        out.push(`         next: ${r.next}${when}`);
      }
    }
  }
  if (s.cache) {
    const c = s.cache;
    out.push("");
    if (c.state !== "ok") out.push(`${st.bold("Cache")}  ${st.red(`unavailable: ${c.problem ?? "unknown"}`)}`);
    else {
      const kinds = [c.hits_similar ? `${c.hits_similar} similar` : "", c.hits_semantic ? `${c.hits_semantic} semantic` : ""].filter((k) => k !== "").join(", ");
      const served = `${c.hits} served${kinds ? ` (${kinds})` : ""}, ${c.misses} missed since start`;
      const last = c.last_hit ? `, last ${c.last_hit.route} ${ago(c.last_hit.at, now)} ago` : "";
      out.push(`${st.bold("Cache")}  ${c.entries}/${c.max_entries} answers, ${formatSize(c.bytes)} of ${formatSize(c.max_bytes)}; ${c.hits ? st.yellow(served) : served}${last}; routes ${c.routes.join(", ")}`);
    }
  }
  if (s.alerts?.enabled) {
    out.push("");
    out.push(`${st.bold("Alerts")}  ${s.alerts.delivered} sent, ${s.alerts.pending} waiting${s.alerts.last_error ? `, last error ${st.red(s.alerts.last_error)}` : ""}`);
    for (const c of s.alerts.channels ?? []) {
      const state = c.failing ? st.red(`FAILING${c.last_error_code ? ` (${c.last_error_code})` : ""}`) : st.green("ok");
      const extra = [c.rejected ? st.red(`${c.rejected} rejected`) : "", c.dropped ? st.red(`${c.dropped} dropped`) : ""].filter(Boolean).join(", ");
      const last = c.last_delivered_at ? `, last delivered ${ago(c.last_delivered_at, now)} ago` : "";
      out.push(`  ${c.channel.padEnd(14)} ${state}  ${c.delivered} delivered, ${c.pending} waiting${extra ? `, ${extra}` : ""}${last}`);
    }
  }
  if (s.events.length) {
    out.push("");
    out.push(st.bold("Recent events"));
    for (const e of s.events.slice(-10)) out.push(`  ${st.dim(e.time.replace("T", " ").replace(/\.\d+Z$/, "Z"))}  ${e.summary}`);
  }
  return `${out.join("\n")}\n`;
}
