import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../src/logger.js";

/** A real pino logger whose lines the test can read back. */
export interface CapturedLogs {
  logger: Logger;
  lines: () => Record<string, unknown>[];
  text: () => string;
}

export function captureLogs(level = "debug"): CapturedLogs {
  const raw: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      raw.push(String(chunk));
      done();
    },
  });
  const logger = createLogger({ level, destination });
  return {
    logger,
    text: () => raw.join(""),
    lines: () =>
      raw
        .join("")
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}
