import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import express, {
  type ErrorRequestHandler,
  type Express,
  type Request,
  type RequestHandler,
} from "express";
import { controlRouter } from "./control.js";
import { dacReportFor, isIssuedCaseId, isMissingId, kreditCheckFor } from "./data.js";
import { accountAnalysisPdf, dacForLoanZip, safeFileName } from "./documents.js";
import { sendError, sendOAuthError } from "./errors.js";
import {
  admit,
  answerNotBefore,
  denial,
  echoRequestId,
  expressify,
  holdAnswer,
  requireToken,
  sendDenial,
  simulate,
  type ToExpress,
} from "./middleware.js";
import type { SimulatorState } from "./state.js";

export const TOKEN_PATHS = ["/api/v2/oauth/token", "/oauth/token"];
export const PROCESSCTRL_BASE = "/processctrl/api/v1";
export const DI_BASE = "/di/api/v1";
const CHECK_PATH = `${PROCESSCTRL_BASE}/checks/:processToken/kreditcheck/:kreditCheckId`;

function param(req: Request, name: string): string {
  const value = req.params[name];
  return Array.isArray(value) ? value.join("/") : (value ?? "");
}

function formDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return s;
  }
}

/** OAuth clients may send credentials in the body or as HTTP Basic (RFC 6749 2.3.1). */
function clientCredentials(req: Request): { id: unknown; secret: unknown } {
  const body = (req.body ?? {}) as Record<string, unknown>;
  const basic = /^Basic\s+(\S+)$/i.exec(req.get("authorization") ?? "");
  if (basic?.[1] && body.client_id === undefined) {
    const decoded = Buffer.from(basic[1], "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon >= 0) {
      return {
        id: formDecode(decoded.slice(0, colon)),
        secret: formDecode(decoded.slice(colon + 1)),
      };
    }
  }
  return { id: body.client_id, secret: body.client_secret };
}

function tokenHandler(state: SimulatorState): RequestHandler {
  return (req, res) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    // RFC 6749 5.2: a missing parameter is invalid_request, an unknown grant type is not.
    if (body.grant_type === undefined) {
      return sendOAuthError(res, 400, "invalid_request", "Missing grant_type");
    }
    if (body.grant_type !== "client_credentials") {
      return sendOAuthError(
        res,
        400,
        "unsupported_grant_type",
        `Unsupported grant type: ${String(body.grant_type)}`,
      );
    }
    const { id, secret } = clientCredentials(req);
    if (id !== state.clientId || secret !== state.clientSecret) {
      return sendOAuthError(res, 401, "invalid_client", "Bad client credentials");
    }
    const { accessToken, expiresIn } = state.tokens.obtain();
    res.set("Cache-Control", "no-store").json({
      access_token: accessToken,
      token_type: "bearer",
      expires_in: expiresIn,
      scope: "all",
    });
  };
}

function summaryLines(
  state: SimulatorState,
  processToken: string,
  kreditCheckId: string,
): string[] {
  const check = kreditCheckFor(processToken, kreditCheckId, state.faults.accounts);
  const lines: string[] = [];
  if (check.overallVerdict !== undefined)
    lines.push(`Overall verdict: ${String(check.overallVerdict)}`);
  if (check.rateAmount !== undefined) lines.push(`Rate amount: ${String(check.rateAmount)} EUR`);
  return lines;
}

const NON_ASCII = /[\u0080-\uffff]/;

/**
 * The JSON answer as `res.json` writes it here (no ETag, no JSON settings), but as one
 * string write with the head. Express sends bodies from 1000 characters as a Buffer, with
 * the head written as latin1; a string body takes the head into its own UTF-8, so a
 * non-ASCII X-Request-Id (the only header from the client) keeps the Buffer.
 */
function sendJson(res: ServerResponse, json: string, requestId: string | undefined): void {
  res.setHeader("Content-Type", "application/json; charset=utf-8");
  res.setHeader("Content-Length", String(Buffer.byteLength(json)));
  if (json.length >= 1000 && requestId !== undefined && NON_ASCII.test(requestId)) {
    res.end(Buffer.from(json));
  } else {
    res.end(json);
  }
}

/**
 * Plain segments only (RFC 3986 pchar without %-escapes), exact case, no query, no trailing
 * slash: for these Express's path and decoded params are the raw text, as used here.
 */
const SEGMENT = "([-\\w.~!$&'()*+,;=:@]+)";
const FAST_CHECK = new RegExp(`^/processctrl/api/v1/checks/${SEGMENT}/kreditcheck/${SEGMENT}$`);
const FAST_CASE = new RegExp(`^/di/api/v1/cases/${SEGMENT}/reports$`);

/**
 * The two data routes of every check (KreditCheck, DAC reports) without the router: the
 * same steps as their Express routes (request id, simulate, token, 404, answer) in one
 * function, and the answer held by one timer instead of a wrapped `res.end`. It takes only
 * the plain form of these URLs and leaves everything else (HEAD, conditional requests that
 * Express may answer with 304, escaped or unusual paths) to the Express routes, so the
 * answers are the same either way. Returns false for a request it does not take.
 */
