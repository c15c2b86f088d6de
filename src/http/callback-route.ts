import type { ErrorRequestHandler, IRouter, Request, RequestHandler } from "express";
import type { Inbox } from "../inbox/inbox.js";
import type { Logger } from "../logger.js";
import { acceptCallback } from "./accept-callback.js";
import { allowlist } from "./allowlist.js";
import { callbackBody } from "./callback-body.js";
import { requireCallbackSecret, wrongSecretAnswer } from "./callback-secret.js";
import { expressReply } from "./reply.js";
import { sendError, sendNotFound } from "./send-error.js";

export const CALLBACK_OUTCOMES = [
  "accepted",
  "duplicate",
  "invalid",
  "forbidden",
  "unauthorized",
  "store_unavailable",
] as const;
export type CallbackOutcome = (typeof CALLBACK_OUTCOMES)[number];

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

/**
 * finAPI's callback: validate, store durably, then answer. The 202 goes out only after
 * the inbox has the job on disk; if it cannot be written the answer is 503 (our fault,
 * so a retrying sender retries), never a 4xx. Added to `router` (the app itself) rather
 * than returned as a router of its own: a nested router is one more dispatch on every
 * callback, the one path that must keep up with a flood.
 */
export function addCallbackRoute(
  router: IRouter,
  options: CallbackRouteOptions,
  allowed: (address: string | undefined) => boolean,
): void {
  const { path, bodyLimitBytes, inbox, logger, clock, onOutcome } = options;
  const paths = [path, `${path}/:secret`];

  const accept: RequestHandler = (req, res) =>
    acceptCallback(req.body, expressReply(res), { inbox, logger, clock, onOutcome });

  // Order matters: who may ask (IP, then secret) is settled before the body is read. The
  // allowlist is mounted on the path (use, not a route with :secret) so it runs before
  // Express decodes the secret segment: a broken %-escape from a network that may not
  // call gets 403 like anything else from there, not a 400 about the escape.
  // Who probes the secret: the 403 of the allowlist says who, so does this.
  const refuseSecret = (req: Request, counted = true) => {
    if (counted) onOutcome?.("unauthorized");
    logger.warn({ remoteAddress: req.ip }, "callback refused: missing or wrong CALLBACK_SECRET");
  };
  // Both refuse every request at or below the path, but count only what could be a
  // callback: a scanner's GET there is no callback finAPI sent, and counted as one it
  // would look like finAPI being refused to an alert on these outcomes.
  router.use(
    path,
    allowlist(allowed, logger, (req) => {
      if (isCallbackRequest(req)) onOutcome?.("forbidden");
    }),
    refuseUndecodableSegment(options.callbackSecret, (req) =>
      refuseSecret(req, isCallbackRequest(req)),
    ),
  );
  router.post(
    paths,
    requireCallbackSecret(options.callbackSecret, refuseSecret),
    ...callbackBody(bodyLimitBytes, (req) => {
      onOutcome?.("invalid");
      logger.info(
        { contentType: req.get("content-type") ?? null, remoteAddress: req.ip },
        "callback rejected: not JSON",
      );
    }),
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
}

/**
 * Whether a request reaching middleware mounted on the callback path (`req.path` is then
 * what follows it) is one the POST route takes: a POST to the path itself or to one segment
 * below it, where the secret goes, a trailing slash allowed as Express's routing allows it.
 */
function isCallbackRequest(req: Request): boolean {
  return req.method === "POST" && /^\/(?:[^/]+\/?)?$/.test(req.path);
}

/**
 * A segment below the callback path with a broken %-escape (`/<secret>%`) is a wrong
 * secret (401), or no route when there is no secret (404), answered before Express decodes
 * it: its URIError, "Failed to decode param '<segment>'", was logged with the segment in
 * it (a secret with a stray % in the URL registered at finAPI) and answered 400 before the
 * secret was checked.
 */
function refuseUndecodableSegment(
  secret: string | undefined,
  onWrongSecret: (req: Request) => void,
): RequestHandler {
  return (req, res, next) => {
    const [segment = ""] = (req.url.split("?")[0] ?? "").split("/").filter((part) => part !== "");
    if (isDecodable(segment)) return next();
    if (secret === undefined) return sendNotFound(res);
    onWrongSecret(req);
    wrongSecretAnswer(res);
  };
}

function isDecodable(segment: string): boolean {
  try {
    decodeURIComponent(segment);
    return true;
  } catch {
    return false;
  }
}
