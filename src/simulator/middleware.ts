import type { NextFunction, Request, RequestHandler, Response } from "express";
import { sendError, sendGatewayError, sendOAuthError } from "./errors.js";
import type { FaultDecision, SimEndpoint } from "./faults.js";
import type { SimulatorState } from "./state.js";

/** finAPI rejects longer request ids; clients should learn to trim them here, not in production. */
const MAX_REQUEST_ID_LENGTH = 255;

export function echoRequestId(req: Request, res: Response, next: NextFunction): void {
  const id = req.headers["x-request-id"];
  if (id !== undefined) res.setHeader("X-Request-Id", id);
  next();
}

/**
 * Holds the response back until `answerAt`: the latency runs from the request's arrival,
 * while the answer is being made, as a remote server's would, instead of being added to
 * the simulator's own work. An answer nobody waits for any more is dropped, and so is
 * one still held when the simulator closes.
 */
function answerNotBefore(state: SimulatorState, req: Request, res: Response, answerAt: number) {
  const end = res.end;
  res.end = function heldEnd(this: Response, ...args: unknown[]) {
    const waitMs = answerAt - Date.now();
    if (waitMs <= 0) return (end as (...a: unknown[]) => Response).apply(res, args);
    state.timers.after(waitMs, () => {
      if (!res.destroyed && !req.socket.destroyed) {
        (end as (...a: unknown[]) => Response).apply(res, args);
      }
    });
    return res;
  } as Response["end"];
}

function tokenDown(state: SimulatorState, now: number): FaultDecision | undefined {
  const until = state.faults.tokenDownUntil;
  if (until <= now) return undefined;
  return { kind: "status", status: 503, retryAfterSec: Math.ceil((until - now) / 1000) };
}

function sendFault(
  req: Request,
  res: Response,
  endpoint: SimEndpoint,
  status: number,
  retryAfterSec: number | undefined,
): void {
  if (retryAfterSec !== undefined && (status === 429 || status === 503)) {
    res.set("Retry-After", String(retryAfterSec));
  }
  if (status === 502 || status === 504) {
    sendGatewayError(res, status);
  } else if (endpoint === "token" && status === 401) {
    sendOAuthError(res, 401, "invalid_client", "Bad client credentials");
  } else if (endpoint === "token" && status === 400) {
    sendOAuthError(res, 400, "invalid_request", "Invalid request");
  } else {
    sendError(req, res, status);
  }
}

/**
 * Counts the request, then applies the fault plan: deterministic queue, then (data endpoints)
 * random faults or (token endpoint) the outage window, then latency. Returns true only when
 * the request is to be answered normally; otherwise it has been answered (or left hanging,
 * or reset) here.
 */
export function admit(
  state: SimulatorState,
  endpoint: SimEndpoint,
  req: Request,
  res: Response,
): boolean {
  const requestId = req.headers["x-request-id"] as string | undefined;
  const receivedAt = Date.now();
  const end = state.stats.begin(endpoint, requestId);
  const logged = state.requests.begin(
    endpoint,
    `${req.method} ${req.originalUrl}`,
    requestId,
    receivedAt,
  );
  res.on("close", end);
  res.on("finish", () => {
    state.stats.status(endpoint, res.statusCode);
    logged.answeredAt = Date.now();
    logged.status = res.statusCode;
    const retryAfter = Number(res.getHeader("retry-after"));
    if (Number.isFinite(retryAfter)) logged.retryAfterSec = retryAfter;
  });

  if (requestId !== undefined && requestId.length > MAX_REQUEST_ID_LENGTH) {
    sendError(req, res, 400, `X-Request-Id longer than ${MAX_REQUEST_ID_LENGTH} characters`);
    return false;
  }

  const decision =
    state.faults.decide(endpoint) ??
    (endpoint === "token" ? tokenDown(state, receivedAt) : undefined);
  if (decision?.kind === "hang") {
    // Left open on purpose; close() or the client's own timeout ends it.
    state.stats.status(endpoint, "hang");
    logged.status = "hang";
    return false;
  }
  const delay = state.faults.delayMs();
  if (decision?.kind === "reset") {
    const reset = () => {
      state.stats.status(endpoint, "reset");
      logged.status = "reset";
      req.socket.destroy();
    };
    if (delay > 0) state.timers.after(delay, reset);
    else reset();
    return false;
  }
  if (delay > 0) answerNotBefore(state, req, res, receivedAt + delay);
  if (!decision) return true;
  sendFault(req, res, endpoint, decision.status, decision.retryAfterSec);
  return false;
}

/** `admit` as Express middleware: `next` only for a request to be answered normally. */
export function simulate(state: SimulatorState, endpoint: SimEndpoint): RequestHandler {
  return (req, res, next) => {
    if (admit(state, endpoint, req, res)) next();
  };
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** Answers 401 or 403 and returns false unless the request carries a valid manager token. */
export function authorized(state: SimulatorState, req: Request, res: Response): boolean {
  const match = BEARER.exec(req.headers.authorization ?? "");
  const check = state.tokens.check(match?.[1]);
  if (!check.ok) {
    res.set("WWW-Authenticate", 'Bearer error="invalid_token"');
    sendError(req, res, 401, check.reason, "UNAUTHORIZED_ACCESS");
    return false;
  }
  if (state.faults.forbidden) {
    sendError(req, res, 403, "Missing scope data_intelligence:manager", "FORBIDDEN");
    return false;
  }
  return true;
}

export function requireToken(state: SimulatorState): RequestHandler {
  return (req, res, next) => {
    if (authorized(state, req, res)) next();
  };
}
