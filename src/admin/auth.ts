import type { Request, RequestHandler } from "express";
import { secretsEqual } from "../http/callback-secret.js";
import { LogBudget } from "../http/log-budget.js";
import { sendError } from "../http/send-error.js";
import type { Logger } from "../logger.js";

/** Host names that can only mean this machine. */
const LOOPBACK_HOST = /^(localhost\.?|127(\.\d{1,3}){3}\.?|\[::1\])$/i;

/** What guards the admin port: one handler for /admin/*, one for /readyz and /metrics. */
export interface AdminGuards {
  /**
   * `Authorization: Bearer ${ADMIN_TOKEN}` when a token is configured. Without one (the
   * admin port then listens on loopback only), requests made on this machine only.
   */
  jobs: RequestHandler;
  /**
   * Open to whoever reaches the port when a token is configured (load balancers,
   * Prometheus); without one, requests made on this machine only, like the jobs API.
   */
  probes: RequestHandler;
}

export function adminGuards(token: string | undefined, logger: Logger): AdminGuards {
  // Refusals logged per minute: whoever reaches the port (ADMIN_HOST=0.0.0.0) could
  // otherwise write a warning per guess.
  const budget = new LogBudget(20, 60_000);
  const refuse = (req: Request, reason: string) =>
    budget.warn(
      logger,
      // The path as asked: req.path is the part after the router's mount point (/jobs).
      {
        method: req.method,
        path: req.baseUrl + req.path,
        remoteAddress: req.socket.remoteAddress,
        reason,
      },
      "admin request refused",
    );
  if (token === undefined) {
    const thisMachine = thisMachineOnly(refuse);
    return { jobs: thisMachine, probes: thisMachine };
  }
  const bearer: RequestHandler = (req, res, next) => {
    const header = req.get("authorization") ?? "";
    const given = header.toLowerCase().startsWith("bearer ") ? header.slice(7).trim() : "";
    if (secretsEqual(given, token)) return next();
    refuse(req, given === "" ? "no admin token" : "wrong admin token");
    res.set("WWW-Authenticate", "Bearer");
    sendError(res, 401, "unauthorized", [
      { message: "missing or wrong admin token (ADMIN_TOKEN)" },
    ]);
  };
  return { jobs: bearer, probes: (_req, _res, next) => next() };
}

/**
 * Without ADMIN_TOKEN, a request must be addressed to a loopback name and not come from a
 * web page of another site: a page the operator opens could otherwise point a name of its
 * own at 127.0.0.1 (DNS rebinding) and read the jobs (bank data), the metrics and the
 * readiness details through the browser, or post to the jobs API.
 */
function thisMachineOnly(refuse: (req: Request, reason: string) => void): RequestHandler {
  return (req, res, next) => {
    if (fromAnotherSite(req.headers)) {
      // A page in the operator's browser posting here (a "simple" request needs no
      // preflight): without a token nothing else would stop it.
      refuse(req, "sent by a web page of another site");
      sendError(res, 403, "forbidden", [
        {
          message:
            "a request from a web page (Origin or Sec-Fetch-Site says another site): without ADMIN_TOKEN the admin port answers only requests made on this machine (curl, the CLI, a local scraper), not those of web pages; set ADMIN_TOKEN to use it from elsewhere",
        },
      ]);
      return;
    }
    const host = req.hostname;
    // No Host header at all is not a browser.
    if (host === undefined || LOOPBACK_HOST.test(host)) return next();
    refuse(req, "not addressed to a loopback name");
    sendError(res, 403, "forbidden", [
      {
        message: `the request is addressed to ${JSON.stringify(host)}: without ADMIN_TOKEN the admin port answers only requests to localhost, 127.0.0.1 or [::1] (a guard against DNS rebinding); use one of those, or set ADMIN_TOKEN`,
      },
    ]);
  };
}

/**
 * Whether a browser sent this for a page of another site: browsers set `Origin` on
 * cross-origin requests and POSTs, and `Sec-Fetch-Site`; an address typed into the
 * browser (`none`) or curl and the CLI (neither header) pass.
 */
function fromAnotherSite(headers: Record<string, string | string[] | undefined>): boolean {
  const site = headers["sec-fetch-site"];
  return headers.origin !== undefined || site === "cross-site" || site === "same-site";
}
