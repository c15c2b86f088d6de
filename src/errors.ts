/**
 * The one error type the pipeline and the job store reason about: every failure says
 * whether trying again can help (`retryable`), carries a stable `code`, and, when it is
 * permanent, a `fix` a person can act on.
 */
export interface ReceiverErrorOptions {
  code: string;
  retryable: boolean;
  fix?: string;
  /** Wait at least this long before the next attempt (from `Retry-After`). */
  retryAfterMs?: number;
  details?: Record<string, unknown>;
  cause?: unknown;
  /** The codes of the failures this one sums up (each failed sink's, for a delivery). */
  causeCodes?: readonly string[];
}

export class ReceiverError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly fix: string | undefined;
  readonly retryAfterMs: number | undefined;
  readonly details: Record<string, unknown>;
  /**
   * Its own code first, then those of the failures it sums up, each once: what the job
   * store keeps beside the text, so operators can select jobs by code (`retry --code`).
   */
  readonly codes: readonly string[];

  constructor(message: string, options: ReceiverErrorOptions) {
    super(message, { cause: options.cause });
    this.name = "ReceiverError";
    this.code = options.code;
    this.retryable = options.retryable;
    this.fix = options.fix;
    this.retryAfterMs = options.retryAfterMs;
    this.details = options.details ?? {};
    this.codes = [...new Set([options.code, ...(options.causeCodes ?? [])])];
  }

  /** One line for logs and the job's `last_error`: cause first, then the fix. */
  describe(): string {
    return this.fix
      ? `${this.code}: ${this.message} Fix: ${this.fix}`
      : `${this.code}: ${this.message}`;
  }
}

/** Anything thrown that is not a ReceiverError is unexpected: retry it, it may be transient. */
export function toReceiverError(error: unknown): ReceiverError {
  if (error instanceof ReceiverError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ReceiverError(message, { code: "unexpected_error", retryable: true, cause: error });
}
