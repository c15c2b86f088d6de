import type { IncomingMessage, ServerResponse } from "node:http";
import proxyaddr from "proxy-addr";
import { acceptCallback } from "./accept-callback.js";
import { API_HEADERS } from "./api-headers.js";
import type { CallbackRouteOptions } from "./callback-route.js";
import { presentsSecret } from "./callback-secret.js";
import { BODY_ABORTED_MESSAGE, knownBodyError } from "./error-handler.js";
import type { Reply } from "./reply.js";
import { errorBody } from "./send-error.js";
import { findDuplicateKey } from "./verify-body.js";

export interface FastPathOptions extends CallbackRouteOptions {
  trustProxy: false | number | string;
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
/** Drops a BOM, as body-parser's decoder does. */
const UTF8 = new TextDecoder();

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
  const { path, bodyLimitBytes, callbackSecret, allowed, inbox, clock, onOutcome } = options;
  const logger = options.logger;
  const deps = { inbox, logger, clock, onOutcome };
  const clientAddress = addressOf(options.trustProxy);

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
    if (!allowed(clientAddress(req))) return false;
    if (callbackSecret === undefined) {
      if (fromPath !== undefined) return false;
    } else if (!presentsSecret(callbackSecret, fromPath, headers.authorization)) {
      return false;
    }

    const reply = nodeReply(res, options.draining);
    const logPath = () => options.redactPath(pathname);
    readBody(req, length, (body) => {
      if (body === undefined) {
        onOutcome?.("invalid");
        logger.info(
          { method: "POST", path: logPath(), reason: "request.aborted" },
          BODY_ABORTED_MESSAGE,
        );
        return;
      }
      try {
        const text = UTF8.decode(body);
        let parsed: unknown;
        try {
          // body-parser reads an empty body (here: a lone BOM) as {}: refused as a callback
          // without its fields, not as broken JSON.
          parsed = text.length === 0 ? {} : JSON.parse(text);
        } catch {
          return refuse({ type: "entity.parse.failed" });
        }
        const repeated = findDuplicateKey(text);
        if (repeated !== undefined)
          return refuse({ type: "entity.duplicate.key", field: repeated });
        acceptCallback(parsed, reply, deps).catch(fail);
      } catch (error) {
        fail(error);
      }
    });
    return true;

    /** What Express's error handler does with an error on the route: a bare 500. */
    function fail(error: unknown) {
      onOutcome?.("invalid");
      logger.error({ err: error, method: "POST", path: logPath() }, "request failed");
      if (!res.headersSent)
        reply(500, errorBody("internal_error", [{ message: "internal error" }]));
    }

    function refuse(error: { type: string; field?: string }) {
      // knownBodyError knows both types: the answer Express's error handler gives them.
      const known = knownBodyError(error);
      if (!known) throw new Error(`no answer for body error ${error.type}`);
      onOutcome?.("invalid");
      logger.info(
        { method: "POST", path: logPath(), status: known.status, reason: error.type },
        "request rejected",
      );
      reply(known.status, known.body);
    }
  };
}

const SLASH = 0x2f;

/** The client's address as Express's req.ip gives it under the same "trust proxy". */
function addressOf(trustProxy: false | number | string) {
  if (trustProxy === false) return (req: IncomingMessage) => req.socket.remoteAddress;
  // As Express compiles its "trust proxy" setting.
  const trust =
    typeof trustProxy === "number"
      ? (_address: string, hop: number) => hop < trustProxy
      : proxyaddr.compile(trustProxy.split(",").map((entry) => entry.trim()));
  return (req: IncomingMessage) => proxyaddr(req, trust);
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
