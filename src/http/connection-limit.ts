import type { Server } from "node:http";
import type { Logger } from "../logger.js";
import { LogBudget } from "./log-budget.js";

/**
 * The admin port's cap: probes, a scraper and the CLI need a few connections. ADMIN_HOST
 * may expose the port beyond this machine (with ADMIN_TOKEN), where anyone could open
 * connections as on the public port.
 */
export const ADMIN_MAX_CONNECTIONS = 64;

/**
 * Caps a port's open connections: Node closes any further one as soon as it is accepted.
 * Anyone who can reach the port can open connections (the allowlist and the admin token
 * look at requests, not at connections); without a cap, thousands of idle ones would use
 * up the process's file descriptors, and then the inbox and the file sink could not open
 * files. Each connection dropped is counted; a few a minute are logged.
 */
export function limitConnections(
  server: Server,
  port: "public" | "admin",
  maxConnections: number,
  logger: Logger,
  onDrop: () => void,
): void {
  server.maxConnections = maxConnections;
  const budget = new LogBudget(20, 60_000);
  const setting = port === "public" ? "MAX_CONNECTIONS" : `its ${maxConnections}`;
  server.on("drop", (data?: { remoteAddress?: string }) => {
    onDrop();
    budget.warn(
      logger,
      { port, remoteAddress: data?.remoteAddress, maxConnections },
      `connection closed at once: the ${port} port already holds ${setting} connections`,
    );
  });
}
