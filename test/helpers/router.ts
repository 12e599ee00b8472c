/** Router tests: a router on a unix socket in a temp dir, backends that are simulators, the official openai client. */
import OpenAI from "openai";
import path from "node:path";
import { Agent, fetch as undiciFetch } from "undici";
import type { Config } from "../../src/config/types.ts";
import { HealthRegistry } from "../../src/health/registry.ts";
import { realClock } from "../../src/platform/clock.ts";
import { RouterMetrics } from "../../src/router/metrics.ts";
import { Router, type RouterDeps, type RouterEvent } from "../../src/router/router.ts";
import { RouterServer } from "../../src/router/server.ts";
import { memoryLogger, testConfig } from "./supervise.ts";
import { tempDir } from "./tmp.ts";

export interface RouterHarness {
  readonly config: Config;
  readonly router: Router;
  readonly server: RouterServer;
  readonly health: HealthRegistry;
  readonly socket: string;
  readonly tcpUrl: string;
  readonly events: RouterEvent[];
  readonly metrics: RouterMetrics;
  readonly client: OpenAI;
  /** fetch over the unix socket. */
  fetch(pathname: string, init?: Parameters<typeof undiciFetch>[1]): ReturnType<typeof undiciFetch>;
}

export async function startRouter(t: { after(fn: () => void | Promise<void>): void }, body: string, routerToml = "", deps: Partial<Pick<RouterDeps, "contextWindow" | "drained">> = {}): Promise<RouterHarness> {
  const dir = tempDir(t);
  const socket = path.join(dir, "api.sock");
  const config = testConfig(dir, `[router]\nsocket = "${socket}"\nlisten = "127.0.0.1:0"\n${routerToml}\n${body}`);
  const health = new HealthRegistry(config, realClock);
  const events: RouterEvent[] = [];
  const metrics = new RouterMetrics();
  const router = new Router(config, { health, clock: realClock, logger: memoryLogger().logger, metrics, onEvent: (e) => events.push(e), ...deps });
  const server = new RouterServer(config, router, memoryLogger().logger, metrics);
  const listening = await server.listen();
  const agent = new Agent({ connect: { socketPath: socket } });
  const viaSocket = (url: string | URL, init?: Parameters<typeof undiciFetch>[1]) => undiciFetch(url, { ...init, dispatcher: agent });
  const client = new OpenAI({ baseURL: "http://llmsup/v1", apiKey: "unused", maxRetries: 0, timeout: 20_000, fetch: viaSocket as unknown as typeof fetch });
  t.after(async () => {
    await server.close();
    await router.close();
    await agent.close();
  });
  return {
    config,
    router,
    server,
    health,
    socket,
    tcpUrl: `http://127.0.0.1:${listening.tcp!.port}`,
    events,
    metrics,
    client,
    fetch: (pathname, init) => viaSocket(`http://llmsup${pathname}`, init),
  };
}

/** A remote backend entry (no process) pointing at a simulator. */
export function backend(name: string, kind: string, port: number, extra = ""): string {
  return `[[backend]]\nname = "${name}"\nkind = "${kind}"\nurl = "http://127.0.0.1:${port}"\n${extra}\n`;
}
