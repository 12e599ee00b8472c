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
    ask: (n, stream) => (stream ? askStream(agent, route, id, n) : ask(agent, route, id, n)),
    close: () => agent.close().catch(() => undefined),
  };
}

/** One marked request for a whole answer: ok when a 200 with choices came. */
async function ask(agent: Agent, route: RouteConfig, id: string, n: number): Promise<Asked> {
  try {
    const r = await agent.request({
      origin: "http://llmsup",
      path: "/v1/chat/completions",
      method: "POST",
      headers: { "content-type": "application/json", "x-llmsup-drill": id, "x-llmsup-cache": "no-store" },
      body: JSON.stringify({ model: route.model === "*" ? "drill" : route.model, messages: [{ role: "user", content: `llmsup drill ${id}, request ${n}` }], max_tokens: 4 }),
    });
    const text = await r.body.text();
    const tier = Number(r.headers["x-llmsup-tier"]);
    let ok = r.statusCode === 200;
    if (ok) {
      try {
        ok = Array.isArray((JSON.parse(text) as { choices?: unknown }).choices);
      } catch {
        ok = false;
      }
    }
    return { ok, tier: Number.isInteger(tier) ? tier : undefined, degraded: r.headers["x-llmsup-degraded"] === "true" };
  } catch {
    return { ok: false };
  }
}

/** One marked streamed request: ok when the stream reached [DONE] without an error event. */
async function askStream(agent: Agent, route: RouteConfig, id: string, n: number): Promise<Asked> {
  try {
    const r = await agent.request({
      origin: "http://llmsup",
      path: "/v1/chat/completions",
      method: "POST",
      headers: { "content-type": "application/json", "x-llmsup-drill": id, "x-llmsup-cache": "no-store" },
      body: JSON.stringify({ model: route.model === "*" ? "drill" : route.model, messages: [{ role: "user", content: `llmsup drill ${id}, request ${n}` }], max_tokens: 16, stream: true }),
    });
    const text = await r.body.text();
    const tier = Number(r.headers["x-llmsup-tier"]);
    const events = text.split("\n").filter((l) => l.startsWith("data: ") && l !== "data: [DONE]");
    const failed = events.some((l) => l.includes('"error":'));
    const ok = r.statusCode === 200 && text.includes("data: [DONE]") && !failed;
    const continued = /^: llmsup: the answer continues/m.test(text);
    return { ok, tier: Number.isInteger(tier) ? tier : undefined, degraded: r.headers["x-llmsup-degraded"] === "true" || continued };
  } catch {
    return { ok: false };
  }
}
