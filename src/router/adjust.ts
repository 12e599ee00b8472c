/**
 * Per-tier request adjustments: the tier's model name, a max_tokens clamp, a
 * forced temperature, dropped parameters. Each tier starts from the caller's
 * original request, so a primary's limits never leak into a smaller tier. Pure.
 */
import type { TierConfig } from "../config/types.ts";

export type Body = Record<string, unknown>;

/** Parameters llmsup itself reads and never forwards. */
const PRIVATE = ["llmsup"];

export function adjustForTier(original: Body, tier: TierConfig, extra: Body = {}): Body {
  const out: Body = { ...original, model: tier.model };
  for (const p of PRIVATE) delete out[p];
  if (tier.max_tokens !== undefined) {
    const asked = typeof original.max_tokens === "number" ? original.max_tokens : typeof original.max_completion_tokens === "number" ? original.max_completion_tokens : undefined;
    const clamped = asked === undefined ? tier.max_tokens : Math.min(asked, tier.max_tokens);
    if ("max_completion_tokens" in original && !("max_tokens" in original)) out.max_completion_tokens = clamped;
    else {
      out.max_tokens = clamped;
      delete out.max_completion_tokens;
    }
  }
  if (tier.temperature !== undefined) out.temperature = tier.temperature;
  for (const p of tier.drop_params) delete out[p];
  return { ...out, ...extra };
}