function serveDataRoute(
  state: SimulatorState,
  toExpress: ToExpress,
  req: IncomingMessage,
  res: ServerResponse,
): boolean {
  if (req.method !== "GET") return false;
  const headers = req.headers;
  if (headers["if-none-match"] !== undefined || headers["if-modified-since"] !== undefined) {
    return false;
  }
  const url = req.url ?? "";
  const dac = FAST_CASE.exec(url);
  const check = dac ? null : FAST_CHECK.exec(url);
  if (!dac && !check) return false;

  try {
    const requestId = headers["x-request-id"] as string | undefined;
    if (requestId !== undefined) res.setHeader("X-Request-Id", requestId);
    const answerAt = admit(state, dac ? "dac" : "kreditcheck", req, res, toExpress);
    if (answerAt < 0) return true;
    const denied = denial(state, req);
    const missing =
      !denied && (dac ? !isIssuedCaseId(dac[1] as string) : isMissingId(check?.[2] as string));
    if (denied || missing) {
      if (answerAt > 0) answerNotBefore(state, req, res, answerAt);
      const [request, response] = toExpress(req, res);
      if (denied) sendDenial(request, response, denied);
      else if (dac) sendError(request, response, 404, "Case not found", "ENTITY_NOT_FOUND");
      else sendError(request, response, 404, "KreditCheck not found", "ENTITY_NOT_FOUND");
      return true;
    }
    const json = JSON.stringify(
      dac
        ? dacReportFor(dac[1] as string)
        : kreditCheckFor(check?.[1] as string, check?.[2] as string, state.faults.accounts),
    );
    const waitMs = answerAt - Date.now();
    if (answerAt === 0 || waitMs <= 0) {
      sendJson(res, json, requestId);
    } else {
      holdAnswer(state, req, res, waitMs, () => sendJson(res, json, requestId));
    }
  } catch (err) {
    const [request, response] = toExpress(req, res);
    onError(err, request, response, () => {});
  }
  return true;
}

const onError: ErrorRequestHandler = (err: unknown, req, res, _next) => {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const status = (err as { status?: unknown }).status;
  const clientError = typeof status === "number" && status >= 400 && status < 500;
  sendError(req, res, clientError ? status : 500, err instanceof Error ? err.message : String(err));
};

/**
 * The simulator as a request listener for a node HTTP server: the KreditCheck and DAC
 * report GETs straight to their handler, everything else to the Express app.
 */
export function createSimulatorListener(state: SimulatorState): RequestListener {
  const app = createSimulatorApp(state);
  const toExpress = expressify(app);
  return (req, res) => {
    if (!serveDataRoute(state, toExpress, req, res)) app(req, res);
  };
}

export function createSimulatorApp(state: SimulatorState): Express {
  const app = express();
  app.disable("x-powered-by");
  // Always a full answer: a 304 would hide the payload from counters and clients alike.
  app.set("etag", false);
  app.use(echoRequestId);
  app.use("/_control", controlRouter(state));

  app.post(
    TOKEN_PATHS,
    simulate(state, "token"),
    express.urlencoded({ extended: false, limit: "16kb" }),
    tokenHandler(state),
  );

  const auth = requireToken(state);
  const checkExists: RequestHandler = (req, res, next) => {
    if (isMissingId(param(req, "kreditCheckId"))) {
      return sendError(req, res, 404, "KreditCheck not found", "ENTITY_NOT_FOUND");
    }
    next();
  };

  app.get(CHECK_PATH, simulate(state, "kreditcheck"), auth, checkExists, (req, res) => {
    res.json(
      kreditCheckFor(
        param(req, "processToken"),
        param(req, "kreditCheckId"),
        state.faults.accounts,
      ),
    );
  });

  app.get(
    `${CHECK_PATH}/analysis/account/pdf`,
    simulate(state, "account_pdf"),
    auth,
    checkExists,
    (req, res) => {
      const processToken = param(req, "processToken");
      const kreditCheckId = param(req, "kreditCheckId");
      const pdf = accountAnalysisPdf(
        processToken,
        kreditCheckId,
        summaryLines(state, processToken, kreditCheckId),
      );
      res
        .type("application/pdf")
        .set(
          "Content-Disposition",
          `attachment; filename="account_analysis_${safeFileName(kreditCheckId)}.pdf"`,
        )
        .send(pdf);
    },
  );

  app.get(
    `${CHECK_PATH}/analysis/dacForLoan/zip`,
    simulate(state, "dac_zip"),
    auth,
    checkExists,
    (req, res) => {
      const processToken = param(req, "processToken");
      const kreditCheckId = param(req, "kreditCheckId");
      const zip = dacForLoanZip(kreditCheckId, summaryLines(state, processToken, kreditCheckId));
      res
        .type("application/zip")
        .set(
          "Content-Disposition",
          `attachment; filename="dacForLoan_${safeFileName(kreditCheckId)}.zip"`,
        )
        .send(zip);
    },
  );

  app.get(`${DI_BASE}/cases/:caseId/reports`, simulate(state, "dac"), auth, (req, res) => {
    const caseId = param(req, "caseId");
    if (!isIssuedCaseId(caseId)) {
      return sendError(req, res, 404, "Case not found", "ENTITY_NOT_FOUND");
    }
    res.json(dacReportFor(caseId));
  });

  app.use((req, res) => sendError(req, res, 404, `No route for ${req.method} ${req.path}`));

  app.use(onError);

  return app;
}
