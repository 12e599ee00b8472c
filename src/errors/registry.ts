/**
 * The one registry of llmsup's stable error codes.
 *
 * Every error the product reports to an operator or a client carries one of
 * these codes. `docs/errors.md` documents each of them; a test keeps the two
 * in step. Codes are never renamed or reused once released.
 */

export interface ErrorSpec {
  /** Human summary: what went wrong and what to do about it. */
  readonly message: string;
  /** Process exit status when this error ends a CLI command. */
  readonly exit: number;
  /** HTTP status when this error is returned to a client, if ever. */
  readonly http?: number;
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
  CONFIG: 78,
} as const;

export const ERRORS = {
  LLMSUP_E_CONFIG_INVALID: {
    message: "The configuration has problems; each is listed with its key path. Fix them and run `llmsup check-config` again.",
    exit: EXIT.CONFIG,
    retryable: false,
  },
  LLMSUP_E_CONFIG_SYNTAX: {
    message: "The configuration file is not valid TOML; the line and column of the first error are given.",
    exit: EXIT.CONFIG,
    retryable: false,
  },
  LLMSUP_E_CONFIG_UNREADABLE: {
    message: "The configuration file could not be read (missing, unreadable, or not a file). Check the path and its permissions.",
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
  LLMSUP_E_LISTEN_FAILED: {
    message: "A listener could not be opened (address in use, socket held by a running process, no permission). Check router.listen, router.socket and control.socket.",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_ROUTER_EXPOSED: {
    message: "The router refuses to listen on an address other machines can reach without API keys. Set router.api_keys_file (or api_keys_env), or listen on 127.0.0.1.",
    exit: EXIT.CONFIG,
    retryable: false,
  },
  LLMSUP_E_DRILL_REFUSED: {
    message: "The drill cannot run now: its route is not on its first tier (a drill would blur a real incident), or the scenario needs a running managed backend as tier 0.",
    exit: EXIT.UNAVAILABLE,
    retryable: true,
  },
  LLMSUP_E_INTERNAL: {
    message: "An unexpected internal error; the log has the details. Please report it.",
    exit: EXIT.SOFTWARE,
    http: 500,
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
  LLMSUP_E_CACHE_UNAVAILABLE: {
    message: "The emergency response cache is off: Node's built-in SQLite (node:sqlite, Node 22.13 or later) is missing, or the store in the state directory cannot be created. Routing goes on without it; fix the Node version or [daemon] state_dir permissions.",
    exit: EXIT.UNAVAILABLE,
    retryable: false,
  },
  LLMSUP_E_CACHE_CORRUPT: {
    message: "The emergency cache's store was unreadable (damaged, or not an llmsup cache): it was set aside as cache.sqlite.corrupt and rebuilt empty. Nothing to do unless it recurs (then check the disk).",
    exit: EXIT.IOERR,
    retryable: false,
  },
  LLMSUP_E_CACHE_IO: {
    message: "Reading or writing the emergency cache failed (disk full, I/O error); the answer was not stored or not served from it. Check free space in [daemon] state_dir.",
    exit: EXIT.IOERR,
    retryable: true,
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export function errorSpec(code: ErrorCode): ErrorSpec {
  return ERRORS[code];
}
