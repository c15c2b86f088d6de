import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import { settledWithin } from "./abortable.js";
import { createAdminApp, type Readiness } from "./admin.js";
import { createApp, type PublicListener, type RequestListener } from "./app.js";
import { type Config, redactUrl } from "./config.js";
import { AuthorizedClient } from "./finapi/authorized-client.js";
import { finapiCallLimits } from "./finapi/call-limits.js";
import { DataIntelligenceClient } from "./finapi/di.js";
import { ProcessCtrlClient } from "./finapi/processctrl.js";
import { checkTokenAtStart } from "./finapi/startup-check.js";
import { ClientCredentialsTokenProvider } from "./finapi/token.js";
import { ADMIN_MAX_CONNECTIONS, limitConnections } from "./http/connection-limit.js";
import { descriptorsReserved, fitConnections, openFileLimit } from "./http/open-file-limit.js";
import { createTransport } from "./http-transport.js";
import type { Inbox } from "./inbox/inbox.js";
import { openInbox } from "./inbox/open-inbox.js";
import type { Logger } from "./logger.js";
import { createMetrics, type Metrics } from "./metrics.js";
import { IngestPressure } from "./pipeline/ingest-pressure.js";
import { assembleBundle, type PipelineDeps, processCheck } from "./pipeline/process-check.js";
import { Pruner } from "./pipeline/pruner.js";
import { Worker } from "./pipeline/worker.js";
import { closeSinks, loadSinks } from "./sinks/load.js";
import type { Sink } from "./sinks/sink.js";

export interface ServiceOptions {
  logger: Logger;
  clock?: () => number;
  /** Run the worker (default true); tests of the HTTP edge alone may turn it off. */
  worker?: boolean;
  /** Extra sinks besides those in SINKS (tests observe deliveries with one). */
  extraSinks?: Sink[];
}

export interface RunningService {
  /** Public URL (callback route). */
  url: string;
  port: number;
  /** Admin URL (health, readiness, metrics, jobs API). */
  adminUrl: string;
  inbox: Inbox;
  worker: Worker;
  metrics: Metrics;
  /**
   * The first step of a stop (main.ts waits SHUTDOWN_DELAY_MS after it): readiness turns
   * 503 so that load balancers stop sending, while callbacks are still accepted (each
   * answer closing its connection) and jobs still run. close() follows.
   */
  drain(): void;
  /**
   * Graceful stop: readiness turns 503, no new connections, running jobs get most of
   * SHUTDOWN_TIMEOUT_MS to finish, the rest are given back to the inbox, the store closes.
   */
  close(): Promise<void>;
}

/**
 * The least a sink's close gets at shutdown once SHUTDOWN_TIMEOUT_MS is spent: a quarter of
 * main.ts's SHUTDOWN_EXIT_GRACE_MS (2 s), which must still hold the closes that follow.
 */
const MIN_SINK_CLOSE_MS = 500;

/** How long an admin "fetch one check" may take. */
const DIRECT_FETCH_TIMEOUT_MS = 60_000;

