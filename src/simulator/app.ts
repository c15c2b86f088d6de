import express, {
  type ErrorRequestHandler,
  type Express,
  type Request,
  type RequestHandler,
  type Response,
} from "express";
import { controlRouter } from "./control.js";
import { dacReportFor, isMissingId, kreditCheckFor } from "./data.js";
import { accountAnalysisPdf, dacForLoanZip, safeFileName } from "./documents.js";
import { sendError, sendOAuthError } from "./errors.js";
import { admit, authorized, echoRequestId, requireToken, simulate } from "./middleware.js";
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
    if (body.grant_type !== "client_credentials") {
      return sendOAuthError(
        res,
        400,
        "unsupported_grant_type",
        `Unsupported grant type: ${String(body.grant_type ?? "(none)")}`,
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
function sendJson(res: Response, body: unknown, requestId: string | undefined): void {
  const json = JSON.stringify(body);
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
 * The two data routes of every check (KreditCheck, DAC reports) in one handler, the same
 * steps as the routes below (request id, simulate, token, 404, answer) without the
 * middleware chain. It takes only the plain form of these URLs and leaves everything else
 * (HEAD, conditional requests that Express may answer with 304, escaped or unusual paths)
 * to the routes below, so the answers are the same either way.
 */
function fastDataRoutes(state: SimulatorState): RequestHandler {
  return (req, res, next) => {
    if (req.method !== "GET") return next();
    const headers = req.headers;
    if (headers["if-none-match"] !== undefined || headers["if-modified-since"] !== undefined) {
      return next();
    }
    const url = req.url;
    const dac = FAST_CASE.exec(url);
    const check = dac ? null : FAST_CHECK.exec(url);
    if (!dac && !check) return next();

    const requestId = headers["x-request-id"] as string | undefined;
    if (requestId !== undefined) res.setHeader("X-Request-Id", requestId);
    if (dac) {
      if (!admit(state, "dac", req, res) || !authorized(state, req, res)) return;
      const caseId = dac[1] as string;
      if (isMissingId(caseId))
        return sendError(req, res, 404, "Case not found", "ENTITY_NOT_FOUND");
      return sendJson(res, dacReportFor(caseId), requestId);
    }
    if (!check || !admit(state, "kreditcheck", req, res) || !authorized(state, req, res)) return;
    const kreditCheckId = check[2] as string;
    if (isMissingId(kreditCheckId)) {
      return sendError(req, res, 404, "KreditCheck not found", "ENTITY_NOT_FOUND");
    }
    sendJson(
      res,
      kreditCheckFor(check[1] as string, kreditCheckId, state.faults.accounts),
      requestId,
    );
  };
}

export function createSimulatorApp(state: SimulatorState): Express {
  const app = express();
  app.disable("x-powered-by");
  // Always a full answer: a 304 would hide the payload from counters and clients alike.
  app.set("etag", false);
  app.use(fastDataRoutes(state));
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
    if (isMissingId(caseId)) return sendError(req, res, 404, "Case not found", "ENTITY_NOT_FOUND");
    res.json(dacReportFor(caseId));
  });

  app.use((req, res) => sendError(req, res, 404, `No route for ${req.method} ${req.path}`));

  const onError: ErrorRequestHandler = (err: unknown, req, res, _next) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const status = (err as { status?: unknown }).status;
    const clientError = typeof status === "number" && status >= 400 && status < 500;
    sendError(
      req,
      res,
      clientError ? status : 500,
      err instanceof Error ? err.message : String(err),
    );
  };
  app.use(onError);

  return app;
}
