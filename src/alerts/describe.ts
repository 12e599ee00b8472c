/** What each alert event means for the operator: headline, where, why, what to do. Pure. */
import { formatDuration, formatSize } from "../config/units.ts";
import type { AlertEvent, AlertKind, TierRef } from "./events.ts";
import { plural } from "./text.ts";

export interface Facts {
  /** Short, for the mail subject and list lines. */
  readonly headline: string;
  /** A sentence or two: what happened. */
  readonly what: string;
  /** Route, backend, GPU (the host is added by the renderer). */
  readonly where: readonly string[];
  /** The classified reason, and the raw error as it was said. */
  readonly why?: { readonly reason: string; readonly raw?: string };
  readonly action: string;
  /** Whose last log lines the event carries. */
  readonly logOf?: string;
  /** Further sections of the mail, after Why (the evidence, last readings). */
  readonly sections?: readonly { readonly title: string; readonly lines: readonly string[] }[];
}

export function tierName(t: TierRef): string {
  return `tier ${t.index} (${t.backend})`;
}

function gpuWhere(gpus: readonly number[] | undefined): string[] {
  return gpus && gpus.length ? [`${gpus.length === 1 ? "GPU" : "GPUs"} ${gpus.join(", ")}`] : [];
}

function gpuName(gpu: number | null, busId?: string): string {
  const name = gpu === null ? "all GPUs" : `GPU ${gpu}`;
  return busId ? `${name} (${busId})` : name;
}

/** What to do about a backend that gave up, by its last exit's classification. */
const EXIT_HINTS: Readonly<Record<string, string>> = {
  oom: "it ran out of GPU memory: lower its memory use (gpu_memory_utilization, max_model_len, a smaller quant) or free the GPU",
  gpu_occupied: "another process holds the GPU memory it needs: `nvidia-smi` shows which; stop it",
  oom_killed: "the kernel killed it for host memory: free RAM or lower its CPU offload",
  startup_timeout: "it did not become ready within startup_timeout: check the model path and raise [backend.process] startup_timeout if loads are slow",
  spawn_failed: "it could not be started: check [backend.process] command, user and group",
  start_failed: "it reported that the model cannot load: check the model name and files",
  wedged: "it stopped answering (deep probe): check the GPU and driver (`nvidia-smi`, kernel log)",
};

/** Process names can be long command lines: a subject shows the start of one. */
function shortName(name: string, max = 24): string {
  return name.length <= max ? name : `${name.slice(0, max - 1)}…`;
}

/** A backend waiting for someone else's process to let go of what it needs (GPU memory, its port). */
function blocked(e: Extract<AlertEvent, { kind: "backend_blocked" }>): Facts {
  const b = e.backend;
  const where = [`backend ${b}`, ...gpuWhere(e.gpus)];
  const why = { reason: e.exitClass ?? "blocked", raw: e.reason };
  const stopWait = `\`llmsup stop ${b}\` ends the wait.`;
  const h = e.holder;
  if (!h) {
    return {
      headline: `${b} blocked: cannot start`,
      what: `${b} cannot start: ${e.reason}. llmsup starts it as soon as that is released; its restart budget is untouched meanwhile.`,
      where,
      why,
      action: e.action ?? `Free what it waits for (see Why); llmsup then starts ${b} by itself. ${stopWait}`,
      logOf: b,
    };
  }
  const name = h.processName ? ` (${h.processName})` : "";
  return {
    headline: `${b} blocked: pid ${h.pid}${h.processName ? ` (${shortName(h.processName)})` : ""} holds ${h.usedMemoryMib} MiB on GPU ${h.gpu}`,
    what: `${b} cannot start: pid ${h.pid}${name}, a process llmsup did not start, holds ${h.usedMemoryMib} MiB on GPU ${h.gpu}, memory ${b} needs. llmsup starts ${b} as soon as that memory is freed; its restart budget is untouched meanwhile.`,
    where,
    why,
    action: e.action ?? `If ${b} should have GPU ${h.gpu}, stop pid ${h.pid} (\`nvidia-smi\` lists what runs on the GPU); llmsup then starts ${b} by itself. ${stopWait}`,
    logOf: b,
  };
}