/** The composition root: config → adapters → ports → public app, admin app, worker. */
export async function startService(
  config: Config,
  options: ServiceOptions,
): Promise<RunningService> {
  const { logger } = options;
  const clock = options.clock ?? Date.now;
  // The inbox first: when PostgreSQL cannot be reached and both the inbox and the postgres
  // sink use it, start-up names the inbox, which every callback needs.
  const inbox = await openInbox(config.store, {
    clock,
    onListenError: (error) =>
      logger.warn({ err: error }, "inbox notifications lost; reconnecting (polling meanwhile)"),
  });
  const sinks = await loadSinks(config, logger).catch(async (error: unknown) => {
    await inbox.close().catch(() => undefined);
    throw error;
  });
  sinks.push(...(options.extraSinks ?? []));
  const metrics = createMetrics(
    inbox,
    clock,
    sinks.map((sink) => sink.name),
  );

  const transport = createTransport({
    timeoutMs: config.finapi.timeoutMs,
    // As many sockets as the pipeline can have calls in flight, so the configured
    // concurrency, not the socket pool, is what limits it.
    maxSockets: config.worker.concurrency * config.finapi.dacConcurrency,
    proxies: config.proxies,
  });
  const limits = finapiCallLimits(config.finapi.timeoutMs);
  const tokens = new ClientCredentialsTokenProvider({
    http: transport.http,
    limits,
    tokenUrl: config.finapi.tokenUrl,
    clientId: config.finapi.clientId,
    clientSecret: config.finapi.clientSecret,
    refreshMarginMs: config.finapi.refreshMarginMs,
    logger: logger.child({ component: "token" }),
    clock,
    onRequest: (outcome) => metrics.tokenRequests.inc({ outcome }),
    onResponse: (status, durationMs) =>
      metrics.finapiDuration.observe({ endpoint: "token", status }, durationMs / 1000),
  });
  const client = new AuthorizedClient({
    http: transport.http,
    limits,
    tokens,
    retries: config.finapi.retries,
    onResponse: (endpoint, status, durationMs) =>
      metrics.finapiDuration.observe({ endpoint, status }, durationMs / 1000),
  });
  const processCtrl = new ProcessCtrlClient(
    client,
    config.finapi.processctrlUrl,
    config.finapi.kreditCheckPath,
  );
  const deps: PipelineDeps = {
    kreditChecks: processCtrl,
    dacReports: new DataIntelligenceClient(client, config.finapi.diUrl),
    documentSource: processCtrl,
    documents: config.documents,
    sinks,
    notFoundGraceMs: config.finapi.notFoundGraceMs,
    dacConcurrency: config.finapi.dacConcurrency,
    clock,
    onDelivery: (sink, result) => metrics.sinkDeliveries.inc({ sink, result }),
  };

  const pressure = new IngestPressure();
  const worker = new Worker({
    inbox,
    pressure,
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
    onJobFinished: (outcome, durationMs) =>
      metrics.jobDuration.observe({ outcome }, durationMs / 1000),
    onAttemptFailed: (code, outcome) => metrics.jobFailures.inc({ code, outcome }),
  });

  const pruner = new Pruner({
    inbox,
    retentionMs: { done: config.retention.doneMs, dead: config.retention.deadMs },
    intervalMs: config.retention.pruneIntervalMs,
    logger: logger.child({ component: "pruner" }),
    clock,
    onPruned: (state, count) => metrics.jobsPruned.inc({ state }, count),
    onRun: (result) => metrics.pruneRuns.inc({ result }),
  });

  let shuttingDown = false;
  const readiness = async (): Promise<Readiness> => {
    const checks: Readiness["checks"] = {};
    checks.inbox = await inbox.ping().then(
      () => "ok",
      (error: unknown) => `cannot write the inbox: ${(error as Error).message}`,
    );
    checks.worker = options.worker === false || worker.running ? "ok" : "not running";
    checks.shutdown = shuttingDown ? "shutting down" : "ok";
    return { ready: Object.values(checks).every((check) => check === "ok"), checks };
  };

  const app = createApp({
    path: config.http.callbackPath,
    bodyLimitBytes: config.http.bodyLimitBytes,
    allowedCidrs: config.http.allowedCidrs,
    trustProxy: config.http.trustProxy,
    draining: () => shuttingDown,
    callbackSecret: config.http.callbackSecret,
    inbox,
    logger: logger.child({ component: "http" }),
    clock,
    onOutcome: (outcome) => {
      if (outcome === "accepted" || outcome === "duplicate") pressure.noteStored();
      else pressure.noteArrival();
      metrics.callbacks.inc({ outcome });
    },
  });
  const adminApp = createAdminApp({
    inbox,
    metrics,
    logger: logger.child({ component: "admin" }),
    adminToken: config.admin.token,
    readiness,
    clock,
    callbackBodyLimitBytes: config.http.bodyLimitBytes,
    fetchCheck: (callback) =>
      assembleBundle(
        deps,
        { callback, receivedAt: new Date(clock()) },
        {
          logger: logger.child({
            component: "admin",
            processToken: callback.processToken,
            kreditCheckId: callback.kreditCheckId,
          }),
          signal: AbortSignal.timeout(DIRECT_FETCH_TIMEOUT_MS),
        },
      ),
  });

  const timeoutMs = config.http.requestTimeoutMs;
  const limit = openFileLimit();
  const reserved = descriptorsReserved(config.worker.concurrency, config.finapi.dacConcurrency);
  const { maxConnections, lowered } = fitConnections(config.http.maxConnections, limit, reserved);
  if (lowered) {
    logger.warn(
      { maxConnections, configured: config.http.maxConnections, openFileLimit: limit, reserved },
      `MAX_CONNECTIONS=${config.http.maxConnections} does not fit the process's open-file limit of ${limit} (the service needs about ${reserved} descriptors for itself): the public port holds at most ${maxConnections} connections. Raise the limit (ulimit -n, docker run --ulimit nofile=…, systemd LimitNOFILE=) or lower MAX_CONNECTIONS`,
    );
  }
  let server: Server | undefined;
  let adminServer: Server;
  try {
    server = await listen(app, config.http.host, config.http.port, timeoutMs, "PORT", (created) =>
      limitConnections(created, "public", maxConnections, logger, () =>
        metrics.connectionsDropped.inc({ port: "public" }),
      ),
    );
    adminServer = await listen(
      adminApp,
      config.admin.host,
      config.admin.port,
      timeoutMs,
      "ADMIN_PORT",
      (created) =>
        limitConnections(created, "admin", ADMIN_MAX_CONNECTIONS, logger, () =>
          metrics.connectionsDropped.inc({ port: "admin" }),
        ),
    );
  } catch (error) {
    // Nothing was started yet: give back what start-up opened, then say why.
    if (server) await closeServer(server);
    await closeSinks(sinks, { timeoutMs: config.shutdownTimeoutMs, logger });
    await inbox.close().catch(() => undefined);
    await transport.close().catch(() => undefined);
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  const adminPort = (adminServer.address() as AddressInfo).port;
  if (options.worker !== false) worker.start();
  pruner.start();
  logger.info(
    {
      port,
      adminPort,
      adminHost: config.admin.host,
      callbackPath: config.http.callbackSecret
        ? `${config.http.callbackPath}/[redacted]`
        : config.http.callbackPath,
      allowedCidrs: config.http.allowedCidrs,
      // Whose X-Forwarded-For is believed: behind a proxy, false here refuses every sender.
      trustProxy: config.http.trustProxy,
      store: redactUrl(config.store.url),
      // Where the tables are: SQL run by hand needs `SET search_path` when it is not public.
      ...(config.store.kind === "postgres" || config.sinks.postgres
        ? { pgSchema: config.store.schema }
        : {}),
      sinks: sinks.map((sink) => sink.name),
      // Its origin only: a webhook URL often carries its key in the path or query.
      ...(config.sinks.http ? { httpSinkOrigin: new URL(config.sinks.http.url).origin } : {}),
      ...(config.sinks.names.includes("file")
        ? { fileSinkDir: resolve(config.sinks.fileDir) }
        : {}),
      // Where the calls go: a wrong URL shows here, before the first job fails on it.
      finapi: {
        env: config.finapi.env,
        tokenUrl: redactUrl(config.finapi.tokenUrl),
        processctrlUrl: redactUrl(config.finapi.processctrlUrl),
        diUrl: redactUrl(config.finapi.diUrl),
      },
      ...proxiesInUse(config.proxies),
    },
    "kreditcheck-receiver listening",
  );
  if (typeof config.http.trustProxy === "number" && config.http.trustProxy > 0) {
    // Express then believes X-Forwarded-For from any peer: safe only behind the proxy.
    logger.warn(
      { trustProxy: config.http.trustProxy },
      "TRUST_PROXY is a hop count: anyone who reaches PORT without passing the proxy can claim an allowed address in X-Forwarded-For; set TRUST_PROXY to the proxy's address or CIDR instead, or make sure PORT is reachable only through the proxy",
    );
  }

  const startupCheck = new AbortController();
  if (options.worker !== false) {
    void checkTokenAtStart(tokens, logger.child({ component: "token" }), startupCheck.signal);
  }

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      shuttingDown = true;
      startupCheck.abort();
      const closeUntil = performance.now() + config.shutdownTimeoutMs;
      const drainMs = Math.floor(config.shutdownTimeoutMs * 0.8);
      const drainUntil = performance.now() + drainMs;
      const publicClosed = closeServer(server);
      // A prune in progress stops after its current batch, before the store closes.
      const prunerStopped = pruner.stop();
      // Jobs get most of the budget; the rest is for giving back leases and closing.
      await worker.stop(drainMs);
      await prunerStopped;
      // A callback still arriving gets the same budget to be stored and answered (the
      // store is open until then); cutting it off would cost its sender a retry.
      await untilOrTimeout(publicClosed, drainUntil - performance.now());
      server.closeAllConnections();
      await publicClosed;
      // What is left of the budget, and never less than a moment (a close that is merely
      // slow, with the budget spent by the jobs): the store, the admin port and the finAPI
      // connections close after the sinks, within main.ts's SHUTDOWN_EXIT_GRACE_MS.
      await closeSinks(sinks, {
        timeoutMs: Math.max(MIN_SINK_CLOSE_MS, Math.ceil(closeUntil - performance.now())),
        logger,
      });
      await inbox.close();
      const adminClosed = closeServer(adminServer);
      adminServer.closeAllConnections();
      await adminClosed;
      // Last: an admin "fetch" still answering uses the finAPI connections.
      await transport.close();
    })();
    return closing;
  };

  return {
    url: `http://${displayHost(config.http.host)}:${port}`,
    port,
    adminUrl: `http://${displayHost(config.admin.host)}:${adminPort}`,
    inbox,
    worker,
    metrics,
    drain: () => {
      shuttingDown = true;
    },
    close,
  };
}

