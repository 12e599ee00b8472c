/**
 * Anthropic's Messages API, simulated: a cloud endpoint rather than an engine
 * on this host. It holds no GPU memory and loads nothing; every request needs
 * an API key (x-api-key, or Authorization: Bearer) and an anthropic-version
 * header; errors are {"type":"error","error":{type,message},"request_id"}
 * with a request-id header; GET /v1/models lists the models and spends no
 * tokens. POST /v1/messages is anthropic-api.ts.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import { errorJson, json } from "../http.ts";
import { messagesRoute } from "../anthropic-api.ts";
import type { ErrorBody, KindRuntime, KindSpec, SimContext } from "./kind.ts";

/** The API version this simulation speaks (the anthropic-version header every client sends). */
export const ANTHROPIC_VERSION = "2023-06-01";

/** Anthropic's request ids: req_ and 24 base62-ish characters. */
export function anthropicRequestId(): string {
  return `req_${randomBytes(18).toString("base64url").replace(/[-_]/g, "x").slice(0, 24)}`;
}

/** The error type Anthropic names for an HTTP status. */
export function anthropicErrorType(status: number): string {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 402:
      return "billing_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 504:
      return "timeout_error";
    case 529:
      return "overloaded_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

/** An error in Anthropic's shape, with its request id in the body and the request-id header. */
export function anthropicError(status: number, message: string, headers: Record<string, string> = {}): ErrorBody {
  const id = anthropicRequestId();
  return { status, body: { type: "error", error: { type: anthropicErrorType(status), message }, request_id: id }, headers: { "request-id": id, ...headers } };
}

/** The messages of the real API for the fault gate's bare status codes. */
function statusMessage(status: number, message: string): string {
  if (status === 529 && /^Service temporarily unavailable$|^Internal server error$/.test(message)) return "Overloaded";
  if (status >= 500 && message === "Internal server error") return "Internal server error";
  return message;
}

/**
 * The credential and version checks every endpoint makes, in the API's order: a key first (401),
 * then the version header (400). Undefined when the request may go on.
 */
export function checkHeaders(req: IncomingMessage, apiKey: string | undefined): ErrorBody | undefined {
  const xKey = req.headers["x-api-key"];
  const auth = req.headers.authorization;
  const bearer = typeof auth === "string" && /^Bearer\s+/i.test(auth) ? auth.replace(/^Bearer\s+/i, "").trim() : undefined;
  const key = typeof xKey === "string" && xKey !== "" ? xKey : bearer;
  if (!key) return anthropicError(401, "x-api-key header is required");
  if (apiKey !== undefined && key !== apiKey) return anthropicError(401, "invalid x-api-key");
  if (typeof req.headers["anthropic-version"] !== "string" || req.headers["anthropic-version"] === "") return anthropicError(400, "anthropic-version: header is required");
  return undefined;
}

/**
 * Models that take no assistant prefill: Claude 4.6 and later answer a conversation ending with an
 * assistant turn with a 400 (the reject_prefill fault makes any model do so).
 */
export function rejectsPrefill(model: string): boolean {
  const m = /^claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d+))?/.exec(model.toLowerCase());
  if (!m) return false;
  const major = Number(m[1]);
  const minor = m[2] !== undefined && m[2].length <= 2 ? Number(m[2]) : 0;
  return major > 4 || (major === 4 && minor >= 6);
}

/** A display name for a model id: claude-sonnet-4-5 → Claude Sonnet 4.5. */
function displayName(id: string): string {
  const m = /^claude-([a-z]+)-(\d+)(?:-(\d{1,2}))?/.exec(id);
  if (!m) return id;
  return `Claude ${m[1]![0]!.toUpperCase()}${m[1]!.slice(1)} ${m[2]}${m[3] !== undefined ? `.${m[3]}` : ""}`;
}

function listModels(res: ServerResponse, sim: SimContext, req: IncomingMessage): void {
  const bad = checkHeaders(req, sim.options.apiKey);
  if (bad) return errorJson(res, bad);
  const s = sim.info();
  const created = new Date(s.startedAt).toISOString();
  const data = s.models.map((id) => ({ type: "model", id, display_name: displayName(id), created_at: created }));
  json(res, 200, { data, has_more: false, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null }, { "request-id": anthropicRequestId() });
}

const NO_MODELS: ReadonlyMap<string, number> = new Map();

/** Nothing to load and no process to watch: it listens and serves. */
class AnthropicRuntime implements KindRuntime {
  readonly loaded = NO_MODELS;
  readonly busySlots = 0;
  private readonly sim: SimContext;

  constructor(sim: SimContext) {
    this.sim = sim;
  }

  async boot(): Promise<number | undefined> {
    await this.sim.listen();
    this.sim.setPhase("ready");
    return undefined;
  }

  /** A cloud API does not die of its GPUs: the request fails with an api_error. */
  async runtimeOom(res: ServerResponse): Promise<void> {
    errorJson(res, anthropicError(500, "Internal server error"));
  }

  async onCpu(): Promise<void> {}

  close(): void {}
}

export const ANTHROPIC: KindSpec = {
  kind: "anthropic",
  version: ANTHROPIC_VERSION,
  routes: [{ method: "GET", path: "/v1/models", handle: ({ req, res, sim }) => listModels(res, sim, req) }, messagesRoute],
  refusedWhileLoading: [],
  notFound: (res) => errorJson(res, anthropicError(404, "Not found")),
  wantsStream: (stream) => stream === true,
  continuesFinalMessage: () => true,
  openaiChat: { roleEveryChunk: false, extra: {} },
  modelEntry: (id, s) => ({ type: "model", id, display_name: displayName(id), created_at: new Date(s.startedAt).toISOString() }),
  apiError: (status, message) => anthropicError(status, statusMessage(status, message)),
  unknownModel: (model) => anthropicError(404, `model: ${model}`),
  contextLengthError: (promptTokens, _maxTokens, context) => anthropicError(400, `prompt is too long: ${Math.max(promptTokens, context + 1)} tokens > ${context} maximum`),
  oomAtLoadLines: () => [],
  oomAtRuntimeLines: () => [],
  listeningLine: (host, port) => `Anthropic Messages API (simulated, version ${ANTHROPIC_VERSION}) listening on http://${host}:${port}`,
  shutdownLine: () => "shutting down",
  attach: (sim) => new AnthropicRuntime(sim),
};
