import http from "node:http";
import https from "node:https";
import axios, { type AxiosInstance, isAxiosError } from "axios";

export interface TransportOptions {
  timeoutMs: number;
  /** Upper bound of open sockets per host. */
  maxSockets?: number;
}

/**
 * One axios instance per upstream (finAPI, the http sink's receiver): keep-alive sockets, a hard timeout, no
 * redirects, bodies kept as text (we parse JSON ourselves so a broken body is a clear,
 * typed error), and every status handed back to the caller to classify.
 */
export function createTransport(options: TransportOptions): AxiosInstance {
  const maxSockets = options.maxSockets ?? 64;
  return axios.create({
    timeout: options.timeoutMs,
    maxRedirects: 0,
    responseType: "text",
    transformResponse: [(body: unknown) => body],
    validateStatus: () => true,
    httpAgent: new http.Agent({ keepAlive: true, maxSockets }),
    httpsAgent: new https.Agent({ keepAlive: true, maxSockets }),
    headers: { Accept: "application/json" },
  });
}

export function isTimeout(error: unknown): boolean {
  return isAxiosError(error) && (error.code === "ECONNABORTED" || error.code === "ETIMEDOUT");
}

export function isCanceled(error: unknown): boolean {
  return axios.isCancel(error) || (isAxiosError(error) && error.code === "ERR_CANCELED");
}

/** `Retry-After` in seconds or as an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(header: unknown, now = Date.now()): number | undefined {
  if (typeof header !== "string" || header.trim() === "") return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