/** The proxy variables in effect, for the start-up line: `{ proxies: { HTTPS_PROXY: … } }`. */
function proxiesInUse({ http, https, all, noProxy }: Config["proxies"]) {
  const proxies: Record<string, string> = {};
  for (const proxy of [http, https, all]) {
    if (proxy) proxies[proxy.variable] = redactProxyUrl(proxy.url);
  }
  if (noProxy) proxies[noProxy.variable] = noProxy.hosts;
  return Object.keys(proxies).length > 0 ? { proxies } : {};
}

/** A proxy URL for the log: its whole user info masked (a proxy's token may be the user name). */
function redactProxyUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.username !== "" || parsed.password !== "") {
    parsed.username = "***";
    parsed.password = "***";
  }
  return parsed.href;
}

/** An IPv6 literal in brackets, as it is written before `:port`. */
function bracketed(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

function displayHost(host: string): string {
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return bracketed(host);
}

/** Listens on host:port; a failure names the variable that chose the port. */
function listen(
  app: RequestListener,
  host: string,
  port: number,
  requestTimeoutMs: number,
  portVariable: "PORT" | "ADMIN_PORT",
  /** Settings made before the server listens (so that they hold from its first connection). */
  prepare?: (server: Server) => void,
): Promise<Server> {
  return new Promise((resolve, reject) => {
    // A slow or stalled sender must not hold a socket for long: Node answers 408 and closes
    // it. Node looks for such requests only every connectionsCheckingInterval (30 s by
    // default), so that interval is shortened too, or a stall would last up to twice as long.
    // The headers timeout runs from the connection's start: one that sends nothing at all
    // is closed by it too (so idle connections cannot hold MAX_CONNECTIONS for long).
    const server = createServer(
      {
        requestTimeout: requestTimeoutMs,
        headersTimeout: Math.min(10_000, requestTimeoutMs),
        connectionsCheckingInterval: Math.min(1000, requestTimeoutMs),
      },
      app,
    );
    const mayContinue = (app as Partial<PublicListener>).mayContinue;
    if (mayContinue) {
      // With this listener Node no longer answers 100 Continue itself, nor emits 'request'.
      server.on("checkContinue", (req, res) => {
        if (mayContinue(req)) res.writeContinue();
        app(req, res);
      });
    }
    prepare?.(server);
    server.listen(port, host);
    server.once("listening", () => resolve(server));
    server.once("error", (error: NodeJS.ErrnoException) => {
      const hostVariable = portVariable === "PORT" ? "HOST" : "ADMIN_HOST";
      const fix =
        error.code === "EADDRINUSE"
          ? `another process listens there: stop it or set ${portVariable} to a free port (each replica on one machine needs its own PORT and ADMIN_PORT)`
          : `check ${hostVariable} and ${portVariable}`;
      reject(
        new Error(
          `${portVariable}=${port}: cannot listen on ${bracketed(host)}:${port} (${error.message}); ${fix}`,
          {
            cause: error,
          },
        ),
      );
    });
  });
}

/** Waits for `promise`, at most `ms` (none when `ms` is not positive). */
async function untilOrTimeout(promise: Promise<unknown>, ms: number): Promise<void> {
  if (ms > 0) await settledWithin(promise, ms);
}

/** Stops accepting; resolves when open connections are gone. Idle keep-alives go at once. */
function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  return closed;
}
