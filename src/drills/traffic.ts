/**
 * A drill's own requests through the routing socket: tiny, marked with the
 * drill's id (x-llmsup-drill) and kept out of the emergency cache
 * (x-llmsup-cache: no-store); what each one got, as a client would judge it.
 */
import { Agent } from "undici";
import type { RouteConfig } from "../config/types.ts";

/** ok: a complete answer; degraded: from a fallback tier, or a stream continued on one. */
export interface Asked {
  readonly ok: boolean;
  readonly tier?: number;
  readonly degraded?: boolean;
}

export interface Traffic {
  ask(n: number, stream: boolean): Promise<Asked>;
  close(): Promise<void>;
}

export function openTraffic(socket: string, route: RouteConfig, id: string, connections: number): Traffic {
  const agent = new Agent({ connect: { socketPath: socket }, connections });
  return {
    ask: (n, stream) => ask(agent, route, id, n, stream),
    close: () => agent.close().catch(() => undefined),
  };
}

/** A complete answer: a 200 whose body has choices (whole), or a stream that reached [DONE] without an error event. */
function complete(status: number, text: string, stream: boolean): boolean {
  if (status !== 200) return false;
  if (stream) return text.includes("data: [DONE]") && !text.split("\n").some((l) => l.startsWith("data: ") && l !== "data: [DONE]" && l.includes('"error":'));
  try {
    return Array.isArray((JSON.parse(text) as { choices?: unknown }).choices);
  } catch {
    return false;
  }
}

/** One marked request, whole or streamed, judged as a client would: degraded when a fallback tier answered or a stream was continued on one. */
async function ask(agent: Agent, route: RouteConfig, id: string, n: number, stream: boolean): Promise<Asked> {
  try {
    const r = await agent.request({
      origin: "http://llmsup",
      path: "/v1/chat/completions",
      method: "POST",
      headers: { "content-type": "application/json", "x-llmsup-drill": id, "x-llmsup-cache": "no-store" },
      body: JSON.stringify({ model: route.model === "*" ? "drill" : route.model, messages: [{ role: "user", content: `llmsup drill ${id}, request ${n}` }], max_tokens: stream ? 16 : 4, ...(stream ? { stream: true } : {}) }),
    });
    const text = await r.body.text();
    const tier = Number(r.headers["x-llmsup-tier"]);
    const continued = stream && /^: llmsup: the answer continues/m.test(text);
    return { ok: complete(r.statusCode, text, stream), tier: Number.isInteger(tier) ? tier : undefined, degraded: r.headers["x-llmsup-degraded"] === "true" || continued };
  } catch {
    return { ok: false };
  }
}
