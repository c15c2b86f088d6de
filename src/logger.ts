import { hostname } from "node:os";
import pino, { type DestinationStream, type Logger } from "pino";
import pretty from "pino-pretty";

export type { Logger } from "pino";

/**
 * Everything that may hold a secret, at any depth we log. Redaction is configured once,
 * here, at the root logger; child loggers inherit it.
 */
/**
 * Everything that may hold a secret where we log it. Every log call in src/ logs flat
 * fields (errors go through the whitelisting `err` serializer below), so explicit paths
 * cover them. No wildcards on purpose: pino's wildcard redaction walks every value of
 * every line and cost about 10 µs a line (bench:ingest), explicit paths cost nothing.
 * Redaction is configured once, here, at the root logger; child loggers inherit it.
 */
const REDACT_PATHS = [
  "clientSecret",
  "client_secret",
  "accessToken",
  "access_token",
  "refresh_token",
  "token",
  "authorization",
  "Authorization",
  "password",
  "secret",
  "callbackSecret",
  "headers.authorization",
  "headers.Authorization",
  "headers.cookie",
  "req.headers.authorization",
  "req.headers.cookie",
  "config.finapi.clientSecret",
  "config.http.callbackSecret",
  "finapi.clientSecret",
  "http.callbackSecret",
];

/** Error fields that are safe to log; everything else (an AxiosError's `config` with the
 * request body and headers, `request`, `response`) is left out, at every depth of `cause`. */
const SAFE_ERROR_FIELDS = ["code", "retryable", "fix", "status", "retryAfterMs"] as const;

export function serializeError(error: unknown, depth = 0): unknown {
  if (!(error instanceof Error)) return typeof error === "object" ? "[non-error object]" : error;
  const serialized: Record<string, unknown> = {
    type: error.name,
    message: error.message,
    stack: error.stack,
  };
  for (const field of SAFE_ERROR_FIELDS) {
    const value = (error as unknown as Record<string, unknown>)[field];
    if (value !== undefined && typeof value !== "object") serialized[field] = value;
  }
  if (error.cause !== undefined && depth < 3)
    serialized.cause = serializeError(error.cause, depth + 1);
  return serialized;
}

let lastMs = Number.NaN;
let lastTime = "";

/**
 * pino's `isoTime`, formatted once per millisecond: under a flood of callbacks several
 * lines share a millisecond, and Date#toISOString was a third of a log line's cost
 * (bench:ingest's V8 profile).
 */
function isoTimeOncePerMs(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastTime = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTime;
}

export interface LoggerOptions {
  level: string;
  pretty?: boolean;
  /** Tests pass a stream to capture and assert on log lines. */
  destination?: DestinationStream;
  /**
   * The stdout sink writes bundles to process.stdout: log lines then go through that same
   * stream. pino's own writes to fd 1 would land between the pieces of a bundle line that
   * a slow reader's pipe took only in part (a line with documents is hundreds of KB).
   */
  shareStdout?: boolean;
}

export function createLogger(options: LoggerOptions): Logger {
  const base = {
    level: options.level,
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    serializers: { err: serializeError },
    // Which replica wrote a line: several share one log store behind a load balancer.
    base: { service: "kreditcheck-receiver", hostname: hostname(), pid: process.pid },
    timestamp: isoTimeOncePerMs,
  };
  if (options.destination) return pino(base, options.destination);
  if (options.pretty) {
    // Synchronous, in-process: no line is lost when the process exits right after logging.
    // Colours only on a terminal (pino-pretty's default: NO_COLOR and FORCE_COLOR count),
    // not as escape codes in a file or a pipe.
    return pino(
      base,
      pretty({ sync: true, ...(options.shareStdout ? { destination: process.stdout } : {}) }),
    );
  }
  return options.shareStdout ? pino(base, process.stdout) : pino(base);
}
