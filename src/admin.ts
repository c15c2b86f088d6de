import express, { type Express } from "express";
import { requireAdminToken } from "./admin/auth.js";
import { type JobsRouterOptions, jobsRouter } from "./admin/jobs-router.js";
import { apiHeaders } from "./http/api-headers.js";
import { errorHandler, notFoundHandler } from "./http/error-handler.js";
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
  app.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  app.get("/readyz", async (_req, res) => {
    const readiness = await options.readiness();
    res.status(readiness.ready ? 200 : 503).json(readiness);
  });
  app.get("/metrics", async (_req, res) => {
    res.set("Content-Type", options.metrics.registry.contentType);
    res.send(await options.metrics.registry.metrics());
  });
  app.use("/admin", requireAdminToken(options.adminToken, options.logger), jobsRouter(options));
  app.use(notFoundHandler());
  app.use(errorHandler(options.logger));
  return app;
}
