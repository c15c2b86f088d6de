import type { IncomingMessage, ServerResponse } from "node:http";
import type { Express, NextFunction, Request, RequestHandler, Response } from "express";
import { sendError, sendGatewayError, sendOAuthError } from "./errors.js";
import type { FaultDecision, SimEndpoint } from "./faults.js";
import type { SimulatorState } from "./state.js";

/** finAPI rejects longer request ids; clients should learn to trim them here, not in production. */
const MAX_REQUEST_ID_LENGTH = 255;
/** How much of a URL the request log keeps: its 50,000 entries stay a few MB at most. */
const MAX_LOGGED_TARGET_LENGTH = 1024;

/** Kept in the counters and the request log; a longer id is refused anyway. */
function loggedRequestId(id: string | undefined): string | undefined {
  return id !== undefined && id.length > MAX_REQUEST_ID_LENGTH
    ? copyOf(id.slice(0, MAX_REQUEST_ID_LENGTH))
    : id;
}

/**
 * A string of its own: V8's slice of a long string is a view that keeps all of it alive,
 * so 20,000 logged 15 kB URLs held 330 MB instead of the 1 KB each the log keeps.
 */
function copyOf(text: string): string {
  return Buffer.from(text, "utf8").toString("utf8");
}

/** Makes a request and its response usable with Express's helpers (`res.json`, `req.get`). */
export type ToExpress = (req: IncomingMessage, res: ServerResponse) => [Request, Response];

/**
 * Gives a plain node request and response what `app.handle` gives them: Express's
 * prototypes and the links between the two. The hot data routes do without it until they
 * answer with Express (errors): changing the prototype of every request and response
 * object cost V8 more than all the rest of such a request (measured at 256 requests in
 * flight, data generation left out: 150 instead of 73 µs of CPU per request, 50 % more
 * garbage, twice the GC work).
 */
export function expressify(app: Express): ToExpress {
  return (req, res) => {
    const request = req as Request;
    const response = res as Response;
    if (Object.getPrototypeOf(req) !== app.request) {
      request.res = response;
      response.req = request;
      Object.setPrototypeOf(req, app.request);
      Object.setPrototypeOf(res, app.response);
      if (!response.locals) response.locals = Object.create(null);
    }
    return [request, response];
  };
}

/** For requests that came through Express: nothing to do. */
const alreadyExpress: ToExpress = (req, res) => [req as Request, res as Response];

export function echoRequestId(req: Request, res: Response, next: NextFunction): void {
  const id = req.headers["x-request-id"];
  if (id !== undefined) res.setHeader("X-Request-Id", id);
  next();
}

/** Answers held longer than this are dropped as soon as the client goes away. */
const LONG_HOLD_MS = 1000;

/**
 * Runs `send` after `waitMs` unless the client has gone by then. A long hold also ends
 * when the client goes: its timer would otherwise keep the prepared answer (up to a few
 * MB with many accounts) for as long as the latency says, up to 20 minutes. Short holds
 * skip the listener: under load it cost more than the timer itself.
 */
export function holdAnswer(
  state: SimulatorState,
  req: IncomingMessage,
  res: ServerResponse,
  waitMs: number,
  send: () => void,
): void {
  const held = state.timers.after(waitMs, () => {
    if (!res.destroyed && !req.socket.destroyed) send();
  });
  if (waitMs > LONG_HOLD_MS) res.once("close", () => state.timers.cancel(held));
}

/**
 * Holds the response back until `answerAt`: the latency runs from the request's arrival,
 * while the answer is being made, as a remote server's would, instead of being added to
 * the simulator's own work. An answer nobody waits for any more is dropped, and so is
 * one still held when the simulator closes.
 */
