import { ERRORS, type ErrorCode } from "./registry.ts";

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

  get httpStatus(): number | undefined {
    const spec = ERRORS[this.code];
    return "http" in spec ? spec.http : undefined;
  }
}

export function isLlmsupError(e: unknown): e is LlmsupError {
  return e instanceof LlmsupError;
}
