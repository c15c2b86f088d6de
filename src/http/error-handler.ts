import zlib from "node:zlib";
import type { ErrorRequestHandler, RequestHandler } from "express";
import type { Logger } from "../logger.js";
import { errorBody, sendNotFound } from "./send-error.js";

/** body-parser's error types and what they mean to a sender. */
const BODY_ERRORS: Record<string, { status: number; error: string; message: string }> = {
  "entity.too.large": {
    status: 413,
    error: "payload_too_large",
    message: "the body is larger than 64 KiB",
  },
  "entity.parse.failed": {
    status: 400,
    error: "invalid_json",
    message: "the body is not valid JSON",
  },
  "encoding.unsupported": {
    status: 415,
    error: "unsupported_encoding",
    message: "unsupported Content-Encoding",
  },
  "charset.unsupported": {
    status: 415,
    error: "unsupported_charset",
    message: "unsupported charset",
  },
  "entity.duplicate.key": {
    status: 400,
    error: "duplicate_key",
    message: "a key appears more than once in one object",
  },
  "entity.invalid.number": {
    status: 400,
    error: "invalid_callback",
    message: "a number cannot be held as sent",
  },
  "entity.invalid.utf8": {
    status: 400,
    error: "invalid_utf8",
    message: "the body is not valid UTF-8; send the JSON as UTF-8 (RFC 8259)",
  },
  "request.size.invalid": {
    status: 400,
    error: "invalid_body_size",
    message: "the body does not match Content-Length",
  },
};

export function notFoundHandler(): RequestHandler {
  return (_req, res) => sendNotFound(res);
}

/** Last in the chain: known client errors get their 4xx, anything else a bare 500. */
export function errorHandler(
  logger: Logger,
  redactPath: (path: string) => string = (path) => path,
): ErrorRequestHandler {
  return (error, req, res, _next) => {
    const answer = answerRequestError(
      error,
      {
        method: req.method,
        path: redactPath(req.path),
        encoding: req.headers["content-encoding"],
        remoteAddress: req.ip,
      },
      logger,
    );
    if (answer && !res.headersSent) res.status(answer.status).json(answer.body);
  };
}

export interface ErrorAnswer {
  status: number;
  body: ReturnType<typeof errorBody>;
}

/**
 * What a request that failed with `error` is answered, logged here: known client errors
 * (body-parser's, and our body checks' in its place) their 4xx, anything else a bare 500;
 * undefined when nothing can be answered. The Express app's error handler and the
 * callback's fast path both answer with it, so the two cannot drift apart.
 */
export function answerRequestError(
  error: unknown,
  request: {
    method: string | undefined;
    path: string;
    encoding: string | undefined;
    /** The client as the allowlist judges it: who sends broken callbacks. */
    remoteAddress: string | undefined;
  },
  logger: Logger,
): ErrorAnswer | undefined {
  const { method, path, encoding, remoteAddress } = request;
  const failure = error as
    | {
        type?: unknown;
        status?: unknown;
        message?: unknown;
        charset?: unknown;
        encoding?: unknown;
        field?: unknown;
        detail?: unknown;
      }
    | null
    | undefined;
  if (failure?.type === "request.aborted") {
    // The connection is gone: nothing we answer arrives. Either the sender closed it, or
    // Node answered 408 itself when REQUEST_TIMEOUT_MS passed (and closed it).
    logger.info(
      { method, path, remoteAddress, reason: failure.type },
      "request body did not arrive: the sender closed the connection, or it stalled past REQUEST_TIMEOUT_MS and Node answered 408",
    );
    return undefined;
  }
  const known = typeof failure?.type === "string" ? BODY_ERRORS[failure.type] : undefined;
  if (failure && known) {
    logger.info(
      { method, path, remoteAddress, status: known.status, reason: failure.type },
      `request rejected: ${known.error}`,
    );
    return {
      status: known.status,
      body: errorBody(known.error, [
        detailFor({ ...failure, type: failure.type as string }, known.message),
      ]),
    };
  }
  if (isDecompressionError(error) && typeof encoding === "string") {
    logger.info(
      { method, path, remoteAddress, status: 400, encoding },
      "request rejected: invalid_encoding",
    );
    return {
      status: 400,
      body: errorBody("invalid_encoding", [
        {
          message: `the body is not valid ${encoding} data (${String(error.message)}); send it as declared by Content-Encoding, or uncompressed`,
        },
      ]),
    };
  }
  const status =
    typeof failure?.status === "number" && failure.status >= 400 && failure.status < 500
      ? failure.status
      : 500;
  if (status >= 500) logger.error({ err: error, method, path, remoteAddress }, "request failed");
  else logger.info({ status, method, path, remoteAddress, err: error }, "request rejected");
  // Never echo internals in a 500.
  return {
    status,
    body: errorBody(status >= 500 ? "internal_error" : "bad_request", [
      { message: status >= 500 ? "internal error" : String(failure?.message ?? "bad request") },
    ]),
  };
}

/** What body-parser inflates here: zstd only where Node has it (22.15+, 23.8+). */
const ACCEPTED_ENCODINGS =
  "createZstdDecompress" in zlib ? "gzip, deflate, br or zstd" : "gzip, deflate or br";

/**
 * The sender needs to know which charset or encoding was refused and what is taken, which
 * key it repeated, and which number cannot be held.
 */
function detailFor(
  error: { type: string; charset?: unknown; encoding?: unknown; field?: unknown; detail?: unknown },
  fallback: string,
): { field?: string; message: string } {
  if (
    error.type === "entity.invalid.number" &&
    typeof error.field === "string" &&
    typeof error.detail === "string"
  ) {
    return { field: error.field, message: error.detail };
  }
  if (error.type === "charset.unsupported" && typeof error.charset === "string") {
    return { message: `unsupported charset "${error.charset}"; send the JSON as UTF-8` };
  }
  if (error.type === "encoding.unsupported" && typeof error.encoding === "string") {
    return {
      message: `unsupported Content-Encoding "${error.encoding}"; send the body uncompressed, or as ${ACCEPTED_ENCODINGS}`,
    };
  }
  if (error.type === "entity.duplicate.key" && typeof error.field === "string") {
    return {
      field: error.field,
      message: "appears more than once in one object: send each key once",
    };
  }
  return { message: fallback };
}

/**
 * zlib's errors (a gzip/deflate/br/zstd body that does not inflate) carry a numeric errno
 * and a code of zlib (Z_…), brotli (ERR_…) or zstd (ZSTD_…).
 */
function isDecompressionError(error: unknown): error is { message: unknown } {
  const candidate = error as { status?: unknown; errno?: unknown; code?: unknown } | undefined;
  return (
    candidate?.status === 400 &&
    typeof candidate.errno === "number" &&
    typeof candidate.code === "string" &&
    /^(Z_|ERR_|ZSTD_)/.test(candidate.code)
  );
}