export function answerNotBefore(
  state: SimulatorState,
  req: IncomingMessage,
  res: ServerResponse,
  answerAt: number,
): void {
  const end = res.end;
  res.end = function heldEnd(this: ServerResponse, ...args: unknown[]) {
    const waitMs = answerAt - Date.now();
    if (waitMs <= 0) return (end as (...a: unknown[]) => ServerResponse).apply(res, args);
    holdAnswer(state, req, res, waitMs, () => {
      (end as (...a: unknown[]) => ServerResponse).apply(res, args);
    });
    return res;
  } as ServerResponse["end"];
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
 * random faults or (token endpoint) the outage window, then latency. For a request to be
 * answered normally it returns when the answer may go out (0: at once) and the caller
 * holds the answer until then (`answerNotBefore`); otherwise the request has been answered,
 * left hanging or reset here, and it returns -1.
 */
export function admit(
  state: SimulatorState,
  endpoint: SimEndpoint,
  req: IncomingMessage,
  res: ServerResponse,
  toExpress: ToExpress = alreadyExpress,
): number {
  const requestId = req.headers["x-request-id"] as string | undefined;
  const receivedAt = Date.now();
  const end = state.stats.begin(endpoint, loggedRequestId(requestId));
  const target = `${req.method} ${(req as Partial<Request>).originalUrl ?? req.url}`;
  const logged = state.requests.begin(
    endpoint,
    target.length > MAX_LOGGED_TARGET_LENGTH
      ? copyOf(target.slice(0, MAX_LOGGED_TARGET_LENGTH))
      : target,
    loggedRequestId(requestId),
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
    const [request, response] = toExpress(req, res);
    sendError(
      request,
      response,
      400,
      `X-Request-Id longer than ${MAX_REQUEST_ID_LENGTH} characters`,
    );
    return -1;
  }

  const decision =
    state.faults.decide(endpoint) ??
    (endpoint === "token" ? tokenDown(state, receivedAt) : undefined);
  if (decision?.kind === "hang") {
    // Left open on purpose; close() or the client's own timeout ends it.
    state.stats.status(endpoint, "hang");
    logged.status = "hang";
    return -1;
  }
  const delay = state.faults.delayMs();
  if (decision?.kind === "reset") {
    const reset = () => {
      // The client gave up during the delay: it saw its own timeout, not a reset (and an
      // answer held for a client that left is not counted either).
      if (req.socket.destroyed) return;
      state.stats.status(endpoint, "reset");
      logged.status = "reset";
      // A TCP RST (the client reads ECONNRESET), not a normal close ("socket hang up").
      req.socket.resetAndDestroy();
    };
    if (delay > 0) state.timers.after(delay, reset);
    else reset();
    return -1;
  }
  const answerAt = delay > 0 ? receivedAt + delay : 0;
  if (!decision) return answerAt;
  if (answerAt > 0) answerNotBefore(state, req, res, answerAt);
  const [request, response] = toExpress(req, res);
  sendFault(request, response, endpoint, decision.status, decision.retryAfterSec);
  return -1;
}

/** `admit` as Express middleware: `next` only for a request to be answered normally. */
export function simulate(state: SimulatorState, endpoint: SimEndpoint): RequestHandler {
  return (req, res, next) => {
    const answerAt = admit(state, endpoint, req, res);
    if (answerAt < 0) return;
    if (answerAt > 0) answerNotBefore(state, req, res, answerAt);
    next();
  };
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** Why a data request may not be answered: a 401 (no valid manager token) or a 403. */
export interface Denial {
  status: 401 | 403;
  message: string;
}

export function denial(state: SimulatorState, req: IncomingMessage): Denial | undefined {
  const match = BEARER.exec(req.headers.authorization ?? "");
  const check = state.tokens.check(match?.[1]);
  if (!check.ok) return { status: 401, message: check.reason };
  if (state.faults.forbidden) {
    return { status: 403, message: "Missing scope data_intelligence:manager" };
  }
  return undefined;
}

export function sendDenial(req: Request, res: Response, { status, message }: Denial): void {
  if (status === 401) {
    res.set("WWW-Authenticate", 'Bearer error="invalid_token"');
    sendError(req, res, 401, message, "UNAUTHORIZED_ACCESS");
  } else {
    sendError(req, res, 403, message, "FORBIDDEN");
  }
}

export function requireToken(state: SimulatorState): RequestHandler {
  return (req, res, next) => {
    const denied = denial(state, req);
    if (denied) return sendDenial(req, res, denied);
    next();
  };
}
