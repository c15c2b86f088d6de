import {
  type AxiosAdapter,
  AxiosError,
  AxiosHeaders,
  type AxiosResponse,
  CanceledError,
  type InternalAxiosRequestConfig,
} from "axios";
import { Agent, type Dispatcher, Pool, ProxyAgent } from "undici";

/** A proxy URL and the variable it came from (named in errors and on the start-up line). */
export interface EgressProxy {
  url: string;
  variable: string;
}

/**
 * Egress proxies as config.ts reads them from HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and
 * NO_PROXY (each lower case first, as axios reads them): the proxy for http URLs, for https
 * URLs, for either, and the hosts reached directly.
 */
export interface EgressProxies {
  http: EgressProxy | undefined;
  https: EgressProxy | undefined;
  all: EgressProxy | undefined;
  noProxy: { hosts: string; variable: string } | undefined;
}

export interface DispatcherOptions {
  /** Upper bound of open connections per origin. */
  connections: number;
  /**
   * Longest wait for a TCP (and TLS) connection; through a proxy, for each step of it: the
   * proxy's connection, its answer to CONNECT, the TLS through the tunnel.
   */
  connectTimeoutMs: number;
  /** None: every request goes direct (the environment is not read here). */
  proxies?: EgressProxies;
}

/** The connection pool for a request, and the proxy it goes through, if any. */
export interface Route {
  dispatcher: Dispatcher;
  proxy: EgressProxy | undefined;
}

/** Picks the connection pool for a request: direct, or through the proxy for its origin. */
export interface Dispatchers {
  forUrl(url: string): Route;
  destroy(): Promise<void>;
}

/**
 * Keep-alive pools. Proxies follow axios' own rules (those of proxy-from-env, the library
 * axios uses): HTTP_PROXY for http URLs, HTTPS_PROXY for https, ALL_PROXY for either,
 * NO_PROXY to go direct. A plain-http target goes to the proxy as an ordinary request
 * (proxies commonly refuse CONNECT to ports other than 443); https is tunnelled with CONNECT.
 */
export function createDispatchers(options: DispatcherOptions): Dispatchers {
  const connect = { timeout: options.connectTimeoutMs };
  const direct: Route = {
    dispatcher: new Agent({ connections: options.connections, connect }),
    proxy: undefined,
  };
  const proxies = options.proxies;
  // Without any proxy (the usual case) there is nothing to look up per request.
  const proxied =
    proxies !== undefined && (proxies.http ?? proxies.https ?? proxies.all) !== undefined;
  const byOrigin = new Map<string, Route>();
  const byProxy = new Map<string, ProxyAgent>();
  const viaProxy = (proxy: EgressProxy): Route => {
    let agent = byProxy.get(proxy.url);
    if (!agent) {
      const timeout = options.connectTimeoutMs;
      agent = new ProxyAgent({
        uri: proxy.url,
        proxyTunnel: false,
        connections: options.connections,
        // ProxyAgent ignores `connect`: without these, reaching the proxy and the TLS over
        // its tunnel took undici's 10 s, and the CONNECT's answer its 300 s headers timeout
        // (a proxy that takes the connection and never answers held a call for 5 minutes).
        proxyTls: { timeout },
        requestTls: { timeout },
        clientFactory: (origin, clientOptions) =>
          new Pool(origin, { ...clientOptions, headersTimeout: timeout }),
      });
      byProxy.set(proxy.url, agent);
    }
    return { dispatcher: agent, proxy };
  };
  return {
    forUrl(url) {
      if (!proxied) return direct;
      const target = new URL(url);
      let route = byOrigin.get(target.origin);
      if (!route) {
        const proxy = proxyFor(target, proxies);
        route = proxy ? viaProxy(proxy) : direct;
        byOrigin.set(target.origin, route);
      }
      return route;
    },
    async destroy() {
      await Promise.all([direct.dispatcher, ...byProxy.values()].map((agent) => agent.destroy()));
    },
  };
}

/** proxy-from-env's getProxyForUrl (axios' rules), on the configured proxies. */
function proxyFor(target: URL, proxies: EgressProxies): EgressProxy | undefined {
  // host, not hostname: an IPv6 address keeps its brackets, as NO_PROXY writes it.
  const hostname = target.host.replace(/:\d*$/, "");
  const port = Number(target.port) || DEFAULT_PORTS[target.protocol] || 0;
  if (isNoProxyHost(hostname, port, proxies.noProxy?.hosts)) return undefined;
  const forScheme = target.protocol === "https:" ? proxies.https : proxies.http;
  return forScheme ?? proxies.all;
}

const DEFAULT_PORTS: Record<string, number> = { "http:": 80, "https:": 443 };

/**
 * NO_PROXY as proxy-from-env reads it: "*" for every host; else entries split at commas or
 * white space, each a host (exact match), ".example.com" or "*.example.com" (suffix match),
 * optionally with ":port".
 */
