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
  LLMSUP_E_INTERNAL: {
    message: "An unexpected internal error; the log has the details. Please report it.",
    exit: EXIT.SOFTWARE,
    http: 500,
    retryable: true,
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export function errorSpec(code: ErrorCode): ErrorSpec {
  return ERRORS[code];
}
