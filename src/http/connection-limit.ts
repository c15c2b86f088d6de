import type { Server } from "node:http";
import type { Logger } from "../logger.js";
import { LogBudget } from "./log-budget.js";

/**
 * Caps the public port's open connections at MAX_CONNECTIONS: Node closes any further
 * one as soon as it is accepted. Anyone who can reach the port can open connections (the
 * allowlist looks at requests, not at connections); without a cap, thousands of idle ones
 * would use up the process's file descriptors, and then the inbox and the file sink could
 * not open files. Each connection dropped is counted; a few a minute are logged.
 */
export function limitConnections(
  server: Server,
  maxConnections: number,
  logger: Logger,
  onDrop: () => void,
): void {
  server.maxConnections = maxConnections;
  const budget = new LogBudget(20, 60_000);
  server.on("drop", (data?: { remoteAddress?: string }) => {
    onDrop();
    budget.warn(
      logger,
      { remoteAddress: data?.remoteAddress, maxConnections },
      "connection closed at once: the public port already holds MAX_CONNECTIONS connections",
    );
  });
}
