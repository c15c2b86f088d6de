import express, {
  type ErrorRequestHandler,
  type Express,
  type Request,
  type RequestHandler,
} from "express";
import { controlRouter } from "./control.js";
import { dacReportFor, isMissingId, kreditCheckFor } from "./data.js";
import { accountAnalysisPdf, dacForLoanZip, safeFileName } from "./documents.js";
import { sendError, sendOAuthError } from "./errors.js";
import { echoRequestId, requireToken, simulate } from "./middleware.js";
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
