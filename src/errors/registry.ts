/**
 * The one registry of llmsup's stable error codes, in two sections:
 *
 * - `ERRORS`: the `LLMSUP_E_*` codes llmsup reports to operators (the CLI and
 *   its exit status, the logs, the control socket);
 * - `WIRE_ERRORS`: the lower-case OpenAI-style `code` values clients of the
 *   routing socket see, each with the HTTP status and `type` of its body.
 *
 * `docs/errors.md` documents each of them, one table per section; a test
 * keeps the two in step. Codes are never renamed or reused once released.
 */

export interface ErrorSpec {
  /** Human summary: what went wrong and what to do about it. */
  readonly message: string;
  /** Process exit status when this error ends a CLI command. */
  readonly exit: number;
  /** The code a client of the routing socket sees when this error reaches it, if ever. */
  readonly wire?: WireCode;
  /** Whether repeating the same operation later can succeed. */
  readonly retryable: boolean;
}

/** sysexits(3) values used by the CLI. */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 64,
  UNAVAILABLE: 69,
  SOFTWARE: 70,
  IOERR: 74,
  TEMPFAIL: 75,
  NOPERM: 77,
  CONFIG: 78,
} as const;

export const ERRORS = {
  LLMSUP_E_CONFIG_INVALID: {
    message: "The configuration has problems; each is listed with its key path, what was expected and what was found. Fix them and run `llmsup check-config` again.",
    exit: EXIT.CONFIG,
    retryable: false,
  },
  LLMSUP_E_CONFIG_SYNTAX: {
    message: "The configuration file is not valid TOML; the line and column of the first error are given.",
    exit: EXIT.CONFIG,
    retryable: false,
  },
  LLMSUP_E_CONFIG_UNREADABLE: {
    message: "The configuration file could not be read (missing, unreadable, or a directory). Check the path and its permissions.",
    exit: EXIT.CONFIG,
    retryable: false,
  },
  LLMSUP_E_CONFIG_HOST: {
    message: "The configuration is valid but cannot run on this host: a program, secret file, environment variable or GPU it names is missing or not usable by the daemon's user; each is listed with its key path. Fix them, or run `llmsup check-config --offline` to check only the file.",
    exit: EXIT.CONFIG,
    retryable: false,
  },
  LLMSUP_E_USAGE: {
    message: "The command line is not valid; see `llmsup --help`.",
    exit: EXIT.USAGE,
    retryable: false,
  },
  LLMSUP_E_SECRET_UNREADABLE: {
    message: "A secret named by reference (a *_file or *_env key) could not be read. Check that the file exists and is readable by the daemon's user, or that the variable is set.",
    exit: EXIT.CONFIG,
    retryable: false,
  },
  LLMSUP_E_SPAWN_FAILED: {
    message: "A backend's process could not be started (program missing or not executable, unknown user or group). Check [backend.process] command, user and group.",
    exit: EXIT.CONFIG,
    retryable: true,
  },
  LLMSUP_E_BACKEND_UNKNOWN: {
    message: "No backend of that name is configured; `llmsup status` lists them.",
    exit: EXIT.USAGE,
    retryable: false,
  },
  LLMSUP_E_BACKEND_NOT_MANAGED: {
    message: "That backend is remote: llmsup only checks its health and cannot start, stop or restart it.",
    exit: EXIT.USAGE,
    retryable: false,
  },
  LLMSUP_E_BACKEND_HELD: {
    message: "That backend is held stopped because its GPU needs a reset or a reboot (`llmsup status` says why, under Remediation); llmsup starts it again by itself once the GPU's faults clear (after a reboot, or \`llmsup gpus clear <gpu>\` once you have dealt with an XID yourself).",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_GPU_SMI_MISSING: {
    message: "nvidia-smi was not found or cannot be run at the configured path ([gpu] nvidia_smi, or --nvidia-smi). Install the NVIDIA driver utilities or fix the path.",
    exit: EXIT.UNAVAILABLE,
    retryable: false,
  },
  LLMSUP_E_GPU_SMI_FAILED: {
    message: "nvidia-smi failed in a way llmsup does not recognise; its own message is quoted. Run it by hand to see more.",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_GPU_SMI_OUTPUT: {
    message: "nvidia-smi answered with output llmsup cannot read (wrong number of columns, not CSV); the offending line is quoted. Please report it with the driver version.",
    exit: EXIT.UNAVAILABLE,
    retryable: false,
  },
  LLMSUP_E_GPU_UNRESPONSIVE: {
    message: "nvidia-smi did not answer within the deadline ([gpu] deadline): the driver may be wedged. llmsup starts no further nvidia-smi while one is stuck; a GPU reset or a reboot may be needed.",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_GPU_DRIVER_NOT_LOADED: {
    message: "nvidia-smi cannot communicate with the NVIDIA driver: the kernel module is not loaded or failed to load. Check that the nvidia module is loaded (`lsmod`) and read the kernel log.",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_GPU_NVML_MISMATCH: {
    message: "The NVIDIA driver in the kernel and the NVML library differ in version (usually after a driver upgrade): reload the driver or reboot.",
    exit: EXIT.UNAVAILABLE,
    retryable: false,
  },
  LLMSUP_E_GPU_NO_DEVICES: {
    message: "nvidia-smi found no GPUs: none is installed, visible to this user or container, or they all fell off the bus.",
    exit: EXIT.UNAVAILABLE,
    retryable: false,
  },
  LLMSUP_E_GPU_LOST: {
    message: "A GPU is lost (nvidia-smi: \"GPU is lost\"): it fell off the bus and only a reboot recovers it. Its bus id is named.",
    exit: EXIT.UNAVAILABLE,
    retryable: false,
  },
  LLMSUP_E_GPU_DEVICE_ERROR: {
    message: "nvidia-smi cannot open a GPU (\"Unable to determine the device handle\"); its bus id and the driver's reason are named. Check the kernel log for XID errors; a reset may be needed.",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_GPU_FIELD_UNSUPPORTED: {
    message: "This nvidia-smi does not know a field llmsup cannot do without (the field is named); the driver is probably too old.",
    exit: EXIT.UNAVAILABLE,
    retryable: false,
  },
  LLMSUP_E_GPU_READING_IMPLAUSIBLE: {
    message: "nvidia-smi reported a reading no GPU can give (negative, not a finite number, a temperature over 150 °C, utilisation over 100 %, more memory in use than the GPU has, a power draw over 2000 W, an ECC count that is negative or not whole); the GPU and the field are named. llmsup ignores it and shows the last good value, marked stale. Compare with `nvidia-smi -q -i <gpu>` by hand; if it persists, update or reload the driver.",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_GPU_UNKNOWN: {
    message: "The running daemon knows no GPU of that index (nvidia-smi has not shown it and no fault names it); `llmsup gpus` and `llmsup status` list the GPUs.",
    exit: EXIT.USAGE,
    retryable: false,
  },
  LLMSUP_E_GPU_RESET_REFUSED: {
    message: "nvidia-smi refused to reset a GPU because processes still use it (its message is quoted). llmsup had stopped its own backends on that GPU, so something else holds it: `nvidia-smi --query-compute-apps=pid,gpu_uuid,process_name --format=csv` names it. Stop it and reset the GPU by hand (`nvidia-smi -r -i <gpu>`), or reboot.",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_GPU_RESET_FAILED: {
    message: "nvidia-smi could not reset a GPU (its output is quoted), or the reset did not clear the faults that asked for it: the GPU needs a reboot of the machine.",
    exit: EXIT.UNAVAILABLE,
    retryable: false,
  },
  LLMSUP_E_GPU_REBOOT_REQUIRED: {
    message: "A GPU needs a reboot of the machine: the driver asks for one, the GPU fell off the bus, a reset failed or did not help, or it needed a second reset within `[gpu] reset_window`. The backends on it are stopped and held until its faults clear; `llmsup status` shows the evidence.",
    exit: EXIT.UNAVAILABLE,
    retryable: false,
  },
  LLMSUP_E_LISTEN_FAILED: {
    message: "A listener could not be opened (address in use, socket held by a running process, no permission). Check router.listen, router.socket and control.socket.",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_STATE_LOCKED: {
    message: "Another llmsup daemon holds this state_dir (its lock file llmsup.lock names a running process); its pid and configuration are named. Stop it first (systemctl stop llmsup), or give this daemon another [daemon] state_dir. A lock left by a daemon that died is taken over by itself.",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_ROUTER_EXPOSED: {
    message: "The router refuses to listen on an address other machines can reach without API keys. Set router.api_keys_file (or api_keys_env), or listen on 127.0.0.1.",
    exit: EXIT.CONFIG,
    retryable: false,
  },
  LLMSUP_E_API_KEYS_EMPTY: {
    message: "router.api_keys_file holds no key (only blank lines and comments), or the variable router.api_keys_env names holds none (empty, spaces or commas): llmsup refuses to start rather than serve every client without a key. Put one key per line in the file (or comma-separated keys in the variable), or remove the setting to run without keys.",
    exit: EXIT.CONFIG,
    retryable: false,
  },
  LLMSUP_E_DRILL_REFUSED: {
    message: "The drill cannot run now: its route is not on its first tier (a drill would blur a real incident), or the scenario needs a running managed backend as tier 0, or no later tier of the route could take the traffic (the drill would be a real outage), or another drill or game day is running (`llmsup drill stop` ends it).",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_DRAIN_TIMEOUT: {
    message: "`llmsup drain --wait` gave up: requests were still on the backend when its --timeout passed; how many is said. The backend stays drained; wait again, or see them in `llmsup status`.",
    exit: EXIT.TEMPFAIL,
    retryable: true,
  },
  LLMSUP_E_CONTROL_FORBIDDEN: {
    message: "The control socket refused a command that acts (start, stop, restart, reset, reload, drain, undrain, drill, gpus clear): the caller may read (status, logs, events) but not act. Acting needs root, the daemon's own user, or membership of the group [control] admin_group names; the message names the group and the caller: `usermod -aG <admin_group> <user>` (read from /etc/group at each command). Logged as `control.refused`.",
    exit: EXIT.NOPERM,
    retryable: false,
  },
  LLMSUP_E_CONTROL_UNAUTHENTICATED: {
    message: "A command that acts came to the control socket without a valid proof of who sent it: no proof, a nonce that is unknown, already used or expired (a challenge lasts 10 seconds), or a proof file that is not a fresh regular file of its own in the daemon's control-auth directory beside the socket. The llmsup CLI proves itself; when it cannot, the message says why: check that the directory exists (mode 1733) and try again. Logged as `control.refused`.",
    exit: EXIT.NOPERM,
    retryable: true,
  },
  LLMSUP_E_CONTROL_BAD_REQUEST: {
    message: "The control socket cannot read a request: a malformed URL (a bad percent-escape) or a parameter out of range (a drill's duration must be a whole number of milliseconds from 1 to 3600000, one hour); the message names it. The llmsup CLI checks its own options; another client has a bug.",
    exit: EXIT.USAGE,
    retryable: false,
  },
  LLMSUP_E_SUPERVISOR_TRANSITION: {
    message: "The supervisor refused a state change its transition table does not allow: a bug in llmsup. The backend keeps its state; please report it with the daemon log.",
    exit: EXIT.SOFTWARE,
    retryable: false,
  },
  LLMSUP_E_GPU_REMEDIATION_TRANSITION: {
    message: "The GPU remediation ladder refused a change its transition table does not allow: a bug in llmsup. The GPU keeps its remediation state; please report it with the daemon log.",
    exit: EXIT.SOFTWARE,
    retryable: false,
  },
  LLMSUP_E_INTERNAL: {
    message: "An unexpected internal error; the log has the details. Please report it.",
    exit: EXIT.SOFTWARE,
    wire: "internal_error",
    retryable: true,
  },
  LLMSUP_E_SMTP_AUTH: {
    message: "The SMTP server refused llmsup's login (EAUTH): check [alerts.smtp] user and the password in password_file or password_env, and that the server accepts this login with the chosen security.",
    exit: EXIT.CONFIG,
    retryable: false,
  },
  LLMSUP_E_SMTP_UNREACHABLE: {
    message: "The SMTP server could not be reached or dropped the connection (ECONNECTION, ESOCKET, ETIMEDOUT, EDNS): check [alerts.smtp] host, port and security, and the network. Alerts wait in the outbox and are retried.",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_SMTP_TLS: {
    message: "The TLS handshake with the SMTP server failed (certificate not trusted, name mismatch, or STARTTLS not offered): check [alerts.smtp] security and the server's certificate; set tls_reject_unauthorized = false only for a server you trust.",
    exit: EXIT.UNAVAILABLE,
    retryable: false,
  },
  LLMSUP_E_SMTP_REJECTED: {
    message: "The SMTP server refused the message (sender, recipients or content); its response is quoted. Check [alerts] from and to.",
    exit: EXIT.UNAVAILABLE,
    retryable: false,
  },
  LLMSUP_E_ALERT_RECEIVER_UNREACHABLE: {
    message: "An alert receiver ([alerts.alertmanager] or an [[alerts.webhook]]) could not be reached, timed out, or answered 5xx, 408 or 429: check its url and timeout, and the network. Alerts wait in that channel's outbox and are retried with backoff.",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_ALERT_RECEIVER_REJECTED: {
    message: "An alert receiver refused a message for good (a 4xx other than 408 and 429: a bad request, a wrong token or signature secret, an unknown path); its answer is quoted. The message is kept in that channel's outbox/rejected/; check the receiver's url and credentials.",
    exit: EXIT.UNAVAILABLE,
    retryable: false,
  },
  LLMSUP_E_CACHE_UNAVAILABLE: {
    message: "The emergency response cache is off: Node's built-in SQLite (node:sqlite, Node 22.13 or later) is missing, or the store in the state directory cannot be created. Routing goes on without it; fix the Node version or [daemon] state_dir permissions. Logged as `cache.unavailable`.",
    exit: EXIT.UNAVAILABLE,
    retryable: false,
  },
  LLMSUP_E_CACHE_CORRUPT: {
    message: "The emergency cache's store was unreadable (damaged, or not an llmsup cache): it was set aside as cache.sqlite.corrupt and rebuilt empty. Nothing to do unless it recurs (then check the disk). Logged as `cache.store.corrupt`.",
    exit: EXIT.IOERR,
    retryable: false,
  },
  LLMSUP_E_CACHE_EMBEDDINGS: {
    message: "The emergency cache could not embed stored prompts with a route's embeddings tier (cache_embeddings: down, slow, or its answer unusable); the backend and the reason are named. Answers are still stored and matched by their words; those stored meanwhile get no vector. Logged once as `cache.embeddings.failed` until embedding works again (`cache.embeddings.recovered`); counted in llmsup_cache_stores_total with outcome embedding_failed.",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_CACHE_IO: {
    message: "Reading or writing the emergency cache failed (disk full, I/O error); the answer was not stored or not served from it. Check free space in [daemon] state_dir. Logged as `cache.store.failed`, at most once a minute per operation.",
    exit: EXIT.IOERR,
    retryable: true,
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export function errorSpec(code: ErrorCode): ErrorSpec {
  return ERRORS[code];
}

// ---------------------------------------------------------------- the routing socket

/** The `type` of an OpenAI-shaped error body, as the router has always sent it. */
export type WireErrorType = "invalid_request_error" | "service_unavailable" | "upstream_error" | "internal_error";

export interface WireErrorSpec {
  /** What it means and what to do about it. The message a client gets is more specific (it names the field, the limit, the tiers). */
  readonly meaning: string;
  /** HTTP status of the answer; absent for an error sent only as the last event of a stream already answered 200. */
  readonly http?: number;
  /** `error.type` of the body. */
  readonly type: WireErrorType;
  /** Whether sending the same request again later can succeed. */
  readonly retryable: boolean;
}

export const WIRE_ERRORS = {
  invalid_json: {
    meaning: "The request body is not a JSON object; the parser's complaint is quoted. Send one JSON object.",
    http: 400,
    type: "invalid_request_error",
    retryable: false,
  },
  invalid_request: {
    meaning: "The request itself is invalid (a field of the wrong type, a body nested too deep, or a request that cannot be sent on); `param` names the field to blame. It is refused before any tier is tried and never counts against a backend. Fix the request.",
    http: 400,
    type: "invalid_request_error",
    retryable: false,
  },
  request_too_large: {
    meaning: "The request body is larger than router.max_body (the limit is given in bytes), and the connection is closed. Send a smaller request, or raise router.max_body.",
    http: 413,
    type: "invalid_request_error",
    retryable: false,
  },
  invalid_api_key: {
    meaning: "The router has API keys (router.api_keys_file or api_keys_env) and the request carried none of them. Send one as `Authorization: Bearer <key>` or `x-api-key`.",
    http: 401,
    type: "invalid_request_error",
    retryable: false,
  },
  not_found: {
    meaning: "No such endpoint. The router answers POST /v1/chat/completions, /v1/completions and /v1/embeddings, and GET /v1/models, /health, /health/ready and (with metrics on) /metrics.",
    http: 404,
    type: "invalid_request_error",
    retryable: false,
  },
  unknown_route: {
    meaning: "GET /health/ready?route=<model> names no configured route (the name is matched exactly, without falling back to the default route \"*\"). Ask for one of the configured routes (GET /v1/models lists them), or leave out route for the default route.",
    http: 404,
    type: "invalid_request_error",
    retryable: false,
  },
  endpoint_not_served: {
    meaning: "No tier of the route serves this endpoint: its tiers are all of kinds that have no such API (Anthropic's Messages API has no embeddings). Send it to a route with an OpenAI-compatible tier, or add one to this route.",
    http: 400,
    type: "invalid_request_error",
    retryable: false,
  },
  method_not_allowed: {
    meaning: "The endpoint exists but takes POST.",
    http: 405,
    type: "invalid_request_error",
    retryable: false,
  },
  model_not_found: {
    meaning: "No route serves that model and there is no default route (model = \"*\"); the models llmsup routes are listed. Ask for one of them, or add a [[route]].",
    http: 404,
    type: "invalid_request_error",
    retryable: false,
  },
  context_length_exceeded: {
    meaning: "The prompt is too long for every tier that is left: each refused it as too long or is known to have no larger context window. The backend's own words are quoted and `param` is messages. Shorten the prompt or lower max_tokens.",
    http: 400,
    type: "invalid_request_error",
    retryable: false,
  },
  all_tiers_down: {
    meaning: "No tier of the route could answer, and the emergency cache (where the route has one) had nothing; the message and `tried` say what each tier said. Retry after Retry-After (router.all_down_retry_after); `llmsup status` on the box says why each tier is out.",
    http: 503,
    type: "service_unavailable",
    retryable: true,
  },
  shutting_down: {
    meaning: "The daemon is stopping and takes no new requests. Retry after Retry-After (5 seconds).",
    http: 503,
    type: "service_unavailable",
    retryable: true,
  },
  overloaded: {
    meaning: "The router holds router.max_connections client connections already: a connection beyond them gets this answer to its first request and is closed. Retry after Retry-After (1 second); reuse keep-alive connections rather than opening many, or raise router.max_connections.",
    http: 503,
    type: "service_unavailable",
    retryable: true,
  },
  stream_interrupted: {
    meaning: "The last event of a stream, in place of [DONE]: the answer broke off after its first token and no tier could continue it, so what was sent is incomplete. Send the request again. Also sent when the answer degenerated after its first token (a repetition loop, garbage: the route's quality detectors): the rest is not sent, and the message says which detector caught it.",
    type: "upstream_error",
    retryable: true,
  },
  internal_error: {
    meaning: "An unexpected error in llmsup itself (LLMSUP_E_INTERNAL); the daemon's log has the details under router.internal_error. Retry, and please report it.",
    http: 500,
    type: "internal_error",
    retryable: true,
  },
} as const satisfies Record<string, WireErrorSpec>;

export type WireCode = keyof typeof WIRE_ERRORS;

/** The codes answered with an HTTP status of their own (all but those sent inside a stream). */
export type HttpWireCode = { [C in WireCode]: (typeof WIRE_ERRORS)[C] extends { readonly http: number } ? C : never }[WireCode];

/** The codes sent only as an SSE error event. */
export type StreamWireCode = Exclude<WireCode, HttpWireCode>;

export function wireSpec(code: WireCode): WireErrorSpec {
  return WIRE_ERRORS[code];
}
