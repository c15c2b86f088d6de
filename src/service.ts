import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createApp } from "./app.js";
import { type Config, redactUrl } from "./config.js";
import { AuthorizedClient } from "./finapi/authorized-client.js";
import { DataIntelligenceClient } from "./finapi/di.js";
import { ProcessCtrlClient } from "./finapi/processctrl.js";
import { ClientCredentialsTokenProvider } from "./finapi/token.js";
import { createTransport } from "./http-transport.js";
import type { Inbox } from "./inbox/inbox.js";
import { openInbox } from "./inbox/open-inbox.js";
import type { Logger } from "./logger.js";
import { processCheck } from "./pipeline/process-check.js";
import { Worker } from "./pipeline/worker.js";
import { loadSinks } from "./sinks/load.js";
import type { Sink } from "./sinks/sink.js";

export interface ServiceOptions {
  logger: Logger;
  clock?: () => number;
  /** Run the worker (default true); tests of the HTTP edge alone may turn it off. */
  worker?: boolean;
  /** Extra sinks besides those in SINKS (tests observe deliveries with one). */
  extraSinks?: Sink[];
  /** Shutdown budget for running jobs. */
  shutdownTimeoutMs?: number;
}

export interface RunningService {
  url: string;
  port: number;
  inbox: Inbox;
  worker: Worker;
  close(): Promise<void>;
}

/** The composition root: config → adapters → ports → app + worker. */
export async function startService(
  config: Config,
  options: ServiceOptions,
): Promise<RunningService> {
  const { logger } = options;
  const clock = options.clock ?? Date.now;
  // Sinks first: a sink that cannot be built stops start-up before the inbox is opened.
  const sinks = [...(await loadSinks(config, logger)), ...(options.extraSinks ?? [])];
  const inbox = await openInbox(config.store, {
    clock,
    onListenError: (error) =>
      logger.warn({ err: error }, "inbox notifications lost; reconnecting (polling meanwhile)"),
  }).catch(async (error: unknown) => {
    await Promise.allSettled(sinks.map((sink) => sink.close?.()));
    throw error;
  });

  const http = createTransport({ timeoutMs: config.finapi.timeoutMs });
  const tokens = new ClientCredentialsTokenProvider({
    http,
    tokenUrl: config.finapi.tokenUrl,
    clientId: config.finapi.clientId,
    clientSecret: config.finapi.clientSecret,
    refreshMarginMs: config.finapi.refreshMarginMs,
    logger: logger.child({ component: "token" }),
    clock,
  });
  const client = new AuthorizedClient({ http, tokens, retries: config.finapi.retries });
  const processCtrl = new ProcessCtrlClient(
    client,
    config.finapi.processctrlUrl,
    config.finapi.kreditCheckPath,
  );
  const deps = {
    kreditChecks: processCtrl,
    dacReports: new DataIntelligenceClient(client, config.finapi.diUrl),
    documentSource: processCtrl,
    documents: config.documents,
    sinks,
    notFoundGraceMs: config.finapi.notFoundGraceMs,
    dacConcurrency: config.finapi.dacConcurrency,
    clock,
  };

  const worker = new Worker({
    inbox,
    handle: (run) => processCheck(deps, run),
    logger: logger.child({ component: "worker" }),
    concurrency: config.worker.concurrency,
    leaseMs: config.worker.leaseMs,
    pollMs: config.worker.pollMs,
    policy: {
      maxAttempts: config.worker.maxAttempts,
      maxAgeMs: config.worker.maxAgeMs,
      baseMs: config.worker.backoffBaseMs,
      maxMs: config.worker.backoffMaxMs,
    },
    clock,
  });

  const app = createApp({
    path: config.http.callbackPath,
    bodyLimitBytes: config.http.bodyLimitBytes,
    inbox,
    logger: logger.child({ component: "http" }),
    clock,
  });
  const server = await listen(app, config.http.host, config.http.port);
  // A slow or stalled sender must not hold a socket for long.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  const port = (server.address() as AddressInfo).port;
  if (options.worker !== false) worker.start();
  logger.info(
    {
      port,
      callbackPath: config.http.callbackPath,
      store: redactUrl(config.store.url),
      sinks: sinks.map((sink) => sink.name),
    },
    "kreditcheck-receiver listening",
  );

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await worker.stop(options.shutdownTimeoutMs ?? 10_000);
      server.closeAllConnections();
      await serverClosed;
      await Promise.allSettled(sinks.map((sink) => sink.close?.()));
      await inbox.close();
    })();
    return closing;
  };

  const displayHost =
    config.http.host === "0.0.0.0" || config.http.host === "::" ? "127.0.0.1" : config.http.host;
  return { url: `http://${displayHost}:${port}`, port, inbox, worker, close };
}

function listen(app: ReturnType<typeof createApp>, host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host);
    server.once("listening", () => resolve(server));
    server.once("error", reject);
  });
}
