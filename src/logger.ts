import pino, { type DestinationStream, type Logger } from "pino";
import pretty from "pino-pretty";

export type { Logger } from "pino";

/**
 * Everything that may hold a secret, at any depth we log. Redaction is configured once,
 * here, at the root logger; child loggers inherit it.
 */
export const REDACT_PATHS = [
  "clientSecret",
  "client_secret",
  "accessToken",
  "access_token",
  "refresh_token",
  "token",
  "authorization",
  "password",
  "secret",
  "*.clientSecret",
  "*.client_secret",
  "*.accessToken",
  "*.access_token",
  "*.refresh_token",
  "*.token",
  "*.authorization",
  "*.Authorization",
  "*.password",
  "*.secret",
  "*.*.clientSecret",
  "*.*.client_secret",
  "*.*.authorization",
  "*.*.Authorization",
  "*.*.secret",
  "*.*.password",
  "headers.authorization",
  "headers.Authorization",
  "req.headers.authorization",
  "req.headers.cookie",
];

export interface LoggerOptions {
  level: string;
  pretty?: boolean;
  /** Tests pass a stream to capture and assert on log lines. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const base = {
    level: options.level,
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    base: { service: "kreditcheck-receiver" },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (options.destination) return pino(base, options.destination);
  if (options.pretty) {
    // Synchronous, in-process: no line is lost when the process exits right after logging.
    return pino(base, pretty({ colorize: true, sync: true }));
  }
  return pino(base);
}
