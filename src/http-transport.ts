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

/** `Retry-After` in seconds or as an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(header: unknown, now = Date.now()): number | undefined {
  if (typeof header !== "string" || header.trim() === "") return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
