import express, { type ErrorRequestHandler, type Express } from "express";
import { adminGuards } from "./admin/auth.js";
import { type JobsRouterOptions, jobsRouter } from "./admin/jobs-router.js";
import { STORE_RETRY_AFTER_SECONDS } from "./http/accept-callback.js";
import { apiHeaders } from "./http/api-headers.js";
import { errorHandler, notFoundHandler } from "./http/error-handler.js";
import { errorBody } from "./http/send-error.js";
import { StoreUnavailableError } from "./inbox/inbox.js";
import type { Logger } from "./logger.js";
import type { Metrics } from "./metrics.js";

export interface Readiness {
  ready: boolean;
  checks: Record<string, "ok" | string>;
}

export interface AdminOptions extends JobsRouterOptions {
  metrics: Metrics;
  adminToken: string | undefined;
  readiness: () => Promise<Readiness>;
}

/**
 * The admin app, on ADMIN_PORT (loopback by default), never on the public port:
 * liveness, readiness, Prometheus metrics, and the jobs API behind ADMIN_TOKEN.
 */
export function createAdminApp(options: AdminOptions): Express {
  const app = express();
  app.disable("x-powered-by");
  // As on the public port: never cached, sniffed or framed (/checks/fetch answers bank data).
  app.use(apiHeaders());
  const guards = adminGuards(options.adminToken, options.logger);
  // Liveness says nothing but "ok": open to every probe, whatever the Host.
  app.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  app.get("/readyz", guards.probes, async (_req, res) => {
    const readiness = await options.readiness();
    res.status(readiness.ready ? 200 : 503).json(readiness);
  });
  app.get("/metrics", guards.probes, async (_req, res) => {
    res.set("Content-Type", options.metrics.registry.contentType);
    res.send(await options.metrics.registry.metrics());
  });
  app.use("/admin", guards.jobs, jobsRouter(options));
  app.use(notFoundHandler());
  app.use(storeUnavailableHandler(options.logger));
  app.use(errorHandler(options.logger));
  return app;
}

/**
 * The inbox could not answer (PostgreSQL unreachable, a lock held past its timeout, the
 * SQLite file unwritable): 503 with Retry-After and the cause, which names its fix, as
 * readiness does. A bare 500 "internal error" sent the operator to the log for it.
 */
function storeUnavailableHandler(logger: Logger): ErrorRequestHandler {
  return (error, req, res, next) => {
    if (!(error instanceof StoreUnavailableError) || res.headersSent) return next(error);
    logger.warn(
      { err: error, method: req.method, path: req.originalUrl.split("?")[0] },
      "admin request failed: the inbox is unavailable",
    );
    res
      .status(503)
      .set("Retry-After", String(STORE_RETRY_AFTER_SECONDS))
      .json(errorBody("store_unavailable", [{ message: error.message }]));
  };
}
