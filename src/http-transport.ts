import { readFileSync } from "node:fs";
import axios, { Axios, isAxiosError } from "axios";
import { messageWithCauses } from "./errors.js";
import { createDispatchers, createUndiciAdapter, type EgressProxies } from "./undici-adapter.js";

export { isTooLarge, proxyOf } from "./undici-adapter.js";

/** `kreditcheck-receiver/<version>`: some firewalls refuse requests without a User-Agent. */
const USER_AGENT = `kreditcheck-receiver/${
  (
    JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
      version: string;
    }
  ).version
}`;

export interface TransportOptions {
  timeoutMs: number;
  /** Upper bound of open sockets per host. */
  maxSockets?: number;
  /** Egress proxies from the config; without them every request goes direct. */
  proxies?: EgressProxies;
}

export interface Transport {
  http: Axios;
  /** Closes the connections; a request still in flight then fails. */
  close(): Promise<void>;
}

/**
 * One axios client per upstream (finAPI, the http sink's receiver): keep-alive sockets
 * (undici underneath, see undici-adapter.ts), an idle timeout, no redirects, bodies kept as
 * text (we parse JSON ourselves so a broken body is a clear, typed error), and every
 * status handed back to the caller to classify.
 *
 * `new Axios(config)` rather than `axios.create(config)`: create() merges in axios' global
 * defaults (browser XSRF names, FormData/Blob env, transitional flags, per-method header
 * sets, the JSON request transform), and axios merges every one of them into every
 * request again. None applies to these string-or-bytes calls; without them a request costs
 * axios about half the CPU (measured with a no-op adapter: 24 against 44-55 us).
 */
export function createTransport(options: TransportOptions): Transport {
  const dispatchers = createDispatchers({
    connections: options.maxSockets ?? 64,
    connectTimeoutMs: options.timeoutMs,
    proxies: options.proxies,
  });
  const http = new Axios({
    adapter: createUndiciAdapter(dispatchers),
    timeout: options.timeoutMs,
    maxRedirects: 0,
    responseType: "text",
    // No transforms: the body stays the text the adapter read. (An identity function here
    // cost axios one more pass over the response headers per request.)
    transformResponse: [],
    validateStatus: () => true,
    headers: { Accept: "application/json", "User-Agent": USER_AGENT },
  });
  return { http, close: () => dispatchers.destroy() };
}

/**
 * The call was cut off because this transport was closed: the service is stopping (a
 * shared token request outlives the start-up check that asked for it).
 */
export function isClosedTransport(error: unknown): boolean {
  return isAxiosError(error) && error.code === "UND_ERR_DESTROYED";
}

export function isTimeout(error: unknown): boolean {
  return isAxiosError(error) && (error.code === "ECONNABORTED" || error.code === "ETIMEDOUT");
}

/**
 * What a log line says of a request that got no answer. A transport failure (refused,
 * reset, timed out) is expected now and then and retried: its code and reason in one short
 * line, not the stacks of axios and undici (2.5 KB a line, several per attempt). Anything
 * else thrown is a defect: logged whole, with its stack.
 */
export function noAnswerLogFields(error: unknown): Record<string, unknown> {
  if (!isAxiosError(error)) return { err: error };
  return { errorCode: error.code, reason: messageWithCauses(error) };
}

export function isCanceled(error: unknown): boolean {
  return axios.isCancel(error) || (isAxiosError(error) && error.code === "ERR_CANCELED");
}

/**
 * The longest `Retry-After` waited out in one go: the job store's default BACKOFF_MAX_MS.
 * A longer (or far-future) one made every job waiting on it dead at once (past
 * JOB_MAX_AGE_MS) and kept the token endpoint from being asked again until a restart; so
 * the next attempt comes after this, and asks again (a maintenance still going on says so).
 */
export const MAX_RETRY_AFTER_MS = 30 * 60 * 1000;

/** RFC 9110's delay-seconds: digits only (no sign, fraction, exponent, hex or unit). */
const DELAY_SECONDS = /^\d+$/;
/** RFC 9110's HTTP-date: IMF-fixdate, and the obsolete RFC 850 and asctime forms. */
const GMT_DATE =
  /^(?:[a-z]{3}, \d{2} [a-z]{3} \d{4}|[a-z]{6,9}, \d{2}-[a-z]{3}-\d{2}) \d{2}:\d{2}:\d{2} GMT$/i;
const ASCTIME_DATE = /^[a-z]{3} [a-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/i;

/**
 * `Retry-After` in seconds or as an HTTP date, at most MAX_RETRY_AFTER_MS; undefined when
 * absent or malformed, as if none was sent. Read strictly: Date.parse takes "1 2" for
 * 2 January 2001, and Number "0x10" for 16, which were a wait of none and of 16 s.
 */
export function parseRetryAfter(header: unknown, now = Date.now()): number | undefined {
  if (typeof header !== "string") return undefined;
  const value = header.trim();
  let waitMs: number;
  if (DELAY_SECONDS.test(value)) waitMs = Number(value) * 1000;
  else if (GMT_DATE.test(value)) waitMs = Date.parse(value) - now;
  // asctime has no zone; HTTP dates are GMT, and Date.parse would take it as local time.
  else if (ASCTIME_DATE.test(value)) waitMs = Date.parse(`${value} GMT`) - now;
  else return undefined;
  // A date of the right form that is none ("Mon, 32 Jan 2025 …").
  if (Number.isNaN(waitMs)) return undefined;
  return Math.min(Math.max(0, waitMs), MAX_RETRY_AFTER_MS);
}
