import type { IncomingMessage, ServerResponse } from "node:http";
import express from "express";
import { allowedAddresses, parseCidrList } from "./http/allowlist.js";
import { apiHeaders } from "./http/api-headers.js";
import { callbackFastPath, clientAddressOf } from "./http/callback-fast-path.js";
import { addCallbackRoute, type CallbackRouteOptions } from "./http/callback-route.js";
import { redactSecretInPath } from "./http/callback-secret.js";
import { errorHandler, notFoundHandler } from "./http/error-handler.js";

export interface AppOptions extends CallbackRouteOptions {
  /** Express "trust proxy"; false unless TRUST_PROXY names the proxies in front. */
  trustProxy: false | number | string;
  /**
   * True once the service is about to stop (SHUTDOWN_DELAY_MS): answers then close their
   * connection, so a sender's next callback opens a new one, which the load balancer,
   * told by readiness, sends to another replica.
   */
  draining?: () => boolean;
}

/** What node:http's createServer takes. */
export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The public app, and whether a request that asks `Expect: 100-continue` may send its
 * body: only from an allowed address. Node answers 100 Continue by itself otherwise,
 * inviting the body of a request the allowlist refuses unread.
 */
export type PublicListener = RequestListener & { mayContinue(req: IncomingMessage): boolean };

/**
 * The public app: finAPI's callback route and nothing else (health, metrics and the
 * admin API live on the admin port). Built from what it is given, so tests can build it
 * around any inbox. A callback as finAPI sends it takes the fast path (see
 * callback-fast-path.ts); every other request, and every refusal, goes through Express.
 */
export function createApp(options: AppOptions): PublicListener {
  const allowed = allowedAddresses(parseCidrList(options.allowedCidrs));
  const redactPath = (path: string) => redactSecretInPath(path, options.path);
  const app = express();
  app.disable("x-powered-by");
  app.disable("etag");
  app.set("trust proxy", options.trustProxy);
  // Each header is work on every answer: only what an API answer needs (see api-headers.ts).
  app.use(apiHeaders(options.draining));
  addCallbackRoute(app, options, allowed);
  app.use(notFoundHandler());
  app.use(errorHandler(options.logger, redactPath));

  const trust = options.trustProxy === false ? undefined : app.get("trust proxy fn");
  const fastPath = callbackFastPath({ ...options, allowed, redactPath, trust });
  const { bodyLimitBytes } = options;
  const listener: RequestListener = (req, res) => {
    if (fastPath(req, res)) return;
    if (mayReadLong(req, bodyLimitBytes)) closeIfAnsweredUnread(req, res);
    app(req, res);
  };
  // Nor a body the route would refuse by its declared size unread (413).
  const mayContinue = (req: IncomingMessage) =>
    allowed(clientAddressOf(req, trust)) && !declaresOverLimit(req, bodyLimitBytes);
  return Object.assign(listener, { mayContinue });
}

/**
 * Whether the body, left unread, could keep the connection busy for long: chunked (no end
 * announced) or declared over the limit. Node reads and throws away the rest of a request
 * answered before its body arrived, to keep the connection for the next one: up to
 * REQUEST_TIMEOUT_MS of whatever a sender streams (a 1 TB Content-Length, or chunks
 * without end), from any address, since refusals (403, 401, 404, 405, 415) answer first.
 * A body within the limit is at most 64 KiB to read and throw away: its connection stays
 * open, as finAPI's retries after a refusal may use it.
 */
function mayReadLong(req: IncomingMessage, limitBytes: number): boolean {
  return req.headers["transfer-encoding"] !== undefined || declaresOverLimit(req, limitBytes);
}

/** Its Content-Length is over the body limit (the route answers 413 without reading it). */
function declaresOverLimit(req: IncomingMessage, limitBytes: number): boolean {
  return Number(req.headers["content-length"]) > limitBytes;
}

/**
 * An answer written before the request's body has all arrived says `Connection: close`, so
 * Node closes the connection once the answer is out instead of reading on. Node writes the
 * head in writeHead (res.end without one calls it too), where the body's state is known.
 */
function closeIfAnsweredUnread(req: IncomingMessage, res: ServerResponse): void {
  const writeHead = res.writeHead;
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    if (!req.complete) this.shouldKeepAlive = false;
    return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as typeof res.writeHead;
}
