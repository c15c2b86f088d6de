import express, { type ErrorRequestHandler, type RequestHandler, type Router } from "express";
import { callbackSchema, isSuccessful } from "../callback.js";
import type { Inbox } from "../inbox/inbox.js";
import type { Logger } from "../logger.js";
import { allowlist, parseCidrList } from "./allowlist.js";
import { requireCallbackSecret } from "./callback-secret.js";
import { sendError } from "./send-error.js";

export type CallbackOutcome =
  | "accepted"
  | "duplicate"
  | "invalid"
  | "forbidden"
  | "unauthorized"
  | "store_unavailable";

export interface CallbackRouteOptions {
  path: string;
  bodyLimitBytes: number;
  inbox: Inbox;
  logger: Logger;
  clock: () => number;
  /** Comma list of networks allowed to call back. */
  allowedCidrs: string;
  callbackSecret?: string | undefined;
  onOutcome?: (outcome: CallbackOutcome) => void;
}

/** Seconds a sender should wait before retrying when the inbox cannot be written. */
const STORE_RETRY_AFTER_SECONDS = 5;

/**
 * finAPI's callback: validate, store durably, then answer. The 202 goes out only after
 * the inbox has the job on disk; if it cannot be written the answer is 503 (our fault,
 * so a retrying sender retries), never a 4xx.
 */
export function callbackRouter(options: CallbackRouteOptions): Router {
  const { path, bodyLimitBytes, inbox, logger, clock, onOutcome } = options;
  const router = express.Router();
  const paths = [path, `${path}/:secret`];

  const requireJson: RequestHandler = (req, res, next) => {
    if (req.is(["application/json", "application/*+json"])) return next();
    onOutcome?.("invalid");
    logger.info({ contentType: req.get("content-type") ?? null }, "callback rejected: not JSON");
    sendError(res, 415, "unsupported_media_type", [
      {
        message: `Content-Type must be application/json, got ${req.get("content-type") ?? "none"}`,
      },
    ]);
  };

  const accept: RequestHandler = async (req, res) => {
    const parsed = callbackSchema.safeParse(req.body);
    if (!parsed.success) {
      onOutcome?.("invalid");
      const details = parsed.error.issues.map((issue) => ({
        field: issue.path.length > 0 ? issue.path.join(".") : "(body)",
        message: issue.message,
      }));
      logger.info({ details }, "callback rejected: invalid body");
      sendError(res, 400, "invalid_callback", details);
      return;
    }
    const callback = parsed.data;
    const ids = { processToken: callback.processToken, kreditCheckId: callback.kreditCheckId };
    let stored: Awaited<ReturnType<Inbox["enqueue"]>>;
    try {
      stored = await inbox.enqueue(callback, new Date(clock()));
    } catch (error) {
      onOutcome?.("store_unavailable");
      logger.error({ ...ids, err: error }, "callback NOT accepted: the inbox could not store it");
      res.set("Retry-After", String(STORE_RETRY_AFTER_SECONDS));
      sendError(res, 503, "store_unavailable", [
        { message: "the callback could not be stored; retry later" },
      ]);
      return;
    }
    onOutcome?.(stored.duplicate ? "duplicate" : "accepted");
    const logLine = {
      ...ids,
      jobId: stored.id,
      status: callback.status,
      duplicate: stored.duplicate,
    };
    if (isSuccessful(callback)) logger.info(logLine, "callback accepted");
    else logger.warn(logLine, "callback accepted with a status other than SUCCESSFUL");
    res.status(202).json({ accepted: true, duplicate: stored.duplicate, id: stored.id });
  };

  // Order matters: who may ask (IP, then secret) is settled before the body is read.
  router.all(
    paths,
    allowlist(parseCidrList(options.allowedCidrs), logger, () => onOutcome?.("forbidden")),
  );
  router.post(
    paths,
    requireCallbackSecret(options.callbackSecret, () => {
      onOutcome?.("unauthorized");
      logger.warn("callback refused: missing or wrong CALLBACK_SECRET");
    }),
    requireJson,
    express.json({ limit: bodyLimitBytes, strict: true, type: () => true }),
    accept,
  );
  // Body errors (broken JSON, too large) are rejected callbacks too; the app's error
  // handler answers them.
  router.use(paths, ((error, _req, _res, next) => {
    onOutcome?.("invalid");
    next(error);
  }) as ErrorRequestHandler);
  router.all(paths, (_req, res) => {
    res.set("Allow", "POST");
    sendError(res, 405, "method_not_allowed", [{ message: "use POST" }]);
  });
  return router;
}