function isNoProxyHost(hostname: string, port: number, noProxy: string | undefined): boolean {
  const list = noProxy?.toLowerCase();
  if (!list) return false;
  if (list === "*") return true;
  return list.split(/[,\s]/).some((entry) => {
    if (!entry) return false;
    const withPort = /^(.+):(\d+)$/.exec(entry);
    const host = withPort?.[1] ?? entry;
    const entryPort = Number(withPort?.[2] ?? 0);
    if (entryPort && entryPort !== port) return false;
    if (!/^[.*]/.test(host)) return hostname === host;
    return hostname.endsWith(host.startsWith("*") ? host.slice(1) : host);
  });
}

/** Refusals of a body larger than the request's `maxContentLength` (see isTooLarge). */
const tooLarge = new WeakSet<Error>();

/** The request failed because its answer's body was larger than its `maxContentLength`. */
export function isTooLarge(error: unknown): boolean {
  return error instanceof Error && tooLarge.has(error);
}

/** Failures of requests that went through a proxy, and which one (see proxyOf). */
const failedViaProxy = new WeakMap<Error, EgressProxy>();

/**
 * The proxy a failed request went through: its fix is then also the proxy's. Found on an
 * error that wraps the failure (its `cause`) too: a caller's deadline names what it cut off.
 */
export function proxyOf(error: unknown): EgressProxy | undefined {
  for (let each = error, depth = 0; each instanceof Error && depth < 4; depth++) {
    const proxy = failedViaProxy.get(each);
    if (proxy) return proxy;
    each = each.cause;
  }
  return undefined;
}

/**
 * axios stays the HTTP client (its config, AxiosError, transforms, validateStatus), and
 * this adapter sends the request with undici instead of axios' Node adapter. Measured
 * with `npm run bench:transport` (the finAPI fetch path at 64 checks in flight): 1.14 ms
 * of CPU per check against 1.85 ms (0.62x), with the client built by `new Axios` (see
 * http-transport.ts) and requests dispatched as below.
 *
 * Kept from axios' Node adapter: `timeout` is an idle timeout (no connection, no headers,
 * or no body bytes for that long; a slow but moving download is not cut off), an abort
 * is a cancellation, a UTF-8 BOM is dropped from text, a header that may appear once
 * keeps its first value. What it supports is what this service uses: absolute URLs,
 * bodies as string or bytes, `responseType` "text" or "arraybuffer", `signal`,
 * `maxContentLength`, `validateStatus`. Redirects are not followed and no
 * `Accept-Encoding` is sent, so bodies arrive as they are.
 */
export function createUndiciAdapter(dispatchers: Dispatchers): AxiosAdapter {
  return async (config) => {
    const signal = config.signal as AbortSignal | undefined;
    if (signal?.aborted) throw new CanceledError(undefined, config);
    const timeout = config.timeout && config.timeout > 0 ? config.timeout : 0;
    let proxy: EgressProxy | undefined;
    try {
      const url = requestUrl(config);
      const route = dispatchers.forUrl(url);
      proxy = route.proxy;
      const answer = await exchange(route.dispatcher, url, config, timeout, signal);
      const response: AxiosResponse = {
        data:
          config.responseType === "arraybuffer"
            ? answer.body
            : withoutBom(answer.body.toString("utf8")),
        status: answer.statusCode,
        statusText: answer.statusText,
        headers: responseHeaders(answer.headers),
        config,
        request: {},
      };
      const validateStatus = config.validateStatus;
      if (validateStatus && !validateStatus(response.status)) {
        throw new AxiosError(
          `Request failed with status code ${response.status}`,
          response.status < 500 ? AxiosError.ERR_BAD_REQUEST : AxiosError.ERR_BAD_RESPONSE,
          config,
          undefined,
          response,
        );
      }
      return response;
    } catch (error) {
      if (error instanceof AxiosError) throw error;
      if (signal?.aborted) {
        // Tagged too: the caller's deadline may be what aborted a call stuck at the proxy.
        const canceled = new CanceledError(undefined, config);
        if (proxy) failedViaProxy.set(canceled, proxy);
        throw canceled;
      }
      const failure = transportError(error, config);
      if (proxy) failedViaProxy.set(failure, proxy);
      throw failure;
    }
  };
}

/** A failure on the way (no connection, no answer in time), as axios' adapter names it. */
function transportError(error: unknown, config: InternalAxiosRequestConfig): AxiosError {
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && TIMEOUT_CODES.has(code)) {
    return new AxiosError(
      `timeout of ${config.timeout}ms exceeded`,
      config.transitional?.clarifyTimeoutError ? AxiosError.ETIMEDOUT : AxiosError.ECONNABORTED,
      config,
    );
  }
  return AxiosError.from(error, errorCode(error), config);
}

