import type { IncomingMessage, ServerResponse } from "node:http";
import proxyaddr from "proxy-addr";
import { acceptCallback } from "./accept-callback.js";
import { API_HEADERS } from "./api-headers.js";
import type { CallbackRouteOptions } from "./callback-route.js";
import { presentsSecret } from "./callback-secret.js";
import { answerRequestError } from "./error-handler.js";
import type { Reply } from "./reply.js";
import { checkedCallbackText } from "./verify-body.js";

export interface FastPathOptions extends CallbackRouteOptions {
  /**
   * Whose X-Forwarded-For is believed: the Express app's own compiled "trust proxy fn",
   * so the address is judged as req.ip is. Undefined: nobody's (TRUST_PROXY off).
   */
  trust?: ((address: string, hop: number) => boolean) | undefined;
  /** Whether an address is in ALLOWED_CIDRS (the same check the Express route makes). */
  allowed: (address: string | undefined) => boolean;
  draining?: (() => boolean) | undefined;
  /** The path as logs show it (the secret segment redacted). */
  redactPath: (path: string) => string;
}

/**
 * Takes a request for itself (answers it and returns true) or leaves it to Express (false,
 * having read nothing).
 */
export type FastPath = (req: IncomingMessage, res: ServerResponse) => boolean;

/** A secret path segment taken as it is: nothing Express would decode or route elsewhere. */
const PLAIN_SEGMENT = /^[A-Za-z0-9._~-]+$/;
/** The Content-Types finAPI sends: JSON, UTF-8 said or left implied. */
const PLAIN_JSON = /^application\/json(?:;\s*charset=utf-?8)?$/i;
/**
 * The callback route's common case, answered by Node's http server without Express: a POST
 * to the exact path from an allowed address (with the secret, if one is set), a JSON body
 * with Content-Length within the limit, no Content-Encoding. That is every callback finAPI
 * sends and every replay with curl. Express's per-request dispatch (its request and
 * response objects, the router, the middleware chain) cost more CPU than all of the
 * route's own work; at a flood of callbacks that decides how many are taken per second
 * (bench:ingest).
 *
 * Everything else (a refused address or secret, another method or path spelling, another
 * media type, compression, chunked bodies) goes to the Express route unread, which
 * answers it as before; so each refusal has one implementation. What this path answers
 * itself is what only the body shows (broken JSON, a repeated key, an invalid callback,
 * the store failing), with the same answers, headers and log lines as the Express route;
 * tests send the same bodies both ways and compare.
 */
export function callbackFastPath(options: FastPathOptions): FastPath {
  const { path, bodyLimitBytes, callbackSecret, allowed, trust, inbox, logger, clock, onOutcome } =
    options;
  const deps = { inbox, logger, clock, onOutcome };

  return (req, res) => {
    if (req.method !== "POST") return false;
    const url = req.url ?? "";
    const query = url.indexOf("?");
    const pathname = query < 0 ? url : url.slice(0, query);
    let fromPath: string | undefined;
    if (pathname !== path) {
      if (!pathname.startsWith(path) || pathname.charCodeAt(path.length) !== SLASH) return false;
      fromPath = pathname.slice(path.length + 1);
      if (!PLAIN_SEGMENT.test(fromPath)) return false;
    }
    const { headers } = req;
    if (headers["content-encoding"] !== undefined || headers["transfer-encoding"] !== undefined) {
      return false;
    }
    const length = Number(headers["content-length"]);
    if (!(length > 0 && length <= bodyLimitBytes)) return false;
    const type = headers["content-type"];
    if (type === undefined || !PLAIN_JSON.test(type)) return false;
    const remoteAddress = clientAddressOf(req, trust);
    if (!allowed(remoteAddress)) return false;
    if (callbackSecret === undefined) {
      if (fromPath !== undefined) return false;
    } else if (!presentsSecret(callbackSecret, fromPath, headers.authorization)) {
      return false;
    }

    const reply = nodeReply(res, options.draining);
    readBody(req, length, (body) => {
      try {
        // A body that never came in full is what body-parser reports as request.aborted.
        if (body === undefined) return reject({ type: "request.aborted" });
        const text = checkedCallbackText(body);
        let parsed: unknown;
        try {
          // body-parser reads an empty body (here: a lone BOM) as {}: refused as a callback
          // without its fields, not as broken JSON.
          parsed = text.length === 0 ? {} : JSON.parse(text);
        } catch {
          return reject({ type: "entity.parse.failed" });
        }
        acceptCallback(parsed, reply, deps).catch(reject);
      } catch (error) {
        reject(error);
      }
    });
    return true;

    /**
     * As the Express route's error hook and the app's error handler do: counted as an
     * invalid callback, logged, and answered (unless nothing can be).
     */
    function reject(error: unknown) {
      onOutcome?.("invalid");
      const answer = answerRequestError(
        error,
        { method: "POST", path: options.redactPath(pathname), encoding: undefined, remoteAddress },
        logger,
      );
      if (answer && !res.headersSent) reply(answer.status, answer.body);
    }
  };
}

const SLASH = 0x2f;

/** The client's address as Express's req.ip judges it under `trust` (TRUST_PROXY). */
export function clientAddressOf(
  req: IncomingMessage,
  trust: ((address: string, hop: number) => boolean) | undefined,
): string | undefined {
  return trust ? proxyaddr(req, trust) : req.socket.remoteAddress;
}

/**
 * The body of `length` bytes (Node's parser stops at Content-Length), or undefined when the
 * connection closes before it is all there (the sender gave up, or REQUEST_TIMEOUT_MS
 * passed and Node answered 408).
 */
function readBody(
  req: IncomingMessage,
  length: number,
  done: (body: Buffer | undefined) => void,
): void {
  const chunks: Buffer[] = [];
  let settled = false;
  const settle = (body: Buffer | undefined) => {
    if (settled) return;
    settled = true;
    done(body);
  };
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.once("end", () =>
    settle(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, length)),
  );
  // A reset connection emits error, then close: both mean the body is not coming.
  req.once("error", () => settle(undefined));
  req.once("close", () => settle(undefined));
}

/** A Reply written by Node in one writeHead: API_HEADERS, the JSON type and length. */
function nodeReply(res: ServerResponse, draining: (() => boolean) | undefined): Reply {
  return (status, body, headers) => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      ...API_HEADERS,
      ...headers,
      "Content-Type": "application/json; charset=utf-8",
      "Content-Length": Buffer.byteLength(text),
      ...(draining?.() ? { Connection: "close" } : {}),
    });
    res.end(text);
  };
}
