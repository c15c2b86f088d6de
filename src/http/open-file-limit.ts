import { readFileSync } from "node:fs";
import { ADMIN_MAX_CONNECTIONS } from "./connection-limit.js";

/**
 * The process's open-file limit as it stands (Node raises the soft limit to the hard one
 * at start), from /proc/self/limits; undefined where there is no such file (not Linux) or
 * no limit.
 */
export function openFileLimit(
  readLimits: () => string = () => readFileSync("/proc/self/limits", "utf8"),
): number | undefined {
  let text: string;
  try {
    text = readLimits();
  } catch {
    return undefined;
  }
  // "Max open files            1024                 1024                 files"
  const soft = /^Max open files\s+(\d+|unlimited)\s/m.exec(text)?.[1];
  return soft === undefined || soft === "unlimited" ? undefined : Number(soft);
}

/**
 * Descriptors the service needs besides the public port's connections: 96 for its own
 * files and pipes (about 36 measured) and the PostgreSQL pools when the store or a sink is
 * PostgreSQL (about 20); the admin port's connections (ADMIN_MAX_CONNECTIONS); and per
 * worker slot the finAPI calls (DAC_CONCURRENCY at once), a bundle's files and the http
 * sink's posts (a slot's two jobs: one fetching, one delivering).
 */
export function descriptorsReserved(workerConcurrency: number, dacConcurrency: number): number {
  return 96 + ADMIN_MAX_CONNECTIONS + workerConcurrency * (dacConcurrency + 4);
}

/**
 * MAX_CONNECTIONS, lowered when it and what the service needs for itself do not fit in the
 * open-file limit: at the cap, idle connections would otherwise leave no descriptor for
 * the inbox, the file sink or finAPI (EMFILE), and everything failed while they lasted.
 */
export function fitConnections(
  wanted: number,
  limit: number | undefined,
  reserved: number,
): { maxConnections: number; lowered: boolean } {
  if (limit === undefined || wanted + reserved <= limit) {
    return { maxConnections: wanted, lowered: false };
  }
  return { maxConnections: Math.max(1, limit - reserved), lowered: true };
}
