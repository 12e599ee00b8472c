import { ERRORS, errorSpec, wireSpec, type ErrorCode } from "./registry.ts";

/** An error with a stable code from the registry, plus free-form details. */
export class LlmsupError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message?: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message ?? ERRORS[code].message, options);
    this.name = "LlmsupError";
    this.code = code;
    this.details = details;
  }

  get exitCode(): number {
    return ERRORS[this.code].exit;
  }

  get retryable(): boolean {
    return ERRORS[this.code].retryable;
  }

  /** The HTTP status a client of the routing socket gets for this error, if one ever reaches it. */
  get httpStatus(): number | undefined {
    const wire = errorSpec(this.code).wire;
    return wire === undefined ? undefined : wireSpec(wire).http;
  }
}

export function isLlmsupError(e: unknown): e is LlmsupError {
  return e instanceof LlmsupError;
}
