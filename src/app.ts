import express, { type Express } from "express";
import { type CallbackRouteOptions, callbackRouter } from "./http/callback-route.js";
import { errorHandler, notFoundHandler } from "./http/error-handler.js";

export type AppOptions = CallbackRouteOptions;

/**
 * The public app: finAPI's callback route and nothing else. Built from what it is
 * given, so tests can build it around any inbox.
 */
export function createApp(options: AppOptions): Express {
  const app = express();
  app.disable("x-powered-by");
  app.disable("etag");
  app.use(callbackRouter(options));
  app.use(notFoundHandler());
  app.use(errorHandler(options.logger));
  return app;
}