const REBOOT_CAUSES: Readonly<Record<Extract<AlertEvent, { kind: "gpu_reboot_required" }>["cause"], string>> = {
  reboot_fault: "",
  reset_again: " (second reset need within reset_window)",
  reset_refused: " (reset refused)",
  reset_failed: " (reset failed)",
  reset_ineffective: " (reset did not help)",
};

/** The remediation ladder's news about one GPU: a reset starting or done, a reset or a reboot needed, the all-clear. */
function remediation(e: Extract<AlertEvent, { kind: "gpu_reset" | "gpu_reset_needed" | "gpu_reboot_required" | "gpu_recovered" }>): Facts {
  const g = gpuName(e.gpu);
  const full = gpuName(e.gpu, e.busId);
  const backends = e.backends.length ? e.backends.join(", ") : "none";
  const where = [full, ...(e.backends.length ? [`${e.backends.length === 1 ? "backend" : "backends"} ${backends}`] : [])];
  switch (e.kind) {
    case "gpu_reset":
      if (e.stage === "started") {
        return {
          headline: `${g}: resetting (nvidia-smi -r)`,
          what: `llmsup is resetting ${full}: its backends (${backends}) are stopped, then \`nvidia-smi -r -i ${e.gpu}\` runs; they start again once the faults have cleared.`,
          where,
          why: { reason: "reset_gpu", raw: e.faults.join("; ") },
          sections: [{ title: "Evidence:", lines: e.faults }],
          action: e.action ?? "Nothing to do now: a mail follows when the reset is done, or, if it fails, that a reboot is required.",
        };
      }
      return {
        headline: `${g}: reset done, backends starting again`,
        what: `llmsup reset ${full}; the faults that asked for it cleared and its backends (${backends}) start again.`,
        where,
        ...(e.detail ? { why: { reason: "reset_done", raw: e.detail } } : {}),
        action: e.action ?? "Nothing to do. Another reset need within [gpu] reset_window is escalated to a reboot.",
      };
    case "gpu_reset_needed":
      return {
        headline: `${g}: needs a GPU reset`,
        what: `${full} needs a reset and [gpu] auto_reset is off, so llmsup resets nothing; tiers on it stay out of service while the faults last.`,
        where,
        why: { reason: "reset_gpu", raw: e.faults.join("; ") },
        sections: [{ title: "Evidence:", lines: e.faults }],
        action:
          e.action ??
          `Stop what runs on ${g}${e.backends.length ? ` (\`llmsup stop\` ${backends})` : ""}, reset it with \`nvidia-smi -r -i ${e.gpu}\`, then start them again; or set [gpu] auto_reset = true and \`llmsup reload\` to let llmsup do it.`,
      };
    case "gpu_reboot_required":
      return {
        headline: `${g}: REBOOT REQUIRED${REBOOT_CAUSES[e.cause]}`,
        what: `${full} needs a reboot of the machine: ${e.why}. Its backends (${backends}) are stopped and held: llmsup does not restart them while this lasts.`,
        where,
        why: { reason: e.cause, raw: e.detail ?? e.why },
        sections: [
          { title: "Evidence:", lines: [...e.faults, ...(e.recoveryAction !== undefined ? [`gpu_recovery_action now reads: ${e.recoveryAction}`] : [])] },
          { title: "Last readings:", lines: e.readings },
        ],
        action:
          e.action ??
          `Reboot the machine when its work allows.${e.cause === "reset_refused" ? ` Or stop what still holds ${g} (\`nvidia-smi\` lists it) and reset it by hand: \`nvidia-smi -r -i ${e.gpu}\`.` : ""} llmsup starts the held backends again by itself once the GPU's faults clear.`,
      };
    case "gpu_recovered":
      return {
        headline: `${g}: recovered`,
        what: `${full} no longer needs a reset or a reboot: ${e.reason}.`,
        where,
        action: e.action ?? (e.backends.length ? `Nothing to do: its backends (${backends}) are running or start again by themselves.` : "Nothing to do."),
      };
  }
}