/** undici's own timeouts: connecting, waiting for headers, waiting for the next body bytes. */
const TIMEOUT_CODES = new Set([
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

/** Headers Node keeps the first of when a response repeats them (as axios' adapter saw). */
const SINGLE_VALUE_HEADERS = new Set([
  "age",
  "authorization",
  "content-length",
  "content-type",
  "etag",
  "expires",
  "from",
  "host",
  "if-modified-since",
  "if-unmodified-since",
  "last-modified",
  "location",
  "max-forwards",
  "proxy-authorization",
  "referer",
  "retry-after",
  "server",
  "user-agent",
]);

function responseHeaders(raw: Record<string, string | string[] | undefined>): AxiosHeaders {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    if (!Array.isArray(value) || name === "set-cookie") headers[name] = value;
    else headers[name] = SINGLE_VALUE_HEADERS.has(name) ? (value[0] ?? "") : value.join(", ");
  }
  return AxiosHeaders.from(headers as Record<string, string>);
}

function withoutBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function requestUrl(config: InternalAxiosRequestConfig): string {
  if (config.params !== undefined || config.baseURL !== undefined) {
    // Not used by this service; refused rather than silently sent somewhere else.
    throw new AxiosError(
      "the undici adapter takes absolute URLs only (no baseURL, no params)",
      AxiosError.ERR_BAD_OPTION,
      config,
    );
  }
  return config.url ?? "";
}

function requestBody(config: InternalAxiosRequestConfig): string | Uint8Array | undefined {
  const data: unknown = config.data;
  if (data === undefined || data === null) return undefined;
  if (typeof data === "string" || data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new AxiosError(
    "the undici adapter sends only string or byte bodies",
    AxiosError.ERR_BAD_REQUEST,
    config,
  );
}

interface Answer {
  statusCode: number;
  statusText: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/**
 * One request through undici's dispatcher, the body gathered as it arrives. Lower than
 * undici's `request()`: no body stream, async iterator or async resource per request
 * (about 25 us of CPU less per request at 64 in flight, measured in one process).
 */
function exchange(
  dispatcher: Dispatcher,
  url: string,
  config: InternalAxiosRequestConfig,
  timeout: number,
  signal: AbortSignal | undefined,
): Promise<Answer> {
  const { origin, pathname, search } = new URL(url);
  const limit = config.maxContentLength ?? -1;
  const readAtMost = (config as ReadAtMost).readAtMost;
  // Before any listener is added: a body we refuse throws here and leaves nothing behind.
  const body = requestBody(config);
  return new Promise<Answer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    let answer: Omit<Answer, "body"> | undefined;
    let controller: Dispatcher.DispatchController | undefined;
    let settled = false;
    const settle = (error: Error | undefined) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      if (error) reject(error);
      else if (!answer) reject(new Error("the response ended before its headers"));
      else {
        const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, length);
        resolve({ ...answer, body });
      }
    };
    const fail = (error: Error) => {
      settle(error);
      if (controller && !controller.aborted) controller.abort(error);
    };
    const onAbort = () => fail(signal?.reason ?? new Error("aborted"));
    signal?.addEventListener("abort", onAbort, { once: true });
    dispatcher.dispatch(
      {
        origin,
        path: pathname + search,
        method: (config.method ?? "get").toUpperCase() as Dispatcher.HttpMethod,
        headers: config.headers.toJSON(true) as Record<string, string>,
        body,
        headersTimeout: timeout,
        bodyTimeout: timeout,
      },
      {
        onRequestStart(started) {
          controller = started;
          // Aborted before the request was on its way: stop it now.
          if (settled) started.abort(new Error("aborted"));
        },
        onResponseStart(_controller, statusCode, headers, statusMessage) {
          // 1xx answers are interim; the final one follows.
          if (statusCode < 200) return;
          answer = { statusCode, statusText: statusMessage ?? "", headers };
        },
        onResponseData(_controller, chunk) {
          if (readAtMost !== undefined && length + chunk.length > readAtMost) {
            // Enough read: the answer so far, and the rest of it left on the wire.
            chunks.push(chunk.subarray(0, readAtMost - length));
            length = readAtMost;
            settle(undefined);
            controller?.abort(new Error("the rest of the answer is not read (readAtMost)"));
            return;
          }
          length += chunk.length;
          if (limit > -1 && length > limit) {
            const refused = new AxiosError(
              `maxContentLength size of ${limit} exceeded`,
              AxiosError.ERR_BAD_RESPONSE,
              config,
            );
            tooLarge.add(refused);
            fail(refused);
            return;
          }
          chunks.push(chunk);
        },
        onResponseEnd() {
          settle(undefined);
        },
        onResponseError(_controller, error) {
          settle(error);
        },
      },
    );
  });
}

/**
 * A request option of this adapter beside axios' own: read at most this many bytes of the
 * answer's body and hand on what was read, instead of failing as `maxContentLength` does
 * (the http sink needs only an answer's status and its start).
 */
export interface ReadAtMost {
  readAtMost?: number;
}

/**
 * undici names a dropped connection UND_ERR_SOCKET; the callers know Node's socket codes,
 * so the underlying one (or ECONNRESET) is passed on, as Node would name it.
 */
function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown }).code;
  const cause = (error as { cause?: { code?: unknown } }).cause;
  if (typeof cause?.code === "string" && cause.code.startsWith("E")) return cause.code;
  if (code === "UND_ERR_SOCKET") return "ECONNRESET";
  return typeof code === "string" ? code : undefined;
}
