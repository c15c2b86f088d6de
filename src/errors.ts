/**
 * Every code the service's errors carry: what the job store keeps as `lastErrorCodes` and
 * `npm run cli -- retry --all-dead --code` selects by. ReceiverErrorOptions takes
 * only these, so a code used anywhere in the service fails the type check until it is
 * listed here: the list cannot fall behind the code. A module sink may still throw a
 * ReceiverError of its own code (JavaScript is not type-checked); those are not listed.
 */
export const ERROR_CODES = [
  // finAPI (src/finapi/errors.ts)
  "finapi_auth_failed",
  "finapi_token_url_wrong",
  "finapi_token_unavailable",
  "finapi_unauthorized",
  "finapi_forbidden",
  "finapi_not_found",
  "finapi_rate_limited",
  "finapi_unavailable",
  "finapi_rejected",
  "finapi_network",
  "finapi_timeout",
  "finapi_invalid_response",
  // the pipeline (src/pipeline/process-check.ts)
  "result_not_ready",
  "kreditcheck_not_found",
  "sink_delivery_failed",
  // the sinks (src/sinks/*.ts)
  "unsafe_file_name",
  "file_sink_write_failed",
  "stdout_closed",
  "stdout_write_failed",
  "stdout_blocked",
  "http_sink_unreachable",
  "http_sink_unavailable",
  "http_sink_rejected",
  "postgres_sink_unreachable",
  "postgres_sink_unavailable",
  "postgres_sink_timeout",
  "postgres_sink_forbidden",
  "postgres_sink_rejected",
  "module_sink_timeout",
  // anything thrown that is no ReceiverError (toReceiverError)
  "unexpected_error",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export function isErrorCode(code: string): code is ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(code);
}

/**
 * The one error type the pipeline and the job store reason about: every failure says
 * whether trying again can help (`retryable`), carries a stable `code`, and, when it is
 * permanent, a `fix` a person can act on.
 */
export interface ReceiverErrorOptions {
  /** One of ERROR_CODES: add a new one there. */
  code: ErrorCode;
  retryable: boolean;
  fix?: string;
  /** Wait at least this long before the next attempt (from `Retry-After`). */
  retryAfterMs?: number;
  /**
   * Retried until this time (epoch ms) even past MAX_ATTEMPTS: a wait with a deadline of
   * its own (NOT_FOUND_GRACE_MS), which the attempt count must not cut short.
   */
  retryUntil?: number;
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
  readonly retryUntil: number | undefined;
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
    this.retryUntil = options.retryUntil;
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

/**
 * Anything thrown that is not a ReceiverError is unexpected: retry it, it may be transient.
 * Its message names its causes too: a module sink's `fetch failed` alone hid the
 * `connect ECONNREFUSED` behind it from the job's last error, which is all an operator sees.
 */
export function toReceiverError(error: unknown): ReceiverError {
  if (error instanceof ReceiverError) return error;
  return new ReceiverError(messageWithCauses(error), {
    code: "unexpected_error",
    retryable: true,
    cause: error,
  });
}

/** `outer (cause: inner (cause: innermost))`, at most three causes deep, repeats left out. */
export function messageWithCauses(error: unknown): string {
  const messages: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current !== undefined && current !== null; depth++) {
    const text = current instanceof Error ? ownMessage(current) : String(current);
    if (text !== "" && !messages.includes(text)) messages.push(text);
    current = current instanceof Error ? current.cause : undefined;
  }
  if (messages.length === 0) return String(error);
  return messages.reduceRight((inner, outer) => `${outer} (cause: ${inner})`);
}

/**
 * An error's own words: its message, or where it has none (Node's AggregateError when every
 * address of a host refused: IPv4 and IPv6) its inner errors' messages, or its code.
 */
function ownMessage(error: Error): string {
  if (error.message !== "") return error.message;
  const inner = (error as { errors?: unknown }).errors;
  if (Array.isArray(inner) && inner.length > 0) {
    return inner.map((each) => (each instanceof Error ? each.message : String(each))).join("; ");
  }
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? code : "";
}
