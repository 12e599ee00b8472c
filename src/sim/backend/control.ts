/** The simulator's own endpoints: /_sim/fault (GET, POST, DELETE) and /_sim/state. Every kind has them; no fault touches them. */
import type { IncomingMessage, ServerResponse } from "node:http";
import { parseFault, type Fault } from "./faults.ts";
import { json, readBody } from "./http.ts";

/** The server as its control endpoints see it. */
export interface ControlTarget {
  fault(): Fault;
  setFault(fault: Fault): void;
  /** The body of GET /_sim/state. */
  state(): unknown;
}

export async function control(target: ControlTarget, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  if (path === "/_sim/fault") {
    if (req.method === "GET") return json(res, 200, target.fault());
    if (req.method === "DELETE") {
      target.setFault({});
      return json(res, 200, target.fault());
    }
    if (req.method === "POST") {
      const body = await readBody(req).catch(() => undefined);
      let parsed: unknown;
      try {
        parsed = JSON.parse(body?.toString("utf8") || "{}");
      } catch {
        return json(res, 400, { error: "expected a JSON object describing the fault" });
      }
      const f = parseFault(parsed);
      if (!f.ok) return json(res, 400, { error: f.error });
      json(res, 200, f.fault);
      target.setFault(f.fault);
      return;
    }
  }
  if (path === "/_sim/state" && req.method === "GET") return json(res, 200, target.state());
  return json(res, 404, { error: `no simulator control endpoint ${req.method} ${path}` });
}
