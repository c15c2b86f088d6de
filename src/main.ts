import { constants } from "node:os";
import { type Config, ConfigError, loadConfig, SHUTDOWN_EXIT_GRACE_MS } from "./config.js";
import { loadEnvFile } from "./env-file.js";
import { createLogger, type Logger } from "./logger.js";
import { type RunningService, startService } from "./service.js";
import { warnAboutSettings } from "./startup-warnings.js";

type StopSignal = "SIGTERM" | "SIGINT";

/** Process entry: signal handling → config → service. The only place that exits. */
async function main(): Promise<void> {
  // First of all: in a container node is PID 1, and the kernel drops a signal PID 1 has
  // no handler for. Registered after start-up, a `docker stop` during a slow start (a
  // PostgreSQL connect waits up to 10 s) was ignored and ended in SIGKILL.
  let onStopSignal: (signal: StopSignal) => void = abandonStartup;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => onStopSignal(signal));
  }
  const unreadable = loadEnvFile();
  if (unreadable) {
    process.stderr.write(`kreditcheck-receiver: ${unreadable}\n`);
    process.exit(1);
  }
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(
        `kreditcheck-receiver: ${error.message}\nEvery variable is in the README's Configuration section (and .env.example in the repository).\n`,
      );
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger({
    level: config.log.level,
    pretty: config.log.pretty,
    shareStdout: config.sinks.names.includes("stdout"),
  });
  warnAboutSettings(config, logger);
  const service = await startService(config, { logger });
  onStopSignal = gracefulShutdown(service, config, logger);
  process.on("unhandledRejection", (error) => {
    logger.fatal({ err: error }, "unhandled rejection");
    process.exit(1);
  });
}

/**
 * A stop signal before the service runs ends start-up at once, with the shell's exit code
 * for it (143, 130): waiting for start-up to finish would outlast docker's stop timeout.
 * Nothing start-up writes is left half-done by exiting between its steps: the SQLite
 * inbox opens and migrates synchronously (no signal runs in between), PostgreSQL migrates
 * in one transaction that the server rolls back when the connection drops, and folders
 * are made one mkdir at a time. What is open is closed by the exit, as after a crash,
 * which both stores survive.
 */
function abandonStartup(signal: StopSignal): void {
  process.stderr.write(`kreditcheck-receiver: ${signal} during start-up; not starting\n`);
  process.exit(128 + constants.signals[signal]);
}

/**
 * How long past SHUTDOWN_TIMEOUT_MS the exit waits for standard output to take what is
 * queued: half of SHUTDOWN_EXIT_GRACE_MS, so the last-resort exit does not cut in first.
 */
const STDOUT_FLUSH_GRACE_MS = 1000;

/** How often stdoutFlushed looks again. */
const STDOUT_FLUSH_POLL_MS = 10;

/**
 * Resolves once process.stdout has handed everything queued to the operating system, or at
 * `until` (performance.now()). Writes to a pipe whose reader has stopped reading queue in
 * the process: a stdout sink line its job gave up at shutdown (stdout_blocked), log lines
 * behind it (they share the stream). process.exit drops that queue, and the reader got half
 * a line, without its newline. A reader that resumes within the bound gets it whole; one
 * stalled beyond it still gets a cut last line (the README says how to read past it).
 * Polled: 'drain' comes only after a write that found the queue full, not for a shorter one.
 */
async function stdoutFlushed(until: number): Promise<void> {
  while (process.stdout.writableLength > 0 && performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, STDOUT_FLUSH_POLL_MS));
  }
}

/** A second signal this soon after the first is the first one, delivered twice. */
const SAME_SIGNAL_WINDOW_MS = 300;

/**
 * A stop signal once the service runs. First SHUTDOWN_DELAY_MS of draining: readiness
 * says 503 while callbacks are still accepted and jobs still run, for the time a load
 * balancer or Kubernetes takes to stop sending here (a callback sent to a closed port
 * would cost its sender a retry, if finAPI retries at all). A second signal ends that
 * wait. Then close within SHUTDOWN_TIMEOUT_MS. Once only.
 */
function gracefulShutdown(
  service: RunningService,
  config: Config,
  logger: Logger,
): (signal: StopSignal) => void {
  let endDelay: (() => void) | undefined;
  let stopping = false;
  const close = () => {
    // Last resort if something hangs: never outlive the budget by much.
    setTimeout(() => {
      logger.error("shutdown did not finish in time; exiting");
      process.exit(1);
    }, config.shutdownTimeoutMs + SHUTDOWN_EXIT_GRACE_MS).unref();
    const flushUntil = performance.now() + config.shutdownTimeoutMs + STDOUT_FLUSH_GRACE_MS;
    const exit = (code: number) => void stdoutFlushed(flushUntil).then(() => process.exit(code));
    service.close().then(
      () => {
        logger.info("stopped");
        exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        exit(1);
      },
    );
  };
  let firstAt = 0;
  return (signal) => {
    if (endDelay) {
      // npm start/run (and a process group's SIGTERM, as systemd sends it) hand the one
      // signal on to us as well: the same signal twice at once is one stop, not two.
      if (performance.now() - firstAt < SAME_SIGNAL_WINDOW_MS) return;
      logger.info({ signal }, "second stop signal: ending the shutdown delay now");
      endDelay();
      return;
    }
    if (stopping) return;
    stopping = true;
    firstAt = performance.now();
    const delayMs = config.shutdownDelayMs;
    logger.info(
      { signal, ...(delayMs > 0 ? { delayMs } : {}), timeoutMs: config.shutdownTimeoutMs },
      "shutting down",
    );
    service.drain();
    if (delayMs === 0) return close();
    const timer = setTimeout(() => endDelay?.(), delayMs);
    endDelay = () => {
      endDelay = undefined;
      clearTimeout(timer);
      close();
    };
  };
}

main().catch((error: unknown) => {
  process.stderr.write(
    `kreditcheck-receiver failed to start: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(1);
});
