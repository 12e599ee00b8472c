/**
 * One JSON POST to an alert receiver (Alertmanager, a webhook), every outcome
 * a value: 2xx delivered; unreachable, timed out, 5xx, 408 and 429 worth
 * retrying (LLMSUP_E_ALERT_RECEIVER_UNREACHABLE); any other answer a refusal
 * for good (LLMSUP_E_ALERT_RECEIVER_REJECTED). Redirects are not followed (a
 * POST turned into a GET delivers nothing): they count as a refusal of the
 * URL. Secrets in what the receiver answers are scrubbed.
 */
import type { DeliveryFailure } from "./failure.ts";
import { scrub } from "./smtp-failure.ts";

/** How much of a receiver's answer is kept for logs and status. */
export const RESPONSE_MAX = 300;

export type PostResult = { readonly ok: true; readonly status: number; readonly response: string } | { readonly ok: false; readonly failure: DeliveryFailure };

/** Pure: a receiver's HTTP answer other than 2xx, classified. */
export function httpFailure(status: number, body: string, request: string, secrets: readonly string[] = []): DeliveryFailure {
  const retry = status >= 500 || status === 408 || status === 429;
  const response = scrub(body.replace(/\s+/g, " ").trim(), secrets).slice(0, RESPONSE_MAX);
  return {
    code: `HTTP_${status}`,
    responseCode: status,
    response: response === "" ? undefined : `${status} ${response}`,
    command: request,
    message: `the receiver answered ${status}`,
    llmsupCode: retry ? "LLMSUP_E_ALERT_RECEIVER_UNREACHABLE" : "LLMSUP_E_ALERT_RECEIVER_REJECTED",
    messageRejected: !retry,
  };
}

/** Pure: a POST that got no answer (refused, reset, DNS, timeout, aborted). */
export function networkFailure(err: unknown, request: string, timeoutMs: number, secrets: readonly string[] = []): DeliveryFailure {
  const e = err as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string } };
  const timedOut = e?.name === "TimeoutError";
  const aborted = e?.name === "AbortError";
  const cause = typeof e?.cause?.code === "string" ? e.cause.code : typeof e?.code === "string" ? e.code : undefined;
  const code = timedOut ? "ETIMEDOUT" : aborted ? "EABORTED" : (cause ?? "EUNKNOWN");
  const raw = timedOut ? `no answer within ${timeoutMs} ms` : (e?.cause?.message ?? e?.message ?? String(err));
  return { code, cause: timedOut || aborted ? undefined : cause, command: request, message: scrub(raw, secrets), llmsupCode: "LLMSUP_E_ALERT_RECEIVER_UNREACHABLE", messageRejected: false };
}

/** POSTs `body` (JSON) to `url` within `timeoutMs`; never rejects. */
export async function postJson(url: string, body: string, o: { readonly headers?: Readonly<Record<string, string>>; readonly timeoutMs: number; readonly signal?: AbortSignal; readonly secrets?: readonly string[] }): Promise<PostResult> {
  const request = `POST ${url}`;
  const signals = [AbortSignal.timeout(o.timeoutMs), ...(o.signal ? [o.signal] : [])];
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "llmsup", ...o.headers },
      body,
      redirect: "manual",
      signal: AbortSignal.any(signals),
    });
    const text = await res.text().catch(() => "");
    if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status, response: scrub(text.replace(/\s+/g, " ").trim(), o.secrets ?? []).slice(0, RESPONSE_MAX) };
    return { ok: false, failure: httpFailure(res.status, text, request, o.secrets) };
  } catch (e) {
    return { ok: false, failure: networkFailure(e, request, o.timeoutMs, o.secrets) };
  }
}
