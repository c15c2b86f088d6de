import express, { type Express } from "express";
import helmet from "helmet";
import { addCallbackRoute, type CallbackRouteOptions } from "./http/callback-route.js";
import { redactSecretInPath } from "./http/callback-secret.js";
import { errorHandler, notFoundHandler } from "./http/error-handler.js";

export interface AppOptions extends CallbackRouteOptions {
  /** Express "trust proxy"; false unless TRUST_PROXY names the proxies in front. */
  trustProxy: false | number | string;
  /**
   * True once the service is about to stop (SHUTDOWN_DELAY_MS): answers then close their
   * connection, so a sender's next callback opens a new one, which the load balancer,
   * told by readiness, sends to another replica.
   */
  draining?: () => boolean;
}

/**
 * The public app: finAPI's callback route and nothing else (health, metrics and the
 * admin API live on the admin port). Built from what it is given, so tests can build it
 * around any inbox.
 */
export function createApp(options: AppOptions): Express {
  const app = express();
  app.disable("x-powered-by");
  app.disable("etag");
  app.set("trust proxy", options.trustProxy);
  // A JSON API: no caching, no sniffing, no framing, no scripts. The headers OWASP's REST
  // Security Cheat Sheet names for API responses, and only those: helmet's others
  // (cross-origin policies, referrer, DNS prefetch, ...) guard HTML pages in a browser,
  // and each header is work on every answer (bench:ingest measures that path).
  app.use(
    helmet({
      contentSecurityPolicy: {
        useDefaults: false,
        directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] },
      },
      xFrameOptions: { action: "deny" },
      crossOriginOpenerPolicy: false,
      crossOriginResourcePolicy: false,
      originAgentCluster: false,
      referrerPolicy: false,
      xDnsPrefetchControl: false,
      xDownloadOptions: false,
      xPermittedCrossDomainPolicies: false,
      xXssProtection: false,
    }),
  );
  app.use((_req, res, next) => {
    res.set("Cache-Control", "no-store");
    if (options.draining?.()) res.set("Connection", "close");
    next();
  });
  addCallbackRoute(app, options);
  app.use(notFoundHandler());
  app.use(errorHandler(options.logger, (path) => redactSecretInPath(path, options.path)));
  return app;
}