export function describe(e: AlertEvent): Facts {
  switch (e.kind) {
    case "failover":
      return {
        headline: `${e.route} failed over to ${tierName(e.to)}`,
        what: `Route ${e.route} moved from ${tierName(e.from)} to ${tierName(e.to)}.`,
        where: [`route ${e.route}`, `backend ${e.from.backend}`, ...gpuWhere(e.gpus)],
        why: { reason: e.reasonClass, raw: e.error },
        action:
          e.action ??
          (e.reasonClass === "misconfigured"
            ? `${e.from.backend} refused the request as misconfigured (401/403/unknown model): check the tier's model name and API key in supervisor.toml.`
            : `Requests go to ${tierName(e.to)} meanwhile and return to tier 0 by themselves once ${e.from.backend} is healthy. Look at it with \`llmsup status\` and \`llmsup logs ${e.from.backend}\`.`),
        logOf: e.from.backend,
      };
    case "recovery":
      return {
        headline: `${e.route} recovered on ${tierName(e.tier)}`,
        what: `Route ${e.route} is back on ${tierName(e.tier)}.`,
        where: [`route ${e.route}`, `backend ${e.tier.backend}`],
        action: e.action ?? "Nothing to do: traffic is back on the first tier.",
        logOf: e.tier.backend,
      };
    case "all_tiers_down":
      return {
        headline: `${e.route}: ALL TIERS DOWN`,
        what: `Every tier of route ${e.route} is down: clients get 503${e.retryAfterMs !== undefined ? ` with Retry-After ${formatDuration(e.retryAfterMs)}` : ""}.`,
        where: [`route ${e.route}`, ...e.tiers.map((t) => `${tierName(t.tier)}: ${t.reason}`)],
        why: { reason: "all_down" },
        action: e.action ?? "Bring one tier back: `llmsup status` says why each is down. Traffic resumes by itself when one is healthy.",
      };
    case "cache_serving":
      return {
        headline: `${e.route}: serving from the emergency cache`,
        what: `Every tier of route ${e.route} is down; it answers from the emergency response cache${e.served !== undefined ? ` (${plural(e.served, "answer")} so far)` : ""}, marked as such.`,
        where: [`route ${e.route}`],
        why: { reason: "all_down" },
        action: e.action ?? "Bring one tier back: `llmsup status` says why each is down. Fresh answers resume by themselves.",
      };
    case "backend_fatal": {
      const hint = EXIT_HINTS[e.exitClass];
      return {
        headline: `${e.backend} FATAL: restart budget spent`,
        what: `${e.backend} failed ${e.budget.used} of ${e.budget.burst} allowed starts and is given up: it stays down.`,
        where: [`backend ${e.backend}`, ...gpuWhere(e.gpus)],
        why: { reason: e.exitClass, raw: e.reason },
        action: e.action ?? `Restart budget spent: run \`llmsup reset ${e.backend}\` after fixing the cause${hint ? ` (${hint})` : " (see the last log lines)"}.`,
        logOf: e.backend,
      };
    }
    case "backend_restarting":
      return {
        headline: e.wedged ? `${e.backend} wedged, restarted ${plural(e.restarts, "time")}` : `${e.backend} restarted ${plural(e.restarts, "time")} in ${formatDuration(e.windowMs)}`,
        what: e.wedged
          ? `${e.backend} stopped answering and llmsup restarted it (${plural(e.restarts, "restart")} in ${formatDuration(e.windowMs)}).`
          : `${e.backend} keeps exiting: ${plural(e.restarts, "restart")} in ${formatDuration(e.windowMs)}.`,
        where: [`backend ${e.backend}`, ...gpuWhere(e.gpus)],
        why: { reason: e.exitClass, raw: e.reason },
        action: e.action ?? `llmsup restarts it with backoff and gives up (FATAL) when the start budget is spent. Look at \`llmsup logs ${e.backend}\`${EXIT_HINTS[e.exitClass] ? `; ${EXIT_HINTS[e.exitClass]}` : ""}.`,
        logOf: e.backend,
      };
    case "backend_blocked":
      return blocked(e);
    case "backend_recovered":
      return {
        headline: `${e.backend} ready again`,
        what: `${e.backend} passed its readiness probe and serves again.`,
        where: [`backend ${e.backend}`],
        action: e.action ?? "Nothing to do.",
      };
    case "gpu_fault":
      return {
        headline: `${gpuName(e.gpu)}: ${e.fault}${e.effect === "down" ? ", tiers DOWN" : ""}`,
        what: `${gpuName(e.gpu, e.busId)}: ${e.reason}${e.xid !== undefined ? ` (XID ${e.xid})` : ""}.`,
        where: [gpuName(e.gpu, e.busId)],
        why: { reason: e.fault, raw: e.reason },
        action:
          e.action ??
          `${e.recommended.replace(/[.\s]+$/, "")}; ${e.effect === "down" ? `tiers on ${gpuName(e.gpu)} are down and are restored automatically when the fault clears` : `tiers on ${gpuName(e.gpu)} may be slow meanwhile`}.`,
      };
    case "gpu_fault_cleared":
      return {
        headline: `${gpuName(e.gpu)}: ${e.fault} cleared`,
        what: `${gpuName(e.gpu, e.busId)}: ${e.fault} cleared (${e.reason}).`,
        where: [gpuName(e.gpu, e.busId)],
        action: e.action ?? "Nothing to do: tiers on it are restored automatically.",
      };
    case "gpu_reset":
    case "gpu_reset_needed":
    case "gpu_reboot_required":
    case "gpu_recovered":
      return remediation(e);
    case "disk_low":
      return {
        headline: `disk nearly full: ${e.path} (${formatSize(e.freeBytes)} free)`,
        what: `${e.path} has ${formatSize(e.freeBytes)} free, below the ${formatSize(e.minFreeBytes)} llmsup wants ([host] min_free_disk).`,
        where: [`filesystem ${e.path}`],
        action: e.action ?? "Free space: old logs, model caches, core dumps. llmsup needs it for backend logs, its state and the alert outbox.",
      };
    case "disk_ok":
      return {
        headline: `disk space back on ${e.path}`,
        what: `${e.path} has ${formatSize(e.freeBytes)} free again.`,
        where: [`filesystem ${e.path}`],
        action: e.action ?? "Nothing to do.",
      };
    case "tier_degraded":
      return {
        headline: `${e.backend}/${e.model} DEGRADED: ${e.detections} bad answers in ${formatDuration(e.windowMs)}`,
        what: `${e.backend}/${e.model} gave ${e.detections} bad answers (repetition loops, empty answers, garbage or refusals) within ${formatDuration(e.windowMs)}. Each was caught and answered by the next tier, or ended with an explicit error after its first tokens.`,
        where: [`backend ${e.backend}`, `model ${e.model}`, ...e.routes.map((r) => `route ${r}`)],
        action:
          e.action ??
          `See which detector caught them with \`llmsup events --kind quality\` and the log's router.quality lines; check the model build, its chat template and sampling settings (temperature, repetition penalty), and \`llmsup logs ${e.backend}\`.`,
        logOf: e.backend,
      };
    case "tier_quality_ok":
      return {
        headline: `${e.backend}/${e.model} answers well again`,
        what: `${e.backend}/${e.model} is under the count of bad answers that degrades it (${e.detections} within ${formatDuration(e.windowMs)}).`,
        where: [`backend ${e.backend}`, `model ${e.model}`],
        action: e.action ?? "Nothing to do.",
      };
    case "daemon_started":
      return {
        headline: `llmsup ${e.version} started`,
        what: `llmsup ${e.version} started (pid ${e.pid}) with ${e.config}.`,
        where: [],
        action: e.action ?? "Nothing to do.",
      };
    case "daemon_stopping":
      return {
        headline: "llmsup stopping",
        what: `llmsup is stopping: ${e.reason}.`,
        where: [],
        action: e.action ?? "Nothing to do if this was planned; otherwise read `journalctl -u llmsup`.",
      };
    case "reload_refused":
      return {
        headline: "configuration reload REFUSED",
        what: `llmsup refused to reload ${e.config} and keeps running the previous configuration: ${e.error}.`,
        where: [`configuration ${e.config}`, ...e.problems],
        why: { reason: "invalid_config", raw: e.problems.join("; ") || e.error },
        action: e.action ?? `Fix the file (\`llmsup check-config --config ${e.config}\` lists every problem), then \`llmsup reload\`. Until then the old settings stay in force.`,
      };
  }
}

