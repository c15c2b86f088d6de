import { toReceiverError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { TokenProvider } from "./token.js";

/**
 * One token request when the service starts, in the background: wrong credentials or a
 * wrong token URL show in the log at start-up, not with the first customer's check, and
 * the first job finds the token cached. Only a log line either way: callbacks are stored
 * whatever finAPI says (an outage must not keep the service from accepting them), so
 * neither start-up nor readiness depends on it.
 */
export async function checkTokenAtStart(
  tokens: TokenProvider,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  try {
    // Its failure is logged here alone: with the token provider's line too, one refusal
    // read as two errors, 1 ms apart, each with finAPI's answer and the fix.
    await tokens.getToken(signal, { logsFailure: true });
    logger.info("start-up check: finAPI accepted the client credentials");
  } catch (error) {
    if (signal.aborted) return;
    const failure = toReceiverError(error);
    const fields = { code: failure.code, error: failure.describe() };
    if (failure.retryable) {
      logger.warn(fields, "start-up check: no token from finAPI yet; jobs wait for it and retry");
    } else {
      logger.error(
        fields,
        `start-up check: finAPI refused the token request; every check fails until this is fixed (then: npm run cli -- retry --all-dead --code ${failure.code})`,
      );
    }
  }
}
