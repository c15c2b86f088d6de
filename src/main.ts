import dotenv from "dotenv";
import { ConfigError, loadConfig, SHUTDOWN_EXIT_GRACE_MS } from "./config.js";
import { createLogger } from "./logger.js";
import { startService } from "./service.js";

/** Process entry: config → service → signal handling. The only place that exits. */
async function main(): Promise<void> {
  dotenv.config({ quiet: true });
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(
        `kreditcheck-receiver: ${error.message}\nSee .env.example for every variable.\n`,
      );
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger({ level: config.log.level, pretty: config.log.pretty });
  for (const name of config.finapi.unconfirmed) {
    logger.warn(
      { setting: name },
      "using a finAPI preset that public documentation does not confirm; override it if calls fail",
    );
  }
  if (config.http.callbackSecret !== undefined && config.http.callbackSecret.length < 16) {
    logger.warn("CALLBACK_SECRET is shorter than 16 characters: use 32+ random characters");
  }
  const service = await startService(config, { logger });

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, timeoutMs: config.shutdownTimeoutMs }, "shutting down");
    // Last resort if something hangs: never outlive the budget by much.
    setTimeout(() => {
      logger.error("shutdown did not finish in time; exiting");
      process.exit(1);
    }, config.shutdownTimeoutMs + SHUTDOWN_EXIT_GRACE_MS).unref();
    service.close().then(
      () => {
        logger.info("stopped");
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("unhandledRejection", (error) => {
    logger.fatal({ err: error }, "unhandled rejection");
    process.exit(1);
  });
}

main().catch((error: unknown) => {
  process.stderr.write(
    `kreditcheck-receiver failed to start: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(1);
});
