/**
 * Settling the alert policy's state with what is true now. The policy state
 * outlives the daemon (the alerter keeps it on disk), so after a restart it may
 * still hold the previous life's outages: a route "on tier 1" that is long
 * back, a backend "restarting" that starts afresh. Left alone, the next real
 * failover would look like a repeat of that stale state and be folded instead
 * of mailed. Pure: state and the live state in, state and mails out.
 *
 * What an on-call engineer gets, per route and backend subject:
 * - the live state says the route serves from its first tier and the outage
 *   from before was mailed: the all-clear, paired with that outage's first
 *   failure and sent to whoever heard of it (whoever heard of a failure hears
 *   of its end; the mail says llmsup found it so, not saw it happen);
 * - the same, but the outage was never mailed: forgotten without a mail (no
 *   all-clear for something nobody was told of);
 * - the route is still settling (at start and after a reload the router's
 *   routes settle until their first tier has loaded, so nothing is known
 *   yet), or the backend is no longer fatal (it starts afresh): the old bad
 *   state is forgotten without a mail: neither a phantom recovery nor a
 *   made-up "still down". The next real failover, restart loop or fatal is a
 *   new outage, mailed at once. (The "llmsup started" mail, with its status
 *   snapshot, tells where things stand after a restart.)
 * - the live state is still bad: the outage stands (its first failure, whether
 *   and to whom it was mailed), settled to the live bad state without a mail,
 *   so a re-report of that state is a repeat (no duplicate mail) and the
 *   eventual recovery pairs with the original failure and reaches the same
 *   people;
 * - a subject that is fine stays fine: reconciling never invents an outage;
 *   the component that sees it reports it, and that report is mailed;
 * - a route or backend the configuration no longer has: dropped, silently.
 * A (backend, model) marked DEGRADED by its bad answers that is not degraded
 * now (the router counts them in memory: after a restart it starts afresh) is
 * forgotten without a mail: llmsup cannot say it answers well, only that it
 * no longer knows; the next degradation is a new one, mailed at once.
 * GPU-fault, disk and daemon subjects are left as they are.
 */
import type { RecoveryEvent, TierRef } from "./events.ts";
import { decide, withSubject, type Decision, type PolicyConfig, type PolicyState, type SubjectState } from "./policy.ts";

export interface LiveRoute {
  /**
   * The tier serving the route now (index 0: its first tier); null: no tier
   * can serve it; "settling": not known yet (the route is waiting for its
   * first tier to load). Omitted: not known, and the policy's record stands.
   */
  readonly serving?: TierRef | null | "settling";
}

export interface LiveBackend {
  /** Whether the backend is fatal now (its restart budget spent, until `llmsup reset`). Omitted: not known, the record stands. */
  readonly fatal?: boolean;
}

/** What is true now. Every configured route and backend is listed; a subject of one not listed is dropped. */
export interface LiveState {
  /** By route model. */
  readonly routes: Readonly<Record<string, LiveRoute>>;
  /** By backend name. */
  readonly backends: Readonly<Record<string, LiveBackend>>;
  /** The (backend, model) pairs DEGRADED by their bad answers now, as "backend/model". Omitted: not known, the records stand. */
  readonly degradedTiers?: ReadonlySet<string>;
}

export type ReconcileAction = "dropped" | "forgotten" | "cleared" | "settled";

export interface ReconcileChange {
  readonly subject: string;
  /** dropped: the route or backend is gone; forgotten: a stale bad state, without a mail; cleared: the all-clear went out; settled: still bad, now in the live bad state. */
  readonly action: ReconcileAction;
  /** The state the policy held. */
  readonly from: string;
  /** The state it holds now (settled). */
  readonly to?: string;
}

export interface Reconciled extends Decision {
  readonly changes: readonly ReconcileChange[];
}

const CLEARED_ACTION = "Nothing to do: llmsup found the route back on its first tier when it re-read the live state (after a restart or a reload), rather than seeing the recovery happen.";

/** Settles `state` with `live` at time `now`; see the file comment for the rules. */
export function reconcile(state: PolicyState, live: LiveState, now: number, cfg: PolicyConfig): Reconciled {
  let st = state;
  const mails: Decision["mails"][number][] = [];
  const changes: ReconcileChange[] = [];
  const forget = (key: string, s: SubjectState, action: "dropped" | "forgotten") => {
    st = withSubject(st, key, undefined);
    changes.push({ subject: key, action, from: s.bad ? s.state : "ok" });
  };
  const settle = (key: string, s: SubjectState, to: string, severity: SubjectState["severity"]) => {
    if (s.state === to) return;
    st = withSubject(st, key, { ...s, state: to, severity });
    changes.push({ subject: key, action: "settled", from: s.state, to });
  };

  for (const [key, s] of Object.entries(state.subjects)) {
    if (key.startsWith("route:")) {
      const model = key.slice("route:".length);
      const lr = Object.hasOwn(live.routes, model) ? live.routes[model]! : undefined;
      if (!lr) {
        forget(key, s, "dropped");
        continue;
      }
      if (!s.bad || lr.serving === undefined) continue;
      const serving = lr.serving;
      if (serving === "settling") forget(key, s, "forgotten");
      else if (serving === null) {
        if (s.state !== "all_down" && s.state !== "cache") settle(key, s, "all_down", "critical");
      } else if (serving.index > 0) settle(key, s, `tier:${serving.index}`, "warning");
      else if (!s.outage?.mailed) forget(key, s, "forgotten");
      else {
        const e: RecoveryEvent = { kind: "recovery", at: now, route: model, tier: serving, action: CLEARED_ACTION };
        const d = decide(st, e, now, cfg);
        st = d.state;
        mails.push(...d.mails);
        changes.push({ subject: key, action: "cleared", from: s.state });
      }
    } else if (key.startsWith("backend:")) {
      const name = key.slice("backend:".length);
      const lb = Object.hasOwn(live.backends, name) ? live.backends[name]! : undefined;
      if (!lb) {
        forget(key, s, "dropped");
        continue;
      }
      if (!s.bad || lb.fatal === undefined) continue;
      if (lb.fatal) settle(key, s, "fatal", "critical");
      else forget(key, s, "forgotten");
    } else if (key.startsWith("tier:")) {
      if (s.bad && live.degradedTiers && !live.degradedTiers.has(key.slice("tier:".length))) forget(key, s, "forgotten");
    }
  }
  return { state: st, mails, changes };
}
