import express, { type Request, type RequestHandler } from "express";
import { sendError } from "./send-error.js";
import { verifyCallbackBody } from "./verify-body.js";

/** As body-parser decides it: a body is announced by Transfer-Encoding or Content-Length. */
function hasBody(req: Request): boolean {
  return (
    req.headers["transfer-encoding"] !== undefined || req.headers["content-length"] !== undefined
  );
}

const UTF8_WITHOUT_DASH = /(;\s*charset\s*=\s*"?)utf8("?\s*(?:;|$))/i;

/**
 * A body whose Content-Length is over the limit, refused before a byte of it is read:
 * body-parser reads such a body to its end before answering 413 (so that the sender sees
 * the answer), which let a sender hold the connection for REQUEST_TIMEOUT_MS by declaring
 * 10 MB and sending nothing, or make the service read and discard any amount. The answer
 * closes the connection instead; the error is body-parser's own, so the route counts and
 * answers it as any other body that is too large.
 */
function declaredTooLarge(req: Request, limitBytes: number): Error | undefined {
  const declared = Number(req.headers["content-length"]);
  if (!(declared > limitBytes)) return undefined;
  return tooLarge(req, limitBytes, { expected: declared });
}

/** body-parser's own error for a body over the limit; the answer closes the connection. */
function tooLarge(req: Request, limitBytes: number, size: Record<string, number>): Error {
  req.res?.set("Connection", "close");
  return Object.assign(new Error("request entity too large"), {
    type: "entity.too.large",
    status: 413,
    ...size,
    limit: limitBytes,
  });
}

/**
 * `parse` (body-parser) for a chunked body, which announces no length: past the limit it
 * stops, but then reads the rest to its end before it answers, so a body that never ends
 * got 408 after REQUEST_TIMEOUT_MS instead of 413, the service reading all the while. Here
 * the bytes as they arrive are counted (compressed ones as sent, as a Content-Length counts
 * them), and past the limit the route answers 413 at once, closing the connection;
 * whatever body-parser says later is dropped. A body with a Content-Length needs none of
 * this: Node's parser stops at its end.
 */
function boundedChunked(parse: RequestHandler, limitBytes: number): RequestHandler {
  return (req, res, next) => {
    if (req.headers["transfer-encoding"] === undefined) return parse(req, res, next);
    let received = 0;
    let settled = false;
    const once = (error?: unknown) => {
      if (settled) return;
      settled = true;
      req.off("data", count);
      next(error);
    };
    const count = (chunk: Buffer) => {
      received += chunk.length;
      if (received > limitBytes) once(tooLarge(req, limitBytes, { received }));
    };
    parse(req, res, once);
    // After body-parser's own listener: it sees each chunk first, as it would alone.
    if (!settled) req.on("data", count);
  };
}

/**
 * A callback's body as every route that takes one reads it (finAPI's, and the admin API's
 * replay): JSON only (415 otherwise), duplicate keys, NUL and charset checked, at most
 * `limitBytes`. Any JSON value parses (not only objects and arrays), so `null` or `"x"` is
 * refused by the callback's schema as "expected object", not as "not valid JSON". Body
 * errors (broken JSON, too large) go to the app's error handler.
 */
export function callbackBody(
  limitBytes: number,
  onNotJson?: (req: Request) => void,
): RequestHandler[] {
  const requireJson: RequestHandler = (req, res, next) => {
    // "utf8" is a name of UTF-8 too (WHATWG's encoding labels); body-parser takes only the
    // "utf-" spellings, and would refuse it as a charset other than UTF-8.
    const type = req.headers["content-type"];
    if (type && UTF8_WITHOUT_DASH.test(type)) {
      req.headers["content-type"] = type.replace(UTF8_WITHOUT_DASH, "$1utf-8$2");
    }
    // A POST without any body (no Content-Length, no Transfer-Encoding) has no media type
    // to check; it goes on and is refused as an empty callback, not as the wrong type.
    if (!hasBody(req) || req.is(["application/json", "application/*+json"])) {
      return next(declaredTooLarge(req, limitBytes));
    }
    onNotJson?.(req);
    sendError(res, 415, "unsupported_media_type", [
      {
        message: `Content-Type must be application/json, got ${req.get("content-type") ?? "none"}`,
      },
    ]);
  };
  return [
    requireJson,
    boundedChunked(
      express.json({
        limit: limitBytes,
        strict: false,
        type: () => true,
        verify: verifyCallbackBody,
      }),
      limitBytes,
    ),
  ];
}
