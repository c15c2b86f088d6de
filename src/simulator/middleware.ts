import { setTimeout as sleep } from "node:timers/promises";
import type { NextFunction, Request, RequestHandler, Response } from "express";
import { sendError, sendGatewayError, sendOAuthError } from "./errors.js";
import type { FaultDecision, SimEndpoint } from "./faults.js";
import type { SimulatorState } from "./state.js";

/** finAPI rejects longer request ids; clients should learn to trim them here, not in production. */
const MAX_REQUEST_ID_LENGTH = 255;

export function echoRequestId(req: Request, res: Response, next: NextFunction): void {
  const id = req.get("x-request-id");
  if (id !== undefined) res.set("X-Request-Id", id);
  next();
}

async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/**
 * Holds the response back until `answerAt`: the latency runs from the request's arrival,
 * while the answer is being made, as a remote server's would, instead of being added to
 * the simulator's own work. An answer nobody waits for any more is dropped.
 */
function answerNotBefore(req: Request, res: Response, answerAt: number, signal: AbortSignal) {
  const end = res.end.bind(res) as (...args: unknown[]) => Response;
  res.end = ((...args: unknown[]) => {
    const waitMs = answerAt - Date.now();
    if (waitMs <= 0) return end(...args);
    void pause(waitMs, signal).then((waited) => {
      if (waited && !res.destroyed && !req.socket.destroyed) end(...args);
    });
    return res;
  }) as Response["end"];
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
 * random faults or (token endpoint) the outage window, then latency. Calls `next` only when
 * the request is to be answered normally.
 */
export function simulate(state: SimulatorState, endpoint: SimEndpoint): RequestHandler {
  return async (req, res, next) => {
    const requestId = req.get("x-request-id");
    const end = state.stats.begin(endpoint, requestId);
    const logged = state.requests.begin(endpoint, `${req.method} ${req.originalUrl}`, requestId);
    res.on("close", end);
    res.on("finish", () => {
      state.stats.status(endpoint, res.statusCode);
      logged.answeredAt = Date.now();
      logged.status = res.statusCode;
      const retryAfter = Number(res.getHeader("retry-after"));
      if (Number.isFinite(retryAfter)) logged.retryAfterSec = retryAfter;
    });

    if (requestId !== undefined && requestId.length > MAX_REQUEST_ID_LENGTH) {
      return sendError(
        req,
        res,
        400,
        `X-Request-Id longer than ${MAX_REQUEST_ID_LENGTH} characters`,
      );
    }

    const decision =
      state.faults.decide(endpoint) ??
      (endpoint === "token" ? tokenDown(state, Date.now()) : undefined);
    if (decision?.kind === "hang") {
      // Left open on purpose; close() or the client's own timeout ends it.
      state.stats.status(endpoint, "hang");
      logged.status = "hang";
      return;
    }
    const delay = state.faults.delayMs();
    if (decision?.kind === "reset") {
      if (delay > 0 && !(await pause(delay, state.closing.signal))) return;
      state.stats.status(endpoint, "reset");
      logged.status = "reset";
      req.socket.destroy();
      return;
    }
    if (delay > 0) answerNotBefore(req, res, Date.now() + delay, state.closing.signal);
    if (!decision) return next();
    sendFault(req, res, endpoint, decision.status, decision.retryAfterSec);
  };
}

export function requireToken(state: SimulatorState): RequestHandler {
  return (req, res, next) => {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(req.get("authorization") ?? "");
    const check = state.tokens.check(match?.[1]);
    if (!check.ok) {
      res.set("WWW-Authenticate", 'Bearer error="invalid_token"');
      return sendError(req, res, 401, check.reason, "UNAUTHORIZED_ACCESS");
    }
    if (state.faults.forbidden) {
      return sendError(req, res, 403, "Missing scope data_intelligence:manager", "FORBIDDEN");
    }
    next();
  };
}