/** Every kind of alert there is (the nouns below are complete by type). */
export function alertKinds(): AlertKind[] {
  return Object.keys(KIND_NOUNS) as AlertKind[];
}

const KIND_NOUNS: Readonly<Record<AlertKind, readonly [string, string]>> = {
  failover: ["failover", "failovers"],
  recovery: ["recovery", "recoveries"],
  all_tiers_down: ["all-tiers-down", "all-tiers-down"],
  cache_serving: ["cache-serving alert", "cache-serving alerts"],
  backend_fatal: ["fatal", "fatals"],
  backend_restarting: ["restart alert", "restart alerts"],
  backend_blocked: ["blocked alert", "blocked alerts"],
  backend_recovered: ["backend recovery", "backend recoveries"],
  gpu_fault: ["GPU fault", "GPU faults"],
  gpu_fault_cleared: ["GPU fault cleared", "GPU faults cleared"],
  gpu_reset: ["GPU reset alert", "GPU reset alerts"],
  gpu_reset_needed: ["reset-needed alert", "reset-needed alerts"],
  gpu_reboot_required: ["reboot-required alert", "reboot-required alerts"],
  gpu_recovered: ["GPU recovery", "GPU recoveries"],
  disk_low: ["low-disk alert", "low-disk alerts"],
  disk_ok: ["disk recovery", "disk recoveries"],
  tier_degraded: ["degraded-answers alert", "degraded-answers alerts"],
  tier_quality_ok: ["answers-recovered notice", "answers-recovered notices"],
  daemon_started: ["start", "starts"],
  daemon_stopping: ["stop", "stops"],
  reload_refused: ["refused reload", "refused reloads"],
};

/** "14 failovers". */
export function kindCount(kind: AlertKind, n: number): string {
  const [one, many] = KIND_NOUNS[kind];
  return `${n} ${n === 1 ? one : many}`;
}

/** A subject key for people: "llama-3.1-8b", "vllm-gpu0", "GPU 0 thermal", "disk /var", "llmsup". */
export function subjectLabel(subject: string): string {
  const [type, ...rest] = subject.split(":");
  const tail = rest.join(":");
  switch (type) {
    case "route":
    case "backend":
      return tail;
    case "gpu": {
      const [gpu, ...fault] = rest;
      return `${gpu === "all" ? "all GPUs" : `GPU ${gpu}`} ${fault.join(":")}`;
    }
    case "disk":
      return `disk ${tail}`;
    case "daemon":
      return "llmsup";
    case "config":
      return "configuration";
    default:
      return subject;
  }
}
